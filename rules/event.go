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
// not copied, and Message's strings and numbers are substrings of it, so
// the caller must not change it, then or later: a string taken from the
// event keeps it.
//
// An Event from Rule.ParseEvent is decoded for that rule: Message holds
// only what the rule can read (its patterns' and templates' paths) and the
// service fields (fields.go). Hand it to that rule alone; Get and Meta
// are right for any field.
type Event struct {
	Raw     []byte
	Message map[string]any

	proj *projection // what Message holds; nil: everything
	meta int         // offset in Raw of Message's meta object, plus one; 0: unknown
}

// ParseEvent decodes raw JSON in full. It returns an error wrapping
// ErrNotJSON when raw is not a JSON object, and one wrapping ErrNoMeta when
// the object has no "meta" object.
func ParseEvent(raw []byte) (*Event, error) { return parseEvent(raw, nil) }

// ParseEvent decodes raw JSON for r: as the package's ParseEvent does,
// with the same errors for the same inputs (the whole input is checked),
// but building only the parts of the object that r can read. Match,
// Evaluate and Requests of r give for it what they give for the full
// decode, at a fraction of the cost.
func (r *Rule) ParseEvent(raw []byte) (*Event, error) { return parseEvent(raw, r.proj) }

func parseEvent(raw []byte, p *projection) (*Event, error) {
	m, meta, err := decodeEvent(raw, p)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	if _, ok := m["meta"].(map[string]any); !ok {
		return nil, ErrNoMeta
	}
	return &Event{Raw: raw, Message: m, proj: p, meta: meta + 1}, nil
}

// MetaOffset returns the offset in Raw of the meta object that Message
// holds (Raw[off] is its '{'; of two "meta" members, the last one), or -1
// when it is not known: it is for an event from ParseEvent or
// Rule.ParseEvent, not for one built by hand. It lets a caller that
// rewrites meta in the raw bytes (the repartitioner's meta.stream) go
// there without scanning the event again.
func (e *Event) MetaOffset() int { return e.meta - 1 }

// eventFor returns ev as r may read it: ev itself when it was decoded in
// full or for r, else a full decode of it (an event decoded for another
// rule may lack what r reads).
func (r *Rule) eventFor(ev *Event) *Event {
	if ev.proj == nil || ev.proj == r.proj {
		return ev
	}
	return ev.full()
}

func (ev *Event) full() *Event {
	full, err := ParseEvent(ev.Raw)
	if err != nil {
		return ev // cannot be: ev was decoded from these bytes
	}
	return full
}

// Meta returns the string value of meta.<key>, or "" when it is absent.
// Numbers are returned in their JSON form. The meta keys of the service
// fields (fields.go) are always decoded; any other is read from Raw.
func (e *Event) Meta(key string) string {
	meta, _ := e.Message["meta"].(map[string]any)
	v, ok := meta[key]
	if !ok {
		v = e.lookupAgain([]string{"meta", key}, nil)
	}
	switch v := v.(type) {
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
