package rules

import "strings"

// Field names an event field by its dotted path, e.g. "root_event.dt".
type Field string

// The service fields: what changeprop itself reads of an event, whatever
// its rule says (rules.md). Rule.ParseEvent always decodes them, so that
// Event.Get and Event.Meta read them from Message at no cost. This list is
// the one place that says which fields those are; the dispatcher reads
// event fields only through these names.
const (
	FieldMetaDomain    Field = "meta.domain"          // discard_canary_events; dedupe; error events
	FieldMetaID        Field = "meta.id"              // dedupe; the default sample hash_template
	FieldMetaDT        Field = "meta.dt"              // claim_ttl; dedupe by sha1; delay metric
	FieldMetaURI       Field = "meta.uri"             // x-triggered-by; retry and error events
	FieldMetaRequestID Field = "meta.request_id"      // x-request-id; retry and error events
	FieldMetaStream    Field = "meta.stream"          // retry topics; x-triggered-by; dedupe namespace
	FieldDelayUntil    Field = "delay_until"          // delayed jobs
	FieldSHA1          Field = "sha1"                 // dedupe by sha1
	FieldRootSignature Field = "root_event.signature" // dedupe by root event
	FieldRootDT        Field = "root_event.dt"        // root_claim_ttl; dedupe
	FieldPageTitle     Field = "page_title"           // the static blacklist
	FieldParamsTitle   Field = "params.title"         // the static blacklist, for jobs
	FieldTriggeredBy   Field = "triggered_by"         // x-triggered-by
)

// serviceFields lists the service fields for project.
var serviceFields = []Field{
	FieldMetaDomain, FieldMetaID, FieldMetaDT, FieldMetaURI, FieldMetaRequestID, FieldMetaStream,
	FieldDelayUntil, FieldSHA1, FieldRootSignature, FieldRootDT, FieldPageTitle, FieldParamsTitle,
	FieldTriggeredBy,
}

// keys splits the path at its dots.
func (f Field) keys() []string { return strings.Split(string(f), ".") }

// Get returns the value of field f: as in Message (string, json.Number,
// bool, map[string]any, []any), nil when absent or null. It is right for
// every field of every event; a field that the event's projection left
// out (not a service field, nor read by the rule) is decoded from Raw on
// the spot.
func (e *Event) Get(f Field) any {
	var buf [8]string
	keys := buf[:0]
	for rest := string(f); ; {
		k, tail, more := strings.Cut(rest, ".")
		keys = append(keys, k)
		if !more {
			break
		}
		rest = tail
	}
	return e.lookup(keys...)
}

// lookup returns the value at the path keys, nil when absent.
func (e *Event) lookup(keys ...string) any {
	v, ok := walk(e.Message, keys)
	if _, obj := v.(map[string]any); ok && !obj {
		// Only objects are ever decoded in part.
		return v
	}
	return e.lookupAgain(keys, v)
}

// lookupAgain is lookup for a value that is absent or an object in
// Message, v: a projection may have left it out, or part of it.
func (e *Event) lookupAgain(keys []string, v any) any {
	if e.proj == nil || e.proj.covers(keys) {
		return v
	}
	p := &projection{}
	p.add(keys)
	m, _, err := decodeEvent(e.Raw, p)
	if err != nil {
		return nil
	}
	v, _ = walk(m, keys)
	return v
}

// walk follows keys through nested objects; ok is false when a member is
// absent or a value on the way is not an object.
func walk(m map[string]any, keys []string) (v any, ok bool) {
	v = m
	for _, k := range keys {
		o, isObj := v.(map[string]any)
		if !isObj {
			return nil, false
		}
		if v, ok = o[k]; !ok {
			return nil, false
		}
	}
	return v, true
}
