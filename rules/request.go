package rules

import (
	"bytes"
	"fmt"
	"net/url"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// AddedHeaders is how many headers the dispatcher may add to a Request
// (user-agent, x-request-id, x-triggered-by); Headers has room for them.
const AddedHeaders = 3

// Request is one expanded HTTP request of an exec template.
type Request struct {
	Method  string        // upper-case; default "GET"
	URI     string        // expanded, with the query appended URL-encoded
	Headers []Header      // names lower-cased, in template order; room for AddedHeaders more
	Body    []byte        // nil when there is no body
	Timeout time.Duration // the exec's timeout, or the rule's
	// Stream is set for an exec that produces events (uri kafka:///<stream>)
	// instead of sending a request: Body, a JSON object or an array of
	// objects, is to be produced to the stream. URI is then the exec's uri
	// and Method and Headers are empty.
	Stream string
	// ResponseLimit is how many bytes of the response body the sender
	// keeps; 0 means MaxBodyExcerpt of package dispatch. Actions that read
	// the answer (fanout's Action API pages) raise it.
	ResponseLimit int
}

// Header is one request header.
type Header struct{ Name, Value string }

// Header returns the value of the header with this lower-case name, or "".
func (r *Request) Header(name string) string {
	for _, h := range r.Headers {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

// Exec is a compiled request template (one entry of exec).
type Exec struct {
	Method  string        // method, upper-cased; default "GET"
	URI     *Template     // uri
	Timeout time.Duration // timeout, or the rule's
	// Stream is the stream of an exec whose uri is kafka:///<stream>: it
	// produces its body as events instead of sending a request.
	Stream string

	headers []namedTemplate
	query   []namedTemplate
	body    valueTemplate // nil: no body
	path    string        // where it was read from, for messages
}

type namedTemplate struct {
	name string
	t    *Template
}

// Requests expands the exec templates of the matched case, in order. It
// returns nil when the case has no exec.
func (m *Match) Requests(ev *Event) ([]Request, error) {
	if m.Rule.Purge != nil {
		return m.Rule.Purge.requests(m, ev)
	}
	execs := m.Case.Exec
	if len(execs) == 0 {
		return nil, nil
	}
	ev = m.Rule.eventFor(ev)
	s := m.Scope(ev)
	out := make([]Request, len(execs))
	for i, x := range execs {
		if err := x.expand(&out[i], s, ev); err != nil {
			return nil, fmt.Errorf("rule %s: exec[%d]: %w", m.Rule.Name, i, err)
		}
	}
	return out, nil
}

// Expand expands the request template for ev in scope s, the scope of ev
// under its match (Match.Scope).
func (x *Exec) Expand(ev *Event, s Scope) (Request, error) {
	var r Request
	err := x.expand(&r, s, ev)
	return r, err
}

func (x *Exec) expand(r *Request, s Scope, ev *Event) error {
	if x.Stream != "" {
		return x.expandProduce(r, s, ev)
	}
	r.Method, r.Timeout = x.Method, x.Timeout
	var err error
	if len(x.query) == 0 {
		if r.URI, err = x.URI.Text(s); err != nil {
			return fmt.Errorf("uri: %w", err)
		}
	} else {
		b, err := x.URI.AppendText(make([]byte, 0, 128), s)
		if err != nil {
			return fmt.Errorf("uri: %w", err)
		}
		sep := byte('?')
		if bytes.IndexByte(b, '?') >= 0 {
			sep = '&'
		}
		for _, q := range x.query {
			b = append(b, sep)
			sep = '&'
			b = appendQueryComponent(b, q.name)
			b = append(b, '=')
			v, err := q.t.Text(s)
			if err != nil {
				return fmt.Errorf("query.%s: %w", q.name, err)
			}
			b = appendQueryComponent(b, v)
		}
		r.URI = string(b)
	}
	jsonBody := false
	// Room for the headers the dispatcher adds to every request
	// (user-agent, x-request-id, x-triggered-by): one allocation.
	r.Headers = make([]Header, 0, len(x.headers)+AddedHeaders)
	for _, h := range x.headers {
		text, ok, err := h.t.textOrNone(s)
		if err != nil {
			return fmt.Errorf("headers.%s: %w", h.name, err)
		}
		if !ok {
			continue // a missing value drops the header
		}
		if h.name == "content-type" && isJSONType(text) {
			jsonBody = true
		}
		r.Headers = append(r.Headers, Header{Name: h.name, Value: text})
	}
	if x.body == nil {
		return nil
	}
	if t, ok := x.body.(*Template); ok && t.message && ev != nil {
		r.Body = ev.Raw // the event as it came: no re-encoding
		return nil
	}
	v, err := x.body.value(s)
	if err != nil {
		return fmt.Errorf("body: %w", err)
	}
	switch b := v.(type) {
	case undefinedValue:
		return nil
	case string:
		if !jsonBody {
			r.Body = []byte(b)
			return nil
		}
	}
	if r.Body, err = marshalJSON(v); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	return nil
}

// isJSONType reports whether a content-type is application/json.
func isJSONType(ct string) bool {
	const want = "application/json"
	return len(ct) >= len(want) && strings.EqualFold(ct[:len(want)], want)
}

func appendQueryComponent(dst []byte, s string) []byte {
	return append(dst, url.QueryEscape(s)...)
}

// valueTemplate is a compiled body: a template string, a constant, or an
// object or array of those.
type valueTemplate interface {
	value(s Scope) (any, error)
}

// value of a body string: typed when the string is exactly one {{expr}}.
func (t *Template) value(s Scope) (any, error) {
	if t.whole != nil {
		return t.whole.eval(s)
	}
	return t.Text(s)
}

type constValue struct{ v any }

func (c constValue) value(Scope) (any, error) { return c.v, nil }

type objectValue struct {
	keys []string
	vals []valueTemplate
}

func (o *objectValue) value(s Scope) (any, error) {
	out := make(map[string]any, len(o.keys))
	for i, t := range o.vals {
		v, err := t.value(s)
		if err != nil {
			return nil, err
		}
		if v != undefined {
			out[o.keys[i]] = v
		}
	}
	return out, nil
}

type arrayValue struct{ elems []valueTemplate }

func (a *arrayValue) value(s Scope) (any, error) {
	out := make([]any, len(a.elems))
	for i, t := range a.elems {
		v, err := t.value(s)
		if err != nil {
			return nil, err
		}
		if v == undefined {
			v = nil
		}
		out[i] = v
	}
	return out, nil
}

// compileValue compiles a body node.
func (p *problems) compileValue(r *Rule, n *yaml.Node, path string) valueTemplate {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		o := p.object(path, n)
		ov := &objectValue{}
		for _, e := range o.entries {
			e.used = true
			ov.keys = append(ov.keys, e.key)
			ov.vals = append(ov.vals, p.compileValue(r, e.node, e.path))
		}
		return ov
	case yaml.SequenceNode:
		av := &arrayValue{}
		for i, c := range n.Content {
			av.elems = append(av.elems, p.compileValue(r, c, index(path, i)))
		}
		return av
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return constValue{nil}
		case "!!bool":
			var b bool
			_ = n.Decode(&b)
			return constValue{b}
		case "!!int", "!!float":
			var f float64
			if err := n.Decode(&f); err != nil {
				p.add(path, "bad number %q", n.Value)
			}
			return constValue{numberValue(n.Value, f)}
		}
		if t := p.template(r, n, path); t != nil {
			return t
		}
		return constValue{n.Value}
	}
	p.add(path, "unsupported value")
	return constValue{nil}
}

// compileExecs compiles exec: one request template or a list.
func (p *problems) compileExecs(r *Rule, n *yaml.Node, path string) []*Exec {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind == yaml.SequenceNode {
		out := make([]*Exec, 0, len(n.Content))
		for i, item := range n.Content {
			out = append(out, p.compileExec(r, item, index(path, i)))
		}
		return out
	}
	return []*Exec{p.compileExec(r, n, path)}
}

func (p *problems) compileExec(r *Rule, n *yaml.Node, path string) *Exec {
	x := &Exec{Method: "GET", Timeout: r.Timeout, path: path}
	o := p.object(path, n)
	if mn, mpath := o.get("method"); mn != nil {
		if m, ok := p.str(mn, mpath); ok {
			x.Method = strings.ToUpper(m)
			if !isToken(x.Method) {
				p.add(mpath, "bad method %q", m)
			}
		}
	}
	un, upath := o.get("uri")
	if isProduceURI(un) {
		return p.compileProduce(r, x, o, un, upath)
	}
	x.URI = p.uriTemplate(r, un, upath, "")
	if hn, hpath := o.get("headers"); !isNull(hn) {
		x.headers = p.namedTemplates(r, hn, hpath, true)
	}
	if qn, qpath := o.get("query"); !isNull(qn) {
		x.query = p.namedTemplates(r, qn, qpath, false)
	}
	if bn, bpath := o.get("body"); bn != nil {
		x.body = p.compileValue(r, bn, bpath)
	}
	if tn, tpath := o.get("timeout"); tn != nil {
		if d, ok := p.duration(tn, tpath, time.Millisecond); ok {
			if d == 0 {
				p.add(tpath, "must be positive")
			}
			x.Timeout = d
		}
	}
	o.finish()
	return x
}

// uriTemplate compiles a required request uri; a missing or empty one is
// reported as required (with hint). It never returns nil.
func (p *problems) uriTemplate(r *Rule, n *yaml.Node, path, hint string) *Template {
	empty, _ := ParseTemplate("")
	if isNull(n) || (n.Kind == yaml.ScalarNode && strings.TrimSpace(n.Value) == "") {
		p.add(path, "required%s", hint)
		return empty
	}
	t := p.template(r, n, path)
	if t == nil {
		return empty
	}
	p.checkURI(t, path)
	return t
}

// namedTemplates compiles headers or query: name -> template, in order.
func (p *problems) namedTemplates(r *Rule, n *yaml.Node, path string, lower bool) []namedTemplate {
	o := p.object(path, n)
	out := make([]namedTemplate, 0, len(o.entries))
	for _, e := range o.entries {
		e.used = true
		name := e.key
		if lower {
			name = strings.ToLower(name)
			if !isToken(name) {
				p.add(e.path, "bad header name %q", e.key)
			}
		}
		if t := p.template(r, e.node, e.path); t != nil {
			out = append(out, namedTemplate{name: name, t: t})
		}
	}
	return out
}

// checkURI checks the part of a URI template that is known at load time.
func (p *problems) checkURI(t *Template, path string) {
	if len(t.parts) == 0 || t.parts[0].e != nil {
		return // begins with an expression: checked when sent
	}
	lit := t.parts[0].lit
	full := t.IsLiteral()
	if !full && !strings.Contains(lit, "/") {
		return
	}
	u, err := url.Parse(lit)
	if err != nil {
		if full {
			p.add(path, "bad uri %q: %v", t.src, err)
		}
		return
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		p.add(path, "uri %q: scheme must be http or https", t.src)
	}
}

// isToken reports whether s is a non-empty HTTP token (method or header name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}
