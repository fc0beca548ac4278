package rules

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// undefinedValue is the value of a missing path. It is distinct from nil,
// which is JSON null: an object in a body template drops keys whose value is
// undefined, as JSON.stringify did in the Node service.
type undefinedValue struct{}

var undefined any = undefinedValue{}

// expr is a compiled template expression.
type expr interface {
	eval(s Scope) (any, error)
}

type rootKind uint8

const (
	rootMessage rootKind = iota
	rootMatch
	rootGlobals
)

// segment is one step of a path: a key, or an index into an array (index
// is -1 when the key is not a number).
type segment struct {
	key   string
	index int
}

func newSegment(key string) segment {
	i, err := strconv.Atoi(key)
	if err != nil || i < 0 {
		i = -1
	}
	return segment{key: key, index: i}
}

// pathExpr reads a value from the scope.
type pathExpr struct {
	root rootKind
	segs []segment
}

func (e *pathExpr) eval(s Scope) (any, error) {
	var v any
	switch e.root {
	case rootMessage:
		if s.Message == nil {
			return undefined, nil
		}
		v = s.Message
	case rootMatch:
		if s.Match == nil {
			return undefined, nil
		}
		v = s.Match
	default:
		v = map[string]any{"message": s.Message, "match": s.Match}
	}
	for _, seg := range e.segs {
		v = step(v, seg)
		if v == undefined {
			break
		}
	}
	return v, nil
}

// step follows one path segment.
func step(v any, seg segment) any {
	switch c := v.(type) {
	case map[string]any:
		if x, ok := c[seg.key]; ok {
			return x
		}
	case []any:
		if seg.index >= 0 && seg.index < len(c) {
			return c[seg.index]
		}
		if seg.key == "length" {
			return json.Number(strconv.Itoa(len(c)))
		}
	case string:
		if seg.key == "length" {
			return json.Number(strconv.Itoa(len(c)))
		}
	}
	return undefined
}

// literal is a constant.
type literal struct{ v any }

func (e literal) eval(Scope) (any, error) { return e.v, nil }

// numberValue is a number literal as the JSON number it stands for.
func numberValue(src string, f float64) json.Number {
	return json.Number(canonicalNumber(src, f))
}

type arrayExpr struct{ elems []expr }

func (e *arrayExpr) eval(s Scope) (any, error) {
	out := make([]any, len(e.elems))
	for i, x := range e.elems {
		v, err := x.eval(s)
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

type objectExpr struct {
	keys []string
	vals []expr
}

func (e *objectExpr) eval(s Scope) (any, error) {
	out := make(map[string]any, len(e.keys))
	for i, x := range e.vals {
		v, err := x.eval(s)
		if err != nil {
			return nil, err
		}
		if v != undefined {
			out[e.keys[i]] = v
		}
	}
	return out, nil
}

type callExpr struct {
	name string
	fn   func(args []any) (any, error)
	args []expr
}

func (e *callExpr) eval(s Scope) (any, error) {
	var buf [3]any
	args := buf[:0]
	for _, x := range e.args {
		v, err := x.eval(s)
		if err != nil {
			return nil, err
		}
		args = append(args, v)
	}
	v, err := e.fn(args)
	if err != nil {
		return nil, &ExpandError{Func: e.name, Err: err}
	}
	return v, nil
}

// ExpandError is returned when a template function fails on the values of
// an event, e.g. date() on a string that is not a date.
type ExpandError struct {
	Func string
	Err  error
}

// Error names the function and its error.
func (e *ExpandError) Error() string { return e.Func + "(): " + e.Err.Error() }

// Unwrap returns the function's error.
func (e *ExpandError) Unwrap() error { return e.Err }

// appendValue writes v as template text: strings as they are, null and
// missing values as nothing, everything else as JSON.
func appendValue(dst []byte, v any) []byte {
	switch x := v.(type) {
	case string:
		return append(dst, x...)
	case json.Number:
		return append(dst, x...)
	case nil, undefinedValue:
		return dst
	case bool:
		return strconv.AppendBool(dst, x)
	case float64:
		return strconv.AppendFloat(dst, x, 'f', -1, 64)
	case int:
		return strconv.AppendInt(dst, int64(x), 10)
	case int64:
		return strconv.AppendInt(dst, x, 10)
	}
	b, err := marshalJSON(v)
	if err != nil {
		return dst
	}
	return append(dst, b...)
}

// marshalJSON encodes v without escaping <, > and &, which the Node
// service did not escape either.
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

// appendEncoded writes v as template text, URI-component-encoded like
// JavaScript's encodeURIComponent.
func appendEncoded(dst []byte, v any) []byte {
	s, ok := v.(string)
	if !ok {
		var tmp [64]byte
		return appendURIComponent(dst, string(appendValue(tmp[:0], v)))
	}
	return appendURIComponent(dst, s)
}

// unreserved marks the bytes encodeURIComponent leaves alone:
// A-Z a-z 0-9 - _ . ! ~ * ' ( )
var unreserved = func() (t [256]bool) {
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
		t[c+'a'-'A'] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-_.!~*'()" {
		t[c] = true
	}
	return t
}()

func appendURIComponent(dst []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved[c] {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', hex[c>>4], hex[c&15])
	}
	return dst
}
