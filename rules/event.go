package rules

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Sentinel errors of ParseEvent. Both mean the event can never be
// processed: send it to the error topic at once.
var (
	// ErrNotJSON means the event is not a JSON object.
	ErrNotJSON = errors.New("event is not a JSON object")
	// ErrNoMeta means the event has no "meta" object.
	ErrNoMeta = errors.New("event has no meta object")
)

// Event is a decoded input event.
//
// Message holds the JSON object as encoding/json decodes it into any, except
// that numbers are json.Number (so ids keep their precision and 5 compares
// equal to a pattern 5 but not to "5"). Raw is the undecoded input; it is
// not copied, so the caller must not change it while the Event is in use.
type Event struct {
	Raw     []byte
	Message map[string]any
}

// ParseEvent decodes raw JSON. It returns an error wrapping ErrNotJSON when
// raw is not a JSON object, and one wrapping ErrNoMeta when the object has no
// "meta" object.
func ParseEvent(raw []byte) (*Event, error) {
	m, err := decodeObject(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	if _, ok := m["meta"].(map[string]any); !ok {
		return nil, ErrNoMeta
	}
	return &Event{Raw: raw, Message: m}, nil
}

// Meta returns the string value of meta.<key>, or "" when it is absent.
// Numbers are returned in their JSON form.
func (e *Event) Meta(key string) string {
	meta, _ := e.Message["meta"].(map[string]any)
	switch v := meta[key].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	return ""
}

// Scope returns the template scope of the event alone, without captures:
// the scope of rule keys such as concurrency_key when no match is at hand.
func (e *Event) Scope() Scope { return Scope{Message: e.Message} }

// kind names a decoded JSON value's type for messages.
func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number, float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
