package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func mustEvent(t testing.TB, raw string) *Event {
	t.Helper()
	ev, err := ParseEvent([]byte(raw))
	if err != nil {
		t.Fatalf("ParseEvent(%s): %v", raw, err)
	}
	recorder.event(raw)
	return ev
}

func TestParseEvent(t *testing.T) {
	tests := []struct {
		raw  string
		want error
	}{
		{`{"meta":{"domain":"en.wikipedia.org"}}`, nil},
		{` {"meta":{}} `, nil},
		{`not json`, ErrNotJSON},
		{`[1,2]`, ErrNotJSON},
		{`"meta"`, ErrNotJSON},
		{`{"meta":{}} {}`, ErrNotJSON},
		{`{"meta":{}`, ErrNotJSON},
		{``, ErrNotJSON},
		{`{"type":"x"}`, ErrNoMeta},
		{`{"meta":"x"}`, ErrNoMeta},
	}
	for _, tt := range tests {
		ev, err := ParseEvent([]byte(tt.raw))
		if !errors.Is(err, tt.want) || (err == nil) != (ev != nil) {
			t.Errorf("ParseEvent(%q) = %v, %v; want %v", tt.raw, ev, err, tt.want)
		}
	}
}

// TestMetaOffset: the offset is that of the meta object the decode kept,
// the last of two, after white space; full and projected decodes agree,
// and an event built by hand has none.
func TestMetaOffset(t *testing.T) {
	r := ruleWith(t, "match: {type: x}")
	for _, tc := range []struct {
		raw  string
		meta string
	}{
		{`{"meta":{"a":1}}`, `{"a":1}`},
		{`{"type":"x", "meta" :  {"a":1} }`, `{"a":1} }`},
		{`{"meta":{"a":1},"params":{"meta":{"b":2}},"meta":{"c":3}}`, `{"c":3}}`},
		{`{"m\u0065ta":{"e":1}}`, `{"e":1}}`},
		{`{"params":{"meta":{"b":2}},"meta":{}}`, `{}}`},
	} {
		for name, parse := range map[string]func([]byte) (*Event, error){"full": ParseEvent, "projected": r.ParseEvent} {
			ev, err := parse([]byte(tc.raw))
			if err != nil {
				t.Fatalf("%s %s: %v", name, tc.raw, err)
			}
			off := ev.MetaOffset()
			if off < 0 || !strings.HasPrefix(tc.raw[off:], tc.meta) || strings.Count(tc.raw[off:], tc.meta) != 1 {
				t.Errorf("%s %s: MetaOffset %d: %q", name, tc.raw, off, tc.raw[min(max(off, 0), len(tc.raw)):])
			}
		}
	}
	if off := (&Event{Raw: []byte(`{"meta":{}}`), Message: map[string]any{"meta": map[string]any{}}}).MetaOffset(); off != -1 {
		t.Error("an event built by hand has an offset")
	}
}

func TestEventMeta(t *testing.T) {
	ev := mustEvent(t, `{"meta":{"domain":"en.wikipedia.org","id":12345678901234567890,"x":{}}}`)
	for key, want := range map[string]string{"domain": "en.wikipedia.org", "id": "12345678901234567890", "x": "", "nope": ""} {
		if got := ev.Meta(key); got != want {
			t.Errorf("Meta(%q) = %q, want %q", key, got, want)
		}
	}
	if string(ev.Raw) != `{"meta":{"domain":"en.wikipedia.org","id":12345678901234567890,"x":{}}}` {
		t.Error("Raw changed")
	}
}

// FuzzDecodeJSON holds the event decoder to encoding/json: the same
// inputs are accepted and decode to the same values.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"meta":{"a":1}}`, `{"a":[1,-2.5e3,true,false,null,{"b":"c"}],"s":"x\"y\\u00e9\ud83d\ude00\ud800"}`,
		`{}`, `[]`, `{"a":01}`, `{"a":"\x01"}`, `{"a":1,}`, "{\"a\":\"\xff\"}", `{"a":"\ud800\u0041"}`,
		` {"dup":1,"dup":2} `, `{"n":-0.0e+1}`, `{"a":tru}`, `{"a":1} x`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeObject(data, nil)
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var want any
		wantErr := dec.Decode(&want)
		if wantErr == nil {
			if _, err := dec.Token(); err != io.EOF {
				wantErr = errors.New("trailing data")
			}
		}
		wantObj, isObj := want.(map[string]any)
		if (err == nil) != (wantErr == nil && isObj) {
			t.Fatalf("%q: decodeObject err %v, encoding/json err %v (%T)", data, err, wantErr, want)
		}
		if err == nil && !reflect.DeepEqual(got, wantObj) {
			t.Fatalf("%q:\n got %#v\nwant %#v", data, got, wantObj)
		}
	})
}
