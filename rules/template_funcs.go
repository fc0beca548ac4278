package rules

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// function is a template function with its arity.
type function struct {
	min, max int
	fn       func(args []any) (any, error)
}

func (f function) arity() string {
	switch {
	case f.min == f.max && f.min == 1:
		return "1 argument"
	case f.min == f.max:
		return fmt.Sprintf("%d arguments", f.min)
	}
	return fmt.Sprintf("%d to %d arguments", f.min, f.max)
}

// funcs are the functions templates may call, as in the Node service:
//
//	date(x[, 'rfc822'|'iso'])  x as an ISO time or epoch milliseconds (string or number);
//	                           rfc822 (default) is "Mon, 02 Jan 2006 15:04:05 GMT"
//	decode(s)                  URI-component-decodes s
//	default(a, b)              a unless it is missing, null, false, 0 or "", else b
//	merge(a, b)                a copy of object a plus the keys of b that a lacks
//	strip(obj, keys)           a copy of obj without keys (a name or a list of names)
//	filter(obj, keys)          a copy of obj with only keys
//	timeuuid()                 a new version-1 (time-based) UUID
var funcs map[string]function

func init() {
	funcs = map[string]function{
		"date":     {1, 2, fnDate},
		"decode":   {1, 1, fnDecode},
		"default":  {2, 2, fnDefault},
		"merge":    {2, 2, fnMerge},
		"strip":    {2, 2, fnStrip},
		"filter":   {2, 2, fnFilter},
		"timeuuid": {0, 0, fnTimeUUID},
	}
}

const rfc822 = "Mon, 02 Jan 2006 15:04:05 GMT"

var dateLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02",
	rfc822,
	time.RFC1123Z,
}

func fnDate(args []any) (any, error) {
	var t time.Time
	switch x := args[0].(type) {
	case nil, undefinedValue:
		return undefined, nil
	case json.Number:
		ms, err := x.Float64()
		if err != nil {
			return nil, err
		}
		t = time.UnixMilli(int64(ms))
	case float64:
		t = time.UnixMilli(int64(x))
	case string:
		parsed, err := parseDate(x)
		if err != nil {
			return nil, err
		}
		t = parsed
	default:
		return nil, fmt.Errorf("not a date: %s", kind(x))
	}
	format := "rfc822"
	if len(args) == 2 {
		f, ok := args[1].(string)
		if !ok {
			return nil, errors.New("format must be 'rfc822' or 'iso'")
		}
		format = f
	}
	switch format {
	case "rfc822":
		return t.UTC().Format(rfc822), nil
	case "iso":
		return t.UTC().Format("2006-01-02T15:04:05.000Z"), nil
	}
	return nil, fmt.Errorf("unknown format %q (want 'rfc822' or 'iso')", format)
}

func parseDate(s string) (time.Time, error) {
	// ParseInt only where it can succeed: its error costs two allocations,
	// and most dates are ISO strings.
	if isInteger(s) {
		if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.UnixMilli(ms), nil
		}
	}
	for _, layout := range dateLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("not a date: %q", s)
}

// isInteger reports whether s has the form strconv.ParseInt accepts in
// base 10: an optional sign and at least one digit.
func isInteger(s string) bool {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func fnDecode(args []any) (any, error) {
	s, ok := args[0].(string)
	if !ok {
		return args[0], nil
	}
	return url.PathUnescape(s)
}

// truthy is JavaScript's truthiness, which default() follows.
func truthy(v any) bool {
	switch x := v.(type) {
	case nil, undefinedValue:
		return false
	case bool:
		return x
	case string:
		return x != ""
	case json.Number:
		f, err := x.Float64()
		return err != nil || f != 0
	case float64:
		return x != 0
	}
	return true
}

func fnDefault(args []any) (any, error) {
	if truthy(args[0]) {
		return args[0], nil
	}
	return args[1], nil
}

func fnMerge(args []any) (any, error) {
	a, aok := args[0].(map[string]any)
	b, bok := args[1].(map[string]any)
	switch {
	case !aok && !bok:
		return args[0], nil
	case !aok:
		a = nil
	case !bok:
		b = nil
	}
	out := make(map[string]any, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if _, ok := out[k]; !ok {
			out[k] = v
		}
	}
	return out, nil
}

// keySet reads the keys argument of strip and filter.
func keySet(v any) (map[string]bool, error) {
	switch x := v.(type) {
	case string:
		return map[string]bool{x: true}, nil
	case []any:
		set := make(map[string]bool, len(x))
		for _, k := range x {
			s, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("keys must be strings, not %s", kind(k))
			}
			set[s] = true
		}
		return set, nil
	}
	return nil, fmt.Errorf("keys must be a string or a list of strings, not %s", kind(v))
}

func fnStrip(args []any) (any, error) { return pick(args, false) }

func fnFilter(args []any) (any, error) { return pick(args, true) }

// pick copies the object args[0], keeping the keys in args[1] (keep) or
// the others (!keep).
func pick(args []any, keep bool) (any, error) {
	obj, ok := args[0].(map[string]any)
	if !ok {
		return args[0], nil
	}
	keys, err := keySet(args[1])
	if err != nil {
		return nil, err
	}
	out := make(map[string]any, len(obj))
	for k, v := range obj {
		if keys[k] == keep {
			out[k] = v
		}
	}
	return out, nil
}

// uuidClock makes successive time UUIDs of this process distinct.
var uuidClock struct {
	sync.Mutex
	last uint64
	node [8]byte
	init bool
}

// fnTimeUUID returns a version-1 UUID: 100ns intervals since 1582-10-15,
// a random clock sequence and node id chosen once per process.
func fnTimeUUID([]any) (any, error) {
	const gregorianOffset = 0x01B21DD213814000
	now := uint64(time.Now().UnixNano()/100) + gregorianOffset
	uuidClock.Lock()
	if !uuidClock.init {
		_, _ = rand.Read(uuidClock.node[:])
		uuidClock.node[2] |= 0x01 // multicast bit: not a real MAC
		uuidClock.init = true
	}
	if now <= uuidClock.last {
		now = uuidClock.last + 1
	}
	uuidClock.last = now
	node := uuidClock.node
	uuidClock.Unlock()

	var u [16]byte
	binary.BigEndian.PutUint32(u[0:], uint32(now))
	binary.BigEndian.PutUint16(u[4:], uint16(now>>32))
	binary.BigEndian.PutUint16(u[6:], uint16(now>>48)&0x0fff|0x1000)
	u[8] = node[0]&0x3f | 0x80
	u[9] = node[1]
	copy(u[10:], node[2:8])
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(36)
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b.WriteByte('-')
		}
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String(), nil
}
