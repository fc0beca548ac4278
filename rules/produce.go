package rules

import (
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// ProduceScheme begins the uri of an exec that produces events instead of
// sending a request: kafka:///<stream> produces the exec's body, an event
// or a list of events, to the stream [produce_dc.]<stream>.
const ProduceScheme = "kafka:///"

// isProduceURI reports whether an exec's uri node names a stream.
func isProduceURI(n *yaml.Node) bool {
	n = resolve(n)
	return n != nil && n.Kind == yaml.ScalarNode && strings.HasPrefix(strings.TrimSpace(n.Value), "kafka:")
}

// compileProduce compiles an exec whose uri is kafka:///<stream>. The
// stream is written out (no template); the body is required; method may
// only be post; headers, query and timeout have no meaning for it.
func (p *problems) compileProduce(r *Rule, x *Exec, o *object, un *yaml.Node, upath string) *Exec {
	src := strings.TrimSpace(resolve(un).Value)
	x.URI, _ = ParseTemplate(src)
	stream, ok := strings.CutPrefix(src, ProduceScheme)
	switch {
	case !ok:
		p.add(upath, "want %s<stream>, got %q", ProduceScheme, src)
	case !validTopic(stream):
		p.add(upath, "bad stream name %q: the stream is written out, without templates", stream)
	default:
		x.Stream = stream
	}
	if mn, mpath := o.get("method"); mn != nil && x.Method != "POST" {
		p.add(mpath, "a %s exec produces events: method must be post or left out", ProduceScheme)
	}
	for _, key := range []string{"headers", "query", "timeout"} {
		if n, path := o.get(key); n != nil {
			p.add(path, "not used by a %s exec", ProduceScheme)
		}
	}
	bn, bpath := o.get("body")
	if isNull(bn) {
		p.add(bpath, "required: the event to produce")
	} else {
		bn = resolve(bn)
		if bn.Kind == yaml.ScalarNode && bn.Tag != "!!str" {
			p.add(bpath, "must be an event (an object) or a list of events")
		}
		x.body = p.compileValue(r, bn, bpath)
	}
	if x.Stream == "" {
		x.Stream = "invalid" // reported above; Load fails
	}
	o.finish()
	return x
}

// errNotEvents is the expansion error of a produce body that is neither an
// object nor a list of objects.
var errNotEvents = errors.New("must expand to an event (an object) or a list of events")

// expandProduce expands a kafka:/// exec: Body is the JSON of the events.
func (x *Exec) expandProduce(r *Request, s Scope, ev *Event) error {
	r.Stream, r.URI = x.Stream, x.URI.src
	if t, ok := x.body.(*Template); ok && t.message && ev != nil {
		r.Body = ev.Raw // the event as it came
		return nil
	}
	v, err := x.body.value(s)
	if err != nil {
		return fmt.Errorf("body: %w", err)
	}
	switch b := v.(type) {
	case map[string]any:
	case []any:
		if len(b) == 0 {
			return fmt.Errorf("body: %w, got an empty list", errNotEvents)
		}
		for i, e := range b {
			if _, ok := e.(map[string]any); !ok {
				return fmt.Errorf("body[%d]: %w, got %s", i, errNotEvents, kind(e))
			}
		}
	case undefinedValue:
		return fmt.Errorf("body: %w, got nothing", errNotEvents)
	default:
		return fmt.Errorf("body: %w, got %s", errNotEvents, kind(v))
	}
	if r.Body, err = marshalJSON(v); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	return nil
}
