package rules

import (
	"encoding/json"
	"errors"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeObject decodes a JSON object into the values encoding/json would
// produce with UseNumber (map[string]any, []any, string, json.Number, bool,
// nil), about three times faster: events are decoded once each, on the hot
// path. FuzzDecodeJSON holds it to encoding/json's results.
func decodeObject(data []byte) (map[string]any, error) {
	// Strings and numbers without escapes are substrings of one copy of
	// the input: one allocation instead of one per value.
	d := jsonDecoder{data: data, src: string(data)}
	d.space()
	if d.pos >= len(d.data) || d.data[d.pos] != '{' {
		if !json.Valid(data) {
			return nil, errBadJSON
		}
		return nil, errNotObject
	}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	d.space()
	if d.pos != len(d.data) {
		return nil, errBadJSON
	}
	return v.(map[string]any), nil
}

var (
	errBadJSON   = errors.New("invalid JSON")
	errNotObject = errors.New("not an object")
)

// maxJSONDepth is encoding/json's nesting limit.
const maxJSONDepth = 10000

type jsonDecoder struct {
	data []byte
	src  string // string(data)
	pos  int
}

func (d *jsonDecoder) space() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *jsonDecoder) value(depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, errBadJSON
	}
	d.space()
	if d.pos >= len(d.data) {
		return nil, errBadJSON
	}
	switch c := d.data[d.pos]; c {
	case '{':
		d.pos++
		m := make(map[string]any)
		d.space()
		if d.pos < len(d.data) && d.data[d.pos] == '}' {
			d.pos++
			return m, nil
		}
		for {
			d.space()
			if d.pos >= len(d.data) || d.data[d.pos] != '"' {
				return nil, errBadJSON
			}
			k, err := d.str()
			if err != nil {
				return nil, err
			}
			d.space()
			if d.pos >= len(d.data) || d.data[d.pos] != ':' {
				return nil, errBadJSON
			}
			d.pos++
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			m[k] = v
			d.space()
			if d.pos >= len(d.data) {
				return nil, errBadJSON
			}
			switch d.data[d.pos] {
			case ',':
				d.pos++
			case '}':
				d.pos++
				return m, nil
			default:
				return nil, errBadJSON
			}
		}
	case '[':
		d.pos++
		a := []any{}
		d.space()
		if d.pos < len(d.data) && d.data[d.pos] == ']' {
			d.pos++
			return a, nil
		}
		for {
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
			d.space()
			if d.pos >= len(d.data) {
				return nil, errBadJSON
			}
			switch d.data[d.pos] {
			case ',':
				d.pos++
			case ']':
				d.pos++
				return a, nil
			default:
				return nil, errBadJSON
			}
		}
	case '"':
		return d.str()
	case 't':
		return d.word("true", true)
	case 'f':
		return d.word("false", false)
	case 'n':
		return d.word("null", nil)
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			return d.number()
		}
	}
	return nil, errBadJSON
}

func (d *jsonDecoder) word(w string, v any) (any, error) {
	if len(d.data)-d.pos < len(w) || string(d.data[d.pos:d.pos+len(w)]) != w {
		return nil, errBadJSON
	}
	d.pos += len(w)
	return v, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// number reads a number with JSON's grammar:
// -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
func (d *jsonDecoder) number() (any, error) {
	start := d.pos
	data := d.data
	if data[d.pos] == '-' {
		d.pos++
	}
	switch {
	case d.pos < len(data) && data[d.pos] == '0':
		d.pos++
	case d.pos < len(data) && data[d.pos] >= '1' && data[d.pos] <= '9':
		for d.pos < len(data) && isDigit(data[d.pos]) {
			d.pos++
		}
	default:
		return nil, errBadJSON
	}
	if d.pos < len(data) && data[d.pos] == '.' {
		d.pos++
		if d.pos >= len(data) || !isDigit(data[d.pos]) {
			return nil, errBadJSON
		}
		for d.pos < len(data) && isDigit(data[d.pos]) {
			d.pos++
		}
	}
	if d.pos < len(data) && (data[d.pos] == 'e' || data[d.pos] == 'E') {
		d.pos++
		if d.pos < len(data) && (data[d.pos] == '+' || data[d.pos] == '-') {
			d.pos++
		}
		if d.pos >= len(data) || !isDigit(data[d.pos]) {
			return nil, errBadJSON
		}
		for d.pos < len(data) && isDigit(data[d.pos]) {
			d.pos++
		}
	}
	return json.Number(d.src[start:d.pos]), nil
}

// str reads a string, replacing invalid UTF-8 and lone surrogates with
// U+FFFD as encoding/json does.
func (d *jsonDecoder) str() (string, error) {
	d.pos++ // opening quote
	start := d.pos
	data := d.data
	// Fast path: no escapes, ASCII or valid UTF-8.
	for d.pos < len(data) {
		c := data[d.pos]
		if c == '"' {
			s := data[start:d.pos]
			d.pos++
			if utf8.Valid(s) {
				return d.src[start : d.pos-1], nil
			}
			return string(appendValidUTF8(nil, s)), nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return "", errBadJSON
		}
		d.pos++
	}
	if d.pos >= len(data) {
		return "", errBadJSON
	}
	buf := appendValidUTF8(make([]byte, 0, d.pos-start+16), data[start:d.pos])
	for d.pos < len(data) {
		c := data[d.pos]
		switch {
		case c == '"':
			d.pos++
			return string(buf), nil
		case c < 0x20:
			return "", errBadJSON
		case c != '\\':
			end := d.pos
			for end < len(data) && data[end] != '"' && data[end] != '\\' && data[end] >= 0x20 {
				end++
			}
			buf = appendValidUTF8(buf, data[d.pos:end])
			d.pos = end
			continue
		}
		d.pos++
		if d.pos >= len(data) {
			return "", errBadJSON
		}
		e := data[d.pos]
		d.pos++
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				return "", errBadJSON
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if d.pos+1 < len(data) && data[d.pos] == '\\' && data[d.pos+1] == 'u' {
					save := d.pos
					d.pos += 2
					var ok2 bool
					if r2, ok2 = d.hex4(); !ok2 {
						return "", errBadJSON
					}
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						buf = utf8.AppendRune(buf, dec)
						continue
					}
					d.pos = save
				}
				r = utf8.RuneError
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return "", errBadJSON
		}
	}
	return "", errBadJSON
}

func (d *jsonDecoder) hex4() (rune, bool) {
	if len(d.data)-d.pos < 4 {
		return 0, false
	}
	var r rune
	for _, c := range d.data[d.pos : d.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	d.pos += 4
	return r, true
}

// appendValidUTF8 appends s with every invalid byte replaced by U+FFFD.
func appendValidUTF8(dst, s []byte) []byte {
	for len(s) > 0 {
		r, size := utf8.DecodeRune(s)
		if r == utf8.RuneError && size == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, s[:size]...)
		}
		s = s[size:]
	}
	return dst
}
