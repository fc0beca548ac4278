package rules

import (
	"os"
	"strings"
	"testing"
)

// FuzzMatch loads a rule with a fuzzed match pattern and matches a fuzzed
// event against it: neither may panic, matching must be deterministic, and
// the event decoded for the rule must give what the full decode gives.
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
		if d := diffDecodes(r, []byte(event), ev); d != "" {
			t.Fatalf("decoded for the rule:\n%s", d)
		}
		if ok {
			if _, err := m.Requests(ev); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// FuzzLoad feeds Load arbitrary configuration files: it must never panic,
// a rejected file must say why, and an accepted one must hold the
// invariants the dispatcher relies on and handle an event.
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"testdata/jobqueue.yaml", "testdata/changeprop.yaml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		f.Add(data[:len(data)/2]) // cut mid-file
	}
	for _, s := range []string{
		minimal,
		"",
		"~",
		"---\n...\n",
		"[1, 2]",
		"service_name: s\nkafka: {brokers: b}\nrules: []\n",
		"service_name: s\nkafka: {brokers: b}\nrules: {a: 1}\n",
		"service_name: s\nkafka: {brokers: b}\nrules:\n\ta: {topic: t}\n",
		"service_name: s\nkafka: {brokers: b}\nrules:\n  a: {topic: '/[/', match: {x: '/(a)(?<b>c)/'}}\n",
		"service_name: s\nkafka: {brokers: b}\nrules:\n  a: {topic: t, exec: {uri: 'http://x/{{message.'}}\n",
		"service_name: s\nkafka: {brokers: b}\nrules:\n  a: {topic: t, retry_limit: 99999999999999999999, timeout: 9223372036854775807, retry_delay: 1e300}\n",
		"service_name: s\nkafka: {brokers: b}\nrules:\n  a: {topic: t, sample: {rate: .nan}, retry_factor: .inf}\n",
		"service_name: s\nkafka: {brokers: b}\nrules:\n  a: &a {topic: t, <<: *a}\n",
		"service_name: s\nkafka: {brokers: b}\nrules:\n  a: {topic: t, <<: *nope}\n",
		"service_name: s\nkafka: {brokers: b}\nrules:\n  a: {topic: t, cases: [{match: [{a: [[[[1]]]]}], exec: [{uri: 'http://x/'}]}, 3]}\n",
		"service_name: s\nkafka: {brokers: b}\ndefaults: {exec: {uri: 'http://x/{{date(message.dt)}}'}, match_not: [{a: undefined}]}\nrules:\n  a: {topic: t}\n  b: {topic: u, cases: []}\n",
		"service_name: s\nkafka: {brokers: b}\nrules:\n  a: {topic: t, partition_stream: 'p.{{message.meta.stream}}', partition_key: a..b, partition_map: {x: -1}}\n",
		"service_name: s\nkafka: {brokers: b}\nrules:\n  a: {topic: t, retry_on: {status: [5xx, 600, '5y0', {a: 1}]}, ignore: {headers: {x: ['/[/', 1]}}}\n",
		"service_name: s\nkafka: {brokers: b}\nconsume_dc: c\nproduce_dc: p\nrules:\n  a: {topic: t, exec: [{uri: 'kafka:///s', body: [{meta: {uri: '{{message.meta.uri}}'}}]}, {uri: kafka:///u, body: '{{globals.message}}'}]}\n",
		"service_name: s\nkafka: {brokers: b}\nrules:\n  a: {topic: t, fanout: {api: 'http://x/', list: embeddedin, namespace: [0, 1], title: '{{message.meta.uri}}'}}\n",
		"service_name: s\nkafka: {brokers: b}\nrules:\n  a: {topic: t, purge: {caches: ['http://c:1', 'http://d'], uris: ['//{{message.meta.domain}}/x']}}\n",
		"service_name: s\nkafka: {brokers: b, properties: {sasl.password: p}, sasl_password_file: /f}\nredis: {addr: r, username: u, password: p, password_file: /f, tls: {ca_file: c, cert_file: x}}\nadmin: {token: t, listen: '127.0.0.1:1', pprof: no}\nlimits: {max_event_bytes: 1.5MiB, max_header_bytes: 0, max_request_bytes: 1e400}\nrules:\n  a: {topic: t}\n",
	} {
		f.Add([]byte(s))
	}
	ev := mustEvent(f, `{"meta":{"domain":"en.wikipedia.org","uri":"https://en.wikipedia.org/wiki/A","dt":"2024-05-06T07:08:09Z","id":"i","stream":"mediawiki.job.x"},`+
		`"database":"enwiki","type":"refreshLinks","tags":["purge"],"page_title":"A","page_namespace":0,"rev_id":1,"params":{}}`)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		c, err := Load(data, nil)
		_, again := Load(data, nil)
		if (err == nil) != (again == nil) || (err != nil && err.Error() != again.Error()) {
			t.Fatalf("Load is not deterministic:\n%v\n---\n%v", err, again)
		}
		if err != nil {
			if c != nil || err.Error() == "" {
				t.Fatalf("Load failed with config %v and error %q", c, err)
			}
			return
		}
		if len(c.Rules) == 0 {
			t.Fatal("accepted a config without rules")
		}
		for _, r := range c.Rules {
			if len(r.Cases) == 0 || r.Concurrency < 1 || r.RetryLimit < 0 || r.Timeout <= 0 || r.RetryFactor < 1 {
				t.Fatalf("rule %s: cases %d concurrency %d retry_limit %d timeout %v retry_factor %v",
					r.Name, len(r.Cases), r.Concurrency, r.RetryLimit, r.Timeout, r.RetryFactor)
			}
			_ = r.Subscribes(c.TopicName("mediawiki.job.x"))
			_ = r.RetryDelayFor(r.RetryLimit)
			_ = r.Classify(503, nil, nil)
			for _, inst := range r.Instances() {
				if m, ok := inst.Match(ev); ok {
					_, _ = m.Requests(ev) // an expansion error is fine; a panic is not
					if f := inst.Fanout; f != nil {
						_, _ = f.Request(m, ev, map[string]string{"continue": "-||"})
						_, _ = f.ParsePage(data)
					}
				}
			}
		}
	})
}
