package rules

import (
	"strings"
	"testing"
)

// FuzzMatch loads a rule with a fuzzed match pattern and matches a fuzzed
// event against it: neither may panic, and matching must be deterministic.
func FuzzMatch(f *testing.F) {
	seeds := []struct{ pattern, event string }{
		{"{type: refreshLinks}", `{"meta":{},"type":"refreshLinks"}`},
		{"{n: 5}", `{"meta":{},"n":5}`},
		{"{n: '5'}", `{"meta":{},"n":5}`},
		{`{meta: {uri: '/^https:\/\/([^/]+)\/wiki\/(.*)$/'}}`, `{"meta":{"uri":"https://en.wikipedia.org/wiki/X"}}`},
		{`{meta: {uri: '/(?<d>[a-z.]+)/i'}}`, `{"meta":{"uri":"EN.wiki"}}`},
		{"{tags: [a, '/^b/']}", `{"meta":{},"tags":["bc","a"]}`},
		{"[{a: undefined}, {b: null}]", `{"meta":{},"b":null}`},
		{"{a: {b: {c: [1, 2.5, true]}}}", `{"meta":{},"a":{"b":{"c":[true,2.5,1]}}}`},
	}
	for _, s := range seeds {
		f.Add(s.pattern, s.event)
	}
	f.Fuzz(func(t *testing.T, pattern, event string) {
		if strings.ContainsAny(pattern, "\n\r") {
			return
		}
		src := "service_name: s\nkafka: {brokers: b}\nrules:\n  r:\n    topic: t\n    discard_canary_events: false\n" +
			"    match: " + pattern + "\n    exec: {uri: 'http://x/{{match}}{match.meta.uri[1]}'}\n"
		c, err := Load([]byte(src), nil)
		if err != nil {
			return
		}
		ev, err := ParseEvent([]byte(event))
		if err != nil {
			return
		}
		r := c.Rules[0]
		m, ok := r.Match(ev)
		_, again := r.Match(ev)
		if ok != again {
			t.Fatal("Match is not deterministic")
		}
		if ok {
			if _, err := m.Requests(ev); err != nil {
				t.Fatal(err)
			}
		}
	})
}
