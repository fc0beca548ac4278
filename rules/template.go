package rules

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Scope is what a template sees: the event as "message", the captures of
// the matching case as "match", and both again under "globals" (so
// "globals.message" is the whole event).
type Scope struct {
	Message map[string]any
	Match   map[string]any
}

// Template is a compiled template string. It is parsed once, when the
// configuration is loaded; expanding it never parses anything. A Template is
// immutable and safe for concurrent use.
//
// Syntax: {expr} expands to the value, URI-component-encoded (as
// JavaScript's encodeURIComponent); {+expr} and {{expr}} expand to the value
// as is. When the whole string is exactly one {{expr}}, Value keeps the
// value's JSON type. An expression is a path (message.meta.uri,
// message.tags[1], message['meta'].uri, match.meta.uri[1],
// globals.message), a string, number, array or object literal, or a
// function call (see template_funcs.go). A missing path expands to "".
type Template struct {
	src       string
	parts     []part
	whole     expr // non-nil when src is exactly one {{expr}}
	usesMatch bool
	message   bool // src is exactly {{message}} or {{globals.message}}
}

// part is a literal run of text (e == nil) or an expression.
type part struct {
	lit    string
	e      expr
	encode bool
}

// ParseTemplate compiles a template string.
func ParseTemplate(src string) (*Template, error) {
	t := &Template{src: src}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, part{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(src); {
		c := src[i]
		if c != '{' {
			j := strings.IndexByte(src[i:], '{')
			if j < 0 {
				j = len(src) - i
			}
			lit.WriteString(src[i : i+j])
			i += j
			continue
		}
		start := i
		double := strings.HasPrefix(src[i:], "{{")
		encode := !double
		if double {
			i += 2
		} else {
			i++
			if i < len(src) && src[i] == '+' {
				encode = false
				i++
			}
		}
		p := &parser{src: src, pos: i, t: t}
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		p.space()
		closing := "}"
		if double {
			closing = "}}"
		}
		if !strings.HasPrefix(src[p.pos:], closing) {
			return nil, p.errorf("expected %q", closing)
		}
		i = p.pos + len(closing)
		if double && start == 0 && i == len(src) {
			t.whole = e
			if pe, ok := e.(*pathExpr); ok && pe.root == rootMessage && len(pe.segs) == 0 {
				t.message = true
			}
		}
		flush()
		t.parts = append(t.parts, part{e: e, encode: encode})
	}
	flush()
	return t, nil
}

// String returns the template's source.
func (t *Template) String() string { return t.src }

// IsLiteral reports whether the template contains no expression.
func (t *Template) IsLiteral() bool {
	return len(t.parts) == 0 || (len(t.parts) == 1 && t.parts[0].e == nil)
}

// UsesMatch reports whether the template reads the "match" captures.
func (t *Template) UsesMatch() bool { return t.usesMatch }

// Value expands the template. When the template is exactly one {{expr}}
// the value keeps its type (map[string]any, []any, json.Number, bool, nil
// for null or missing); otherwise it is the expanded string.
func (t *Template) Value(s Scope) (any, error) {
	if t.whole != nil {
		v, err := t.whole.eval(s)
		if err != nil {
			return nil, err
		}
		if v == undefined {
			return nil, nil
		}
		return v, nil
	}
	return t.Text(s)
}

// Text expands the template to a string. Values that are not strings are
// written as JSON (numbers, booleans, objects, arrays); null and missing
// values as "".
func (t *Template) Text(s Scope) (string, error) {
	if t.IsLiteral() {
		return t.src, nil
	}
	if t.whole != nil {
		v, err := t.whole.eval(s)
		if err != nil {
			return "", err
		}
		return valueText(v), nil
	}
	var buf [128]byte
	b, err := t.AppendText(buf[:0], s)
	return string(b), err
}

// textOrNone is Text, except that ok is false when the template is exactly
// one {{expr}} whose value is null or missing (Value's nil).
func (t *Template) textOrNone(s Scope) (text string, ok bool, err error) {
	if t.whole == nil {
		text, err = t.Text(s)
		return text, err == nil, err
	}
	v, err := t.whole.eval(s)
	if err != nil {
		return "", false, err
	}
	switch v.(type) {
	case nil, undefinedValue:
		return "", false, nil
	}
	return valueText(v), true, nil
}

// valueText is appendValue's text of v, without a copy for strings and
// numbers.
func valueText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return string(x)
	}
	return string(appendValue(nil, v))
}

// AppendText appends the expanded template to dst.
func (t *Template) AppendText(dst []byte, s Scope) ([]byte, error) {
	for _, p := range t.parts {
		if p.e == nil {
			dst = append(dst, p.lit...)
			continue
		}
		v, err := p.e.eval(s)
		if err != nil {
			return dst, err
		}
		if p.encode {
			dst = appendEncoded(dst, v)
		} else {
			dst = appendValue(dst, v)
		}
	}
	return dst, nil
}

// parser reads one expression of a template.
type parser struct {
	src string
	pos int
	t   *Template
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("template %q at offset %d: %s", p.src, p.pos, fmt.Sprintf(format, args...))
}

func (p *parser) space() {
	for p.pos < len(p.src) && (p.src[p.pos] == ' ' || p.src[p.pos] == '\t' || p.src[p.pos] == '\n') {
		p.pos++
	}
}

func (p *parser) peek() byte {
	if p.pos < len(p.src) {
		return p.src[p.pos]
	}
	return 0
}

func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdent(c byte) bool { return isIdentStart(c) || c == '-' || (c >= '0' && c <= '9') }

// maxDepth bounds nesting so that hostile templates cannot exhaust the stack.
const maxDepth = 64

func (p *parser) expr() (expr, error) { return p.exprDepth(0) }

func (p *parser) exprDepth(depth int) (expr, error) {
	if depth > maxDepth {
		return nil, p.errorf("nested too deeply")
	}
	p.space()
	c := p.peek()
	switch {
	case c == '\'' || c == '"':
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		return literal{s}, nil
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == '[':
		p.pos++
		var elems []expr
		err := p.list(']', depth, func(e expr) { elems = append(elems, e) })
		if err != nil {
			return nil, err
		}
		return &arrayExpr{elems: elems}, nil
	case c == '{':
		return p.object(depth)
	case isIdentStart(c):
	default:
		if c == 0 {
			return nil, p.errorf("expression expected")
		}
		return nil, p.errorf("unexpected %q", c)
	}
	name := p.ident()
	p.space()
	if p.peek() == '(' {
		p.pos++
		f, ok := funcs[name]
		if !ok {
			return nil, p.errorf("unknown function %q", name)
		}
		var args []expr
		if err := p.list(')', depth, func(e expr) { args = append(args, e) }); err != nil {
			return nil, err
		}
		if len(args) < f.min || len(args) > f.max {
			return nil, p.errorf("%s takes %s", name, f.arity())
		}
		return &callExpr{name: name, fn: f.fn, args: args}, nil
	}
	switch name {
	case "true", "false":
		return literal{name == "true"}, nil
	case "null":
		return literal{nil}, nil
	case "undefined":
		return literal{undefined}, nil
	}
	var segs []segment
	for {
		seg, ok, err := p.segment()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		segs = append(segs, seg)
	}
	pe := &pathExpr{segs: segs}
	switch name {
	case "message":
		pe.root = rootMessage
	case "match":
		pe.root = rootMatch
	case "globals":
		pe.root = rootGlobals
		if len(segs) > 0 && segs[0].key == "message" {
			pe.root, pe.segs = rootMessage, segs[1:]
		} else if len(segs) > 0 && segs[0].key == "match" {
			pe.root, pe.segs = rootMatch, segs[1:]
		}
	default:
		return nil, p.errorf("unknown name %q (want message, match or globals)", name)
	}
	if pe.root != rootMessage {
		p.t.usesMatch = true
	}
	return pe, nil
}

func (p *parser) ident() string {
	start := p.pos
	for p.pos < len(p.src) && isIdent(p.src[p.pos]) {
		p.pos++
	}
	return p.src[start:p.pos]
}

// segment reads .name, [n] or ['name'] after a path.
func (p *parser) segment() (segment, bool, error) {
	switch p.peek() {
	case '.':
		p.pos++
		name := p.ident()
		if name == "" {
			return segment{}, false, p.errorf("name expected after '.'")
		}
		return newSegment(name), true, nil
	case '[':
		p.pos++
		p.space()
		var seg segment
		switch c := p.peek(); {
		case c == '\'' || c == '"':
			s, err := p.str()
			if err != nil {
				return seg, false, err
			}
			seg = segment{key: s, index: -1}
		case c >= '0' && c <= '9':
			start := p.pos
			for p.pos < len(p.src) && p.src[p.pos] >= '0' && p.src[p.pos] <= '9' {
				p.pos++
			}
			seg = newSegment(p.src[start:p.pos])
		default:
			return seg, false, p.errorf("index or quoted name expected")
		}
		p.space()
		if p.peek() != ']' {
			return seg, false, p.errorf("expected ']'")
		}
		p.pos++
		return seg, true, nil
	}
	return segment{}, false, nil
}

// list reads comma-separated expressions up to and including end.
func (p *parser) list(end byte, depth int, add func(expr)) error {
	p.space()
	if p.peek() == end {
		p.pos++
		return nil
	}
	for {
		e, err := p.exprDepth(depth + 1)
		if err != nil {
			return err
		}
		add(e)
		p.space()
		switch p.peek() {
		case ',':
			p.pos++
		case end:
			p.pos++
			return nil
		default:
			return p.errorf("expected ',' or %q", end)
		}
	}
}

// object reads an object literal {key: expr, 'key': expr}.
func (p *parser) object(depth int) (expr, error) {
	p.pos++
	oe := &objectExpr{}
	p.space()
	if p.peek() == '}' {
		p.pos++
		return oe, nil
	}
	for {
		p.space()
		var key string
		switch c := p.peek(); {
		case c == '\'' || c == '"':
			s, err := p.str()
			if err != nil {
				return nil, err
			}
			key = s
		case isIdent(c):
			key = p.ident()
		default:
			return nil, p.errorf("object key expected")
		}
		p.space()
		if p.peek() != ':' {
			return nil, p.errorf("expected ':'")
		}
		p.pos++
		e, err := p.exprDepth(depth + 1)
		if err != nil {
			return nil, err
		}
		oe.keys = append(oe.keys, key)
		oe.vals = append(oe.vals, e)
		p.space()
		switch p.peek() {
		case ',':
			p.pos++
		case '}':
			p.pos++
			return oe, nil
		default:
			return nil, p.errorf("expected ',' or '}'")
		}
	}
}

// str reads a quoted string with backslash escapes.
func (p *parser) str() (string, error) {
	q := p.src[p.pos]
	p.pos++
	var b strings.Builder
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		p.pos++
		switch {
		case c == q:
			return b.String(), nil
		case c == '\\' && p.pos < len(p.src):
			b.WriteByte(p.src[p.pos])
			p.pos++
		default:
			b.WriteByte(c)
		}
	}
	return "", p.errorf("unterminated string")
}

func (p *parser) number() (expr, error) {
	start := p.pos
	if p.peek() == '-' {
		p.pos++
	}
	for p.pos < len(p.src) && strings.IndexByte("0123456789.eE+-", p.src[p.pos]) >= 0 {
		if (p.src[p.pos] == '+' || p.src[p.pos] == '-') && p.src[p.pos-1] != 'e' && p.src[p.pos-1] != 'E' {
			break
		}
		p.pos++
	}
	text := p.src[start:p.pos]
	f, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return nil, p.errorf("bad number %q", text)
	}
	return literal{numberValue(text, f)}, nil
}
