package rules

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// ruleWith loads a one-rule config whose rule body is the given YAML
// (indented by four spaces under rules.r).
func ruleWith(t testing.TB, body string) *Rule {
	t.Helper()
	var b strings.Builder
	b.WriteString("service_name: s\nkafka: {brokers: b}\nrules:\n  r:\n    topic: t\n")
	for _, line := range strings.Split(strings.Trim(body, "\n"), "\n") {
		b.WriteString("    " + line + "\n")
	}
	return mustLoad(t, b.String()).Rules[0]
}

func TestMatch(t *testing.T) {
	const ev = `{"meta":{"domain":"en.wikipedia.org","uri":"https://en.wikipedia.org/wiki/Foo","stream":"s"},
		"type":"refreshLinks","n":5,"f":1.5,"b":true,"z":null,"tags":["a","b","c"],"nested":{"x":{"y":"deep"}}}`
	tests := []struct {
		name  string
		rule  string
		event string
		want  bool
	}{
		{"no match key", ``, ev, true},
		{"string equality", "match: {type: refreshLinks}", ev, true},
		{"string inequality", "match: {type: htmlCacheUpdate}", ev, false},
		{"number equality", "match: {n: 5}", ev, true},
		{"number vs string", "match: {n: '5'}", ev, false},
		{"string vs number", `match: {n: 5}`, `{"meta":{},"n":"5"}`, false},
		{"float", "match: {f: 1.5}", ev, true},
		{"int vs float json", "match: {n: 5}", `{"meta":{},"n":5.0}`, true},
		{"bool", "match: {b: true}", ev, true},
		{"bool vs string", "match: {b: 'true'}", ev, false},
		{"null", "match: {z: null}", ev, true},
		{"null vs absent", "match: {nope: null}", ev, false},
		{"undefined absent", "match: {nope: undefined}", ev, true},
		{"undefined present", "match: {type: undefined}", ev, false},
		{"undefined vs null", "match: {z: undefined}", ev, false},
		{"nested AND", "match: {meta: {domain: en.wikipedia.org, stream: s}, type: refreshLinks}", ev, true},
		{"nested AND one fails", "match: {meta: {domain: en.wikipedia.org, stream: x}}", ev, false},
		{"deep", "match: {nested: {x: {y: deep}}}", ev, true},
		{"object vs scalar", "match: {type: {a: 1}}", ev, false},
		{"regex", `match: {meta: {uri: '/^https:\/\/en\./'}}`, ev, true},
		{"regex no match", `match: {meta: {uri: '/^http:/'}}`, ev, false},
		{"regex flag i", `match: {type: '/^REFRESH/i'}`, ev, true},
		{"regex without i", `match: {type: '/^REFRESH/'}`, ev, false},
		{"regex on number", `match: {n: '/5/'}`, ev, false},
		{"regex on absent", `match: {nope: '/.*/'}`, ev, false},
		{"not a regex", `match: {p: '/wiki/Foo'}`, `{"meta":{},"p":"/wiki/Foo"}`, true},
		{"array subset", "match: {tags: [c, a]}", ev, true},
		{"array missing element", "match: {tags: [a, d]}", ev, false},
		{"array vs scalar", "match: {type: [refreshLinks]}", ev, false},
		{"array of regex", "match: {tags: ['/^[bc]$/']}", ev, true},
		{"list any-of first", "match: [{type: refreshLinks}, {type: x}]", ev, true},
		{"list any-of second", "match: [{type: x}, {n: 5}]", ev, true},
		{"list any-of none", "match: [{type: x}, {n: 6}]", ev, false},
		{"match_not object", "match_not: {meta: {domain: en.wikipedia.org}}", ev, false},
		{"match_not no hit", "match_not: {meta: {domain: de.wikipedia.org}}", ev, true},
		{"match_not list", "match_not: [{type: x}, {n: 5}]", ev, false},
		{"match and match_not", "match: {type: refreshLinks}\nmatch_not: {b: false}", ev, true},
		{"canary discarded", "", `{"meta":{"domain":"canary"}}`, false},
		{"canary kept", "discard_canary_events: false", `{"meta":{"domain":"canary"}}`, true},
		{"cases second", "cases:\n  - match: {type: x}\n  - match: {n: 5}", ev, true},
		{"cases none", "cases:\n  - match: {type: x}\n  - match: {n: 6}", ev, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ruleWith(t, tt.rule)
			_, ok := r.Match(mustEvent(t, tt.event))
			if ok != tt.want {
				t.Errorf("Match = %v, want %v", ok, tt.want)
			}
		})
	}
}

func TestMatchCasesOrder(t *testing.T) {
	r := ruleWith(t, `
cases:
  - match: {type: a}
    exec: {uri: 'http://one/'}
  - match: {meta: {domain: '/wiki/'}}
    exec: {uri: 'http://two/'}
  - exec: {uri: 'http://three/'}
`)
	for raw, want := range map[string]string{
		`{"meta":{"domain":"x.wiki"},"type":"a"}`: "http://one/",
		`{"meta":{"domain":"x.wiki"},"type":"b"}`: "http://two/",
		`{"meta":{"domain":"x.org"},"type":"b"}`:  "http://three/",
	} {
		ev := mustEvent(t, raw)
		m, ok := r.Match(ev)
		if !ok {
			t.Fatalf("%s: no match", raw)
		}
		reqs, err := m.Requests(ev)
		if err != nil || len(reqs) != 1 || reqs[0].URI != want {
			t.Errorf("%s: %+v %v, want %s", raw, reqs, err, want)
		}
	}
}

func TestMatchCaptures(t *testing.T) {
	tests := []struct {
		name, rule, event string
		want              map[string]any
	}{
		{"unnamed", `
match: {meta: {uri: '/^https:\/\/([^/]+)\/wiki\/(.+)$/'}}
exec: {uri: 'http://x/{{match.meta.uri[1]}}/{match.meta.uri[2]}'}`,
			`{"meta":{"uri":"https://en.wikipedia.org/wiki/A b"}}`,
			map[string]any{"meta": map[string]any{"uri": []any{"https://en.wikipedia.org/wiki/A b", "en.wikipedia.org", "A b"}}}},
		{"named", `
match: {meta: {uri: '/^https:\/\/(?<domain>[^/]+)\/wiki\/(?<title>.+)$/'}}
exec: {uri: 'http://x/{{match.meta.uri.domain}}'}`,
			`{"meta":{"uri":"https://en.wikipedia.org/wiki/A"}}`,
			map[string]any{"meta": map[string]any{"uri": map[string]any{"domain": "en.wikipedia.org", "title": "A"}}}},
		{"second alternative", `
match: [{type: '/^(a)$/'}, {type: '/^(b+)$/'}]
exec: {uri: 'http://x/{{match.type[1]}}'}`,
			`{"meta":{},"type":"bb"}`,
			map[string]any{"type": []any{"bb", "bb"}}},
		{"not recorded when unused", `
match: {type: '/^(a)$/'}
exec: {uri: 'http://x/'}`,
			`{"meta":{},"type":"a"}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ruleWith(t, tt.rule)
			m, ok := r.Match(mustEvent(t, tt.event))
			if !ok {
				t.Fatal("no match")
			}
			if !reflect.DeepEqual(m.Captures, tt.want) {
				t.Errorf("captures = %#v\nwant %#v", m.Captures, tt.want)
			}
		})
	}
	r := ruleWith(t, `
match: {meta: {uri: '/^https:\/\/([^/]+)\/wiki\/(.+)$/'}}
exec: {uri: 'http://x/{{match.meta.uri[1]}}/{match.meta.uri[2]}'}`)
	ev := mustEvent(t, `{"meta":{"uri":"https://en.wikipedia.org/wiki/A b"}}`)
	m, _ := r.Match(ev)
	reqs, err := m.Requests(ev)
	if err != nil || reqs[0].URI != "http://x/en.wikipedia.org/A%20b" {
		t.Errorf("requests %+v %v", reqs, err)
	}
}

func TestEvaluateVerdicts(t *testing.T) {
	r := ruleWith(t, `
cases:
  - match: {type: none}
    sample: {rate: 0}
  - match: {type: some}
    sample: {rate: 0.5, hash_template: '{{message.meta.id}}'}
  - match: {type: all}
    sample: {rate: 1}
`)
	cases := map[string]Verdict{
		`{"meta":{"domain":"canary"},"type":"all"}`: Canary,
		`{"meta":{},"type":"none"}`:                 SampledOut,
		`{"meta":{},"type":"all"}`:                  Matched,
		`{"meta":{},"type":"other"}`:                NoMatch,
	}
	for raw, want := range cases {
		if _, got := r.Evaluate(mustEvent(t, raw)); got != want {
			t.Errorf("%s: %v, want %v", raw, got, want)
		}
	}
	kept := 0
	for i := range 2000 {
		ev := mustEvent(t, fmt.Sprintf(`{"meta":{"id":"id-%d"},"type":"some"}`, i))
		_, v := r.Evaluate(ev)
		_, again := r.Evaluate(ev)
		if v != again {
			t.Fatal("sampling is not deterministic")
		}
		if v == Matched {
			kept++
		}
	}
	if kept < 900 || kept > 1100 {
		t.Errorf("kept %d of 2000 at rate 0.5", kept)
	}
}

// TestMatchCapturesOfAFailedCase: a case that recorded a capture and then
// failed leaves nothing to the case that matches.
func TestMatchCapturesOfAFailedCase(t *testing.T) {
	r := ruleWith(t, `
cases:
  - match: {meta: {uri: '/^(a)/'}, type: x}
    exec: {uri: 'http://x/{{match.meta.uri[1]}}'}
  - exec: {uri: 'http://y/{{match.meta.uri[1]}}'}`)
	ev := mustEvent(t, `{"meta":{"uri":"abc"},"type":"y"}`)
	m, ok := r.Match(ev)
	if !ok || m.Captures != nil {
		t.Fatalf("match %v, captures %v", ok, m.Captures)
	}
	if reqs, err := m.Requests(ev); err != nil || reqs[0].URI != "http://y/" {
		t.Errorf("requests %+v %v", reqs, err)
	}
}
