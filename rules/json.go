package rules

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// decodeObject decodes a JSON object into the values encoding/json would
// produce with UseNumber (map[string]any, []any, string, json.Number, bool,
// nil), about three times faster: events are decoded once each, on the hot
// path. With a projection it builds only the members on the projection's
// paths and passes over the rest (projection.go); the whole input is
// checked either way. FuzzDecodeJSON holds the full decode to
// encoding/json's results, FuzzProjectedDecode the projected one to the
// full one.
func decodeObject(data []byte, p *projection) (map[string]any, error) {
	// Strings and numbers without escapes are substrings of one copy of
	// the input: one allocation instead of one per value.
	m, _, err := decodeFrom(data, string(data), p)
	return m, err
}

// decodeEvent is decodeObject for an event's raw bytes, which the Event
// keeps (Raw) and nobody changes: its strings and numbers are substrings
// of raw itself, with no copy. For a 1.8 KB job event that is 1.8 KB less
// to allocate and copy, and to hold for each job read ahead or in flight.
// meta is as decodeFrom's.
func decodeEvent(raw []byte, p *projection) (m map[string]any, meta int, err error) {
	return decodeFrom(raw, unsafe.String(unsafe.SliceData(raw), len(raw)), p)
}

// decodeFrom decodes data, whose text is src. meta is the offset in data
// of the value of the top-level member "meta" that m holds (the last one,
// as encoding/json keeps), -1 when there is none.
func decodeFrom(data []byte, src string, p *projection) (m map[string]any, meta int, err error) {
	d := jsonDecoder{data: data, src: src, meta: -1}
	d.space()
	if d.pos >= len(d.data) || d.data[d.pos] != '{' {
		if !json.Valid(data) {
			return nil, -1, errBadJSON
		}
		return nil, -1, errNotObject
	}
	if p == nil {
		p = everything
	}
	v, err := d.projected(p, 0)
	if err != nil {
		return nil, -1, err
	}
	d.space()
	if d.pos != len(d.data) {
		return nil, -1, errBadJSON
	}
	return v.(map[string]any), d.meta, nil
}

var (
	errBadJSON   = errors.New("invalid JSON")
	errNotObject = errors.New("not an object")
)

// maxJSONDepth is encoding/json's nesting limit.
const maxJSONDepth = 10000

type jsonDecoder struct {
	data []byte
	src  string // data's text: a copy, or data itself (decodeEvent)
	pos  int
	meta int // offset of the last top-level "meta" member's value, or -1
}

// noteMember notes where a member's value starts, at d.pos: the last "meta" of
// the top-level object is the one the decode keeps.
func (d *jsonDecoder) noteMember(depth int, name string) {
	if depth == 0 && name == "meta" {
		d.space()
		d.meta = d.pos
	}
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

// value reads one value at nesting depth depth. With build false it only
// checks the syntax and moves past the value, allocating nothing: the
// projected decode passes over what a rule does not read this way, so that
// it accepts and rejects exactly the inputs the full decode does.
func (d *jsonDecoder) value(depth int, build bool) (any, error) {
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
		var m map[string]any
		if build {
			m = make(map[string]any)
		}
		if d.closes('}') {
			return m, nil
		}
		for {
			k, err := d.key(build)
			if err != nil {
				return nil, err
			}
			d.noteMember(depth, k)
			v, err := d.value(depth+1, build)
			if err != nil {
				return nil, err
			}
			if build {
				m[k] = v
			}
			if more, err := d.next('}'); err != nil || !more {
				return m, err
			}
		}
	case '[':
		d.pos++
		var a []any
		if build {
			a = []any{}
		}
		if d.closes(']') {
			return a, nil
		}
		for {
			v, err := d.value(depth+1, build)
			if err != nil {
				return nil, err
			}
			if build {
				a = append(a, v)
			}
			if more, err := d.next(']'); err != nil || !more {
				return a, err
			}
		}
	case '"':
		if build {
			return d.str()
		}
		_, err := d.skipString()
		return nil, err
	case 't':
		return d.word("true", true)
	case 'f':
		return d.word("false", false)
	case 'n':
		return d.word("null", nil)
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			start := d.pos
			if err := d.number(); err != nil || !build {
				return nil, err
			}
			return json.Number(d.src[start:d.pos]), nil
		}
	}
	return nil, errBadJSON
}

// closes passes over white space and reports whether the container just
// opened ends at once; it then consumes the closing byte too.
func (d *jsonDecoder) closes(end byte) bool {
	d.space()
	if d.pos < len(d.data) && d.data[d.pos] == end {
		d.pos++
		return true
	}
	return false
}

// key reads an object member's name and the colon after it; with build
// false it checks the name and returns "".
func (d *jsonDecoder) key(build bool) (k string, err error) {
	if err := d.quote(); err != nil {
		return "", err
	}
	if build {
		k, err = d.str()
	} else {
		_, err = d.skipString()
	}
	if err != nil {
		return "", err
	}
	return k, d.colon()
}

// quote passes over white space up to the opening quote of a member's name.
func (d *jsonDecoder) quote() error {
	d.space()
	if d.pos >= len(d.data) || d.data[d.pos] != '"' {
		return errBadJSON
	}
	return nil
}

// colon passes over the white space and the colon after a member's name.
func (d *jsonDecoder) colon() error {
	d.space()
	if d.pos >= len(d.data) || d.data[d.pos] != ':' {
		return errBadJSON
	}
	d.pos++
	return nil
}

// next reads what follows a member or element: a comma (more is true) or
// the container's closing byte end (more is false, err nil).
func (d *jsonDecoder) next(end byte) (more bool, err error) {
	d.space()
	if d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ',':
			d.pos++
			return true, nil
		case end:
			d.pos++
			return false, nil
		}
	}
	return false, errBadJSON
}

func (d *jsonDecoder) word(w string, v any) (any, error) {
	if len(d.data)-d.pos < len(w) || string(d.data[d.pos:d.pos+len(w)]) != w {
		return nil, errBadJSON
	}
	d.pos += len(w)
	return v, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// number passes over a number with JSON's grammar:
// -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
func (d *jsonDecoder) number() error {
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
		return errBadJSON
	}
	if d.pos < len(data) && data[d.pos] == '.' {
		d.pos++
		if d.pos >= len(data) || !isDigit(data[d.pos]) {
			return errBadJSON
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
			return errBadJSON
		}
		for d.pos < len(data) && isDigit(data[d.pos]) {
			d.pos++
		}
	}
	return nil
}

// str reads a string, replacing invalid UTF-8 and lone surrogates with
// U+FFFD as encoding/json does.
func (d *jsonDecoder) str() (string, error) {
	start := d.pos + 1
	plain, err := d.skipString()
	if err != nil {
		return "", err
	}
	end := d.pos - 1 // the closing quote
	s := d.data[start:end]
	if !plain {
		return string(unescape(make([]byte, 0, len(s)), s)), nil
	}
	if utf8.Valid(s) {
		return d.src[start:end], nil
	}
	return string(appendValidUTF8(nil, s)), nil
}

// stopsWord reports whether one of the eight bytes of w may be one that
// stopsString marks: '"', '\\' or a control character. It may say yes
// when none is (then the bytes are looked at one by one), never no when
// one is.
func stopsWord(w uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	zero := func(x uint64) uint64 { return (x - ones) &^ x & highs }
	return (zero(w^(ones*'"')) | zero(w^(ones*'\\')) | ((w - ones*0x20) &^ w & highs)) != 0
}

// stopsString marks the bytes at which a scan through a string must look
// closer: the closing quote, an escape, a control character (an error).
var stopsString = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// skipString passes over the string at d.pos (its opening quote), checking
// its escapes. plain reports that it has none: its text is its bytes.
func (d *jsonDecoder) skipString() (plain bool, err error) {
	data := d.data
	i := d.pos + 1
	plain = true
	for {
		// Eight bytes at a time while none of them ends the string, starts
		// an escape or is a control character; then byte by byte.
		for i+8 <= len(data) && !stopsWord(binary.LittleEndian.Uint64(data[i:])) {
			i += 8
		}
		for i < len(data) && !stopsString[data[i]] {
			i++
		}
		if i >= len(data) || data[i] < 0x20 {
			return false, errBadJSON
		}
		if data[i] == '"' {
			d.pos = i + 1
			return plain, nil
		}
		plain = false
		if i+1 >= len(data) {
			return false, errBadJSON
		}
		switch data[i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i += 2
		case 'u':
			if _, ok := hex4(data[i+2:]); !ok {
				return false, errBadJSON
			}
			i += 6
		default:
			return false, errBadJSON
		}
	}
}

// unescape appends the text of s, the inside of a string that skipString
// has checked, decoding its escapes.
func unescape(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		if s[i] != '\\' {
			j := i
			for j < len(s) && s[j] != '\\' {
				j++
			}
			dst = appendValidUTF8(dst, s[i:j])
			i = j
			continue
		}
		e := s[i+1]
		i += 2
		switch e {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, _ := hex4(s[i:])
			i += 4
			if utf16.IsSurrogate(r) {
				if len(s)-i >= 6 && s[i] == '\\' && s[i+1] == 'u' {
					r2, _ := hex4(s[i+2:])
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						dst = utf8.AppendRune(dst, dec)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, e)
		}
	}
	return dst
}

// hex4 reads the four hex digits of a \u escape at the start of b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
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
