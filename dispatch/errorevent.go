package dispatch

import (
	"encoding/json"
	"strings"
	"time"

	"changeprop/rules"
)

// ErrorSchema is the $schema of error events.
const ErrorSchema = "/error/0.0.3"

// failure describes why an event goes to the error topic.
type failure struct {
	message  string
	status   int    // HTTP status, 0 when there was no response
	header   Header // response headers, none when there was no response
	body     []byte // response body excerpt
	attempts int    // how often the event's requests were tried
}

// errorEvent is the error topic's schema (service.md), with our fields
// rule, attempts, topic, partition and offset.
type errorEvent struct {
	Schema    string    `json:"$schema"`
	Meta      eventMeta `json:"meta"`
	EmitterID string    `json:"emitter_id"`
	RawEvent  string    `json:"raw_event"`
	// RawEventBytes is the original's size when RawEvent holds only its
	// first bytes (the whole would not fit in a Kafka message).
	RawEventBytes int          `json:"raw_event_bytes,omitempty"`
	Message       string       `json:"message"`
	Stack         string       `json:"stack"`
	Details       errorDetails `json:"details"`
	Rule          string       `json:"rule"`
	Attempts      int          `json:"attempts"`
	Topic         string       `json:"topic"`
	Partition     int32        `json:"partition"`
	Offset        int64        `json:"offset"`
}

type eventMeta struct {
	URI       string `json:"uri"`
	RequestID string `json:"request_id"`
	ID        string `json:"id"`
	DT        string `json:"dt"`
	Domain    string `json:"domain"`
	Stream    string `json:"stream"`
}

type errorDetails struct {
	Status  int               `json:"status,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    string            `json:"body,omitempty"`
}

// newErrorEvent builds the error event for message m, whose parsed event ev
// may be nil (when it was not JSON or had no meta). raw is the original
// event: m's value, or the original_event of a retry. When the error event
// would be over maxBytes, raw_event keeps an excerpt of the original and
// raw_event_bytes its size.
func newErrorEvent(m *Message, ev *rules.Event, raw []byte, f failure, rule, emitter, stream string, now time.Time, maxBytes int) []byte {
	e := errorEvent{
		Schema: ErrorSchema,
		Meta: eventMeta{
			ID:     NewEventID(),
			DT:     now.UTC().Format(time.RFC3339Nano),
			Stream: stream,
		},
		EmitterID: emitter,
		RawEvent:  string(raw),
		Message:   f.message,
		Details:   errorDetails{Status: f.status, Body: string(f.body)},
		Rule:      rule,
		Attempts:  f.attempts,
		Topic:     m.Topic,
		Partition: m.Partition,
		Offset:    m.Offset,
	}
	if ev != nil {
		e.Meta.URI = ev.Meta("uri")
		e.Meta.RequestID = ev.Meta("request_id")
		e.Meta.Domain = ev.Meta("domain")
	}
	if e.Meta.RequestID == "" {
		e.Meta.RequestID = NewEventID()
	}
	if f.header.Len() > 0 {
		e.Details.Headers = make(map[string]string, f.header.Len())
		for k, v := range f.header.All() {
			k = strings.ToLower(k)
			switch old, seen := e.Details.Headers[k]; {
			case rules.CredentialHeader(k):
				e.Details.Headers[k] = rules.Redacted
			case seen:
				e.Details.Headers[k] = old + ", " + v
			default:
				e.Details.Headers[k] = v
			}
		}
	}
	b := marshalErrorEvent(&e)
	// Over the limit, raw_event keeps the first rawExcerpt bytes, or a
	// quarter of a smaller limit, halved until the event fits (escaping
	// can make an excerpt six times its size).
	for cut := min(rawExcerpt, maxBytes/4); len(b) > maxBytes && len(raw) > cut && cut > 0; cut /= 2 {
		e.RawEvent, e.RawEventBytes = string(raw[:cut]), len(raw)
		b = marshalErrorEvent(&e)
	}
	return b
}

func marshalErrorEvent(e *errorEvent) []byte {
	b, err := json.Marshal(e)
	if err != nil {
		// Only strings, numbers and string maps: Marshal cannot fail.
		panic(err)
	}
	return b
}
