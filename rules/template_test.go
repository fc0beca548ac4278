package rules

import (
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func testScope(t testing.TB) Scope {
	ev := mustEvent(t, `{"meta":{"domain":"en.wikipedia.org","uri":"https://en.wikipedia.org/wiki/Foo Bar","dt":"2024-05-06T07:08:09Z"},
		"tags":["x","y z"],"n":42,"big":12345678901234567890,"b":false,"z":null,"obj":{"a":1,"b":"two"},
		"esc":"a%2Fb","ms":"1700000000000","empty":""}`)
	return Scope{Message: ev.Message, Match: map[string]any{"meta": map[string]any{"uri": []any{"whole", "g1"}}}}
}

func TestTemplateText(t *testing.T) {
	tests := []struct{ src, want string }{
		{"plain", "plain"},
		{"", ""},
		{"{message.meta.domain}", "en.wikipedia.org"},
		{"{message.meta.uri}", "https%3A%2F%2Fen.wikipedia.org%2Fwiki%2FFoo%20Bar"},
		{"{{message.meta.uri}}", "https://en.wikipedia.org/wiki/Foo Bar"},
		{"{+message.meta.uri}", "https://en.wikipedia.org/wiki/Foo Bar"},
		{"a/{message.tags[1]}/b", "a/y%20z/b"},
		{"{{message.tags[0]}}", "x"},
		{"{{message['meta'].domain}}", "en.wikipedia.org"},
		{`{{message["meta"]['domain']}}`, "en.wikipedia.org"},
		{"{{globals.message.meta.domain}}", "en.wikipedia.org"},
		{"{{ message.meta.domain }}", "en.wikipedia.org"},
		{"{{message.n}}", "42"},
		{"{{message.big}}", "12345678901234567890"},
		{"{{message.b}}", "false"},
		{"{{message.z}}", ""},
		{"x{{message.missing.deeper}}y", "xy"},
		{"{{message.tags[7]}}", ""},
		{"{{message.obj}}", `{"a":1,"b":"two"}`},
		{"{message.obj}", "%7B%22a%22%3A1%2C%22b%22%3A%22two%22%7D"},
		{"{{message.tags.length}}", "2"},
		{"{{match.meta.uri[1]}}", "g1"},
		{"{{globals.match.meta.uri[0]}}", "whole"},
		{"{{match.nope[1]}}", ""},
		{"{{'lit'}}-{{42}}", "lit-42"},
		{"{'!\\'()*-._~ é'}", "!'()*-._~%20%C3%A9"},
		{"{{date(message.meta.dt)}}", "Mon, 06 May 2024 07:08:09 GMT"},
		{"{{date(message.meta.dt, 'iso')}}", "2024-05-06T07:08:09.000Z"},
		{"{{date(message.ms, 'iso')}}", "2023-11-14T22:13:20.000Z"},
		{"{{date(1700000000000)}}", "Tue, 14 Nov 2023 22:13:20 GMT"},
		{"{{decode(message.esc)}}", "a/b"},
		{"{{default(message.missing, 'dflt')}}", "dflt"},
		{"{{default(message.empty, 'dflt')}}", "dflt"},
		{"{{default(message.meta.domain, 'dflt')}}", "en.wikipedia.org"},
		{"{{merge(message.obj, {a: 2, c: 3})}}", `{"a":1,"b":"two","c":3}`},
		{"{{strip(message.obj, 'a')}}", `{"b":"two"}`},
		{"{{strip(message.obj, ['a', 'b'])}}", `{}`},
		{"{{filter(message.obj, ['a'])}}", `{"a":1}`},
		{"{{filter(message.meta, 'domain')}}", `{"domain":"en.wikipedia.org"}`},
		{"{{[message.n, 'x', message.missing]}}", `[42,"x",null]`},
	}
	s := testScope(t)
	for _, tt := range tests {
		tmpl, err := ParseTemplate(tt.src)
		if err != nil {
			t.Errorf("ParseTemplate(%q): %v", tt.src, err)
			continue
		}
		got, err := tmpl.Text(s)
		if err != nil || got != tt.want {
			t.Errorf("%q: got %q, %v; want %q", tt.src, got, err, tt.want)
		}
		b, err := tmpl.AppendText([]byte("pre:"), s)
		if err != nil || string(b) != "pre:"+tt.want {
			t.Errorf("%q: AppendText %q, %v", tt.src, b, err)
		}
	}
}

func TestTemplateValue(t *testing.T) {
	s := testScope(t)
	tests := []struct {
		src  string
		want any
	}{
		{"{{message.n}}", json.Number("42")},
		{"{{message.b}}", false},
		{"{{message.z}}", nil},
		{"{{message.missing}}", nil},
		{"{{message.tags}}", []any{"x", "y z"}},
		{"{{message.obj}}", map[string]any{"a": json.Number("1"), "b": "two"}},
		{"n={{message.n}}", "n=42"},
		{"{message.n}", "42"},
		{"{{message}}", s.Message},
		{"{{globals.message}}", s.Message},
	}
	for _, tt := range tests {
		tmpl, err := ParseTemplate(tt.src)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tmpl.Value(s)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: got %#v, %v; want %#v", tt.src, got, err, tt.want)
		}
	}
}

func TestTemplateFunctions(t *testing.T) {
	uuid, err := ParseTemplate("{{timeuuid()}}")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := uuid.Text(Scope{})
	b, _ := uuid.Text(Scope{})
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-1[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(a) || a == b {
		t.Errorf("timeuuid: %q %q", a, b)
	}
	for _, src := range []string{"{{date('yesterday')}}", "{{date(message.meta.dt, 'unix')}}", "{{decode('%zz')}}", "{{strip(message.obj, 5)}}"} {
		tmpl, err := ParseTemplate(src)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if _, err := tmpl.Text(testScope(t)); err == nil {
			t.Errorf("%q: no error", src)
		}
	}
}

func TestParseTemplateErrors(t *testing.T) {
	for _, src := range []string{
		"{", "{{", "{}", "{{}}", "{message", "{{message}", "{message.}", "{message[}", "{message[x]}",
		"{foo.bar}", "{{nofunc(1)}}", "{{date()}}", "{{timeuuid(1)}}", "{{'unterminated}}",
		"{{message.a b}}", "{{[1,}}", "{{{a 1}}}", "{{" + strings.Repeat("[", 100) + "}}",
	} {
		if _, err := ParseTemplate(src); err == nil {
			t.Errorf("ParseTemplate(%q): no error", src)
		}
	}
}

func FuzzTemplate(f *testing.F) {
	for _, s := range []string{
		"plain", "{message.meta.uri}", "{{globals.message}}", "a{{message.tags[1]}}b{x}",
		"{{merge(message.obj, {a: [1, 'b']})}}", "{{date(message.meta.dt, 'iso')}}", "{+message['meta'].domain}",
		"{{default(message.x, \"d\\\"q\")}}", "{{strip(message, ['meta'])}}", "{{-1.5e3}}",
	} {
		f.Add(s)
	}
	s := testScope(f)
	f.Fuzz(func(t *testing.T, src string) {
		tmpl, err := ParseTemplate(src)
		if err != nil {
			return
		}
		if tmpl.String() != src {
			t.Fatalf("String() = %q", tmpl.String())
		}
		_, _ = tmpl.Text(s)
		_, _ = tmpl.Value(s)
		if tmpl.IsLiteral() && !strings.Contains(src, "{") {
			if got, _ := tmpl.Text(s); got != src {
				t.Fatalf("literal %q expanded to %q", src, got)
			}
		}
	})
}

// TestIsInteger holds isInteger to what strconv.ParseInt(s, 10, 64) takes
// for a number, in range or not.
func TestIsInteger(t *testing.T) {
	for _, s := range []string{"", "+", "-", "0", "-1", "+5", "007", "12a", "1_000", "0x10", " 1", "1 ", "1.5", "1e3",
		"\uff11", "99999999999999999999", "-9223372036854775809", "2024-05-06T07:08:09Z", "1714979289000"} {
		_, err := strconv.ParseInt(s, 10, 64)
		if want := err == nil || errors.Is(err, strconv.ErrRange); isInteger(s) != want {
			t.Errorf("isInteger(%q) = %v, want %v", s, !want, want)
		}
	}
}
