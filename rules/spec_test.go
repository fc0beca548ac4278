package rules

// Table tests for lines of ../shared/spec/rules.md that the tests of each
// file do not already pin down: topics, 'undefined' and array patterns,
// top-level and match_not lists, canary events, zero versus absent values,
// duration units, sampling, conditions and YAML aliases.

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// loadRule is ruleWith without failing: the rule, or Load's error.
func loadRule(body string) (*Rule, error) {
	var b strings.Builder
	b.WriteString("service_name: s\nkafka: {brokers: b}\nrules:\n  r:\n    topic: t\n")
	for _, line := range strings.Split(strings.Trim(body, "\n"), "\n") {
		b.WriteString("    " + line + "\n")
	}
	c, err := Load([]byte(b.String()), nil)
	if err != nil {
		return nil, err
	}
	return c.Rules[0], nil
}

// "topic / topics: one topic or a list; a topic written /regex/ subscribes
// to every matching topic, including ones created later"; "exclude_topics:
// topic names removed from a regex subscription".
func TestSpecTopics(t *testing.T) {
	c := mustLoad(t, `
service_name: s
kafka: {brokers: b}
rules:
  regex:
    topics: ['/^mediawiki\.job\./', resource_change]
    exclude_topics: [mediawiki.job.refreshLinks, resource_change]
  flags:
    topic: '/^MEDIAWIKI\.revision-(create|delete)$/i'
  single:
    topic: mediawiki.page_change.v1
`)
	tests := []struct {
		rule, topic string
		want        bool
	}{
		{"regex", "mediawiki.job.htmlCacheUpdate", true},
		{"regex", "mediawiki.job.createdTomorrow", true},
		{"regex", "mediawiki.job.refreshLinks", false},
		{"regex", "resource_change", true}, // listed by name: exclude_topics only trims the regex
		{"regex", "mediawiki.jobs", false},
		{"regex", "eqiad.mediawiki.job.x", false}, // Subscribes takes names without the dc prefix (Config.TopicName)
		{"flags", "mediawiki.revision-create", true},
		{"flags", "mediawiki.revision-visibility-change", false},
		{"single", "mediawiki.page_change.v1", true},
		{"single", "mediawiki.page_change.v10", false},
	}
	for _, tt := range tests {
		if got := c.Rule(tt.rule).Subscribes(tt.topic); got != tt.want {
			t.Errorf("%s.Subscribes(%q) = %v, want %v", tt.rule, tt.topic, got, tt.want)
		}
	}

	for body, want := range map[string]string{
		"exclude_topics: [a]":     "rules.r.exclude_topics: only applies to /regex/ topics",
		"topics: []":              "rules.r.topics: at least one topic is required",
		"topics: ['a b', '/[/']":  `rules.r.topics[0]: bad topic name "a b"`,
		"topics: [ok, {a: 1}]":    "rules.r.topics[1]: must be a string",
		"topics: [ok, '/(/']":     "rules.r.topics[1]: bad regex /(/",
		"topics: [ok, '/x/', '']": `rules.r.topics[2]: bad topic name ""`,
	} {
		// Written out: ruleWith and loadRule set topic: t.
		src := "service_name: s\nkafka: {brokers: b}\nrules:\n  r:\n    " + body + "\n"
		_, err := Load([]byte(src), nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
}

// The Matching section, line by line, for what TestMatch leaves out.
func TestSpecPatterns(t *testing.T) {
	const ev = `{"meta":{"domain":"en.wikipedia.org","uri":"https://en.wikipedia.org/wiki/A"},
		"type":"edit","n":5,"z":null,"s":"undefined","multi":"line one\nline two",
		"tags":["a","b"],"nums":[1,2,3],"objs":[{"k":"x","v":1},{"k":"y","v":2}],"nested":[["p","q"],["r"]],"obj":{"a":1}}`
	tests := []struct {
		name  string
		rule  string
		event string
		want  bool
	}{
		// "The string 'undefined' matches an absent field."
		{"'undefined' absent", "match: {rev_parent_id: 'undefined'}", ev, true},
		{"undefined unquoted absent", "match: {rev_parent_id: undefined}", ev, true},
		{"'undefined' vs the string undefined", "match: {s: 'undefined'}", ev, false},
		{"'undefined' vs null", "match: {z: 'undefined'}", ev, false},
		{"'undefined' vs a number", "match: {n: 'undefined'}", ev, false},
		{"'undefined' nested, parent present", "match: {meta: {dt: 'undefined'}}", ev, true},
		{"'undefined' nested, field present", "match: {meta: {uri: 'undefined'}}", ev, false},
		{"'undefined' in match_not", "match_not: {rev_parent_id: 'undefined'}", ev, false},
		{"'undefined' in match_not, field present", "match_not: {type: 'undefined'}", ev, true},
		{"'undefined' in a list alternative", "match: [{type: x}, {nope: 'undefined'}]", ev, true},

		// "An array pattern requires an array value in which every pattern
		// element matches some element."
		{"empty array pattern, array value", "match: {tags: []}", ev, true},
		{"empty array pattern, object value", "match: {obj: []}", ev, false},
		{"empty array pattern, absent", "match: {nope: []}", ev, false},
		{"array pattern, string value", "match: {type: [edit]}", ev, false},
		{"one element used twice", "match: {tags: [a, a]}", ev, true},
		{"numbers", "match: {nums: [3, 1]}", ev, true},
		{"numbers vs strings", "match: {nums: ['1']}", ev, false},
		{"object elements match as objects", "match: {objs: [{k: y}]}", ev, true},
		{"object elements: AND within one element", "match: {objs: [{k: y, v: 1}]}", ev, false},
		{"object elements: each from a different element", "match: {objs: [{k: y}, {v: 1}]}", ev, true},
		{"nested arrays", "match: {nested: [[r]]}", ev, true},
		{"nested arrays miss", "match: {nested: [[p, r]]}", ev, false},
		{"array of regexes", "match: {tags: ['/^a$/', '/^b$/']}", ev, true},
		{"array of regexes miss", "match: {tags: ['/^a$/', '/^c$/']}", ev, false},

		// "A top-level match given as a list means any of these."
		{"list: first alternative", "match: [{type: edit}, {type: x}]", ev, true},
		{"list: last alternative", "match: [{type: x}, {type: y}, {n: 5}]", ev, true},
		{"list: none", "match: [{type: x}, {type: y}]", ev, false},
		{"list: alternatives are ANDs", "match: [{type: edit, n: 6}, {type: x, n: 5}]", ev, false},
		{"list and match_not", "match: [{type: edit}]\nmatch_not: {n: 5}", ev, false},

		// "match_not: a list means reject if any item matches."
		{"match_not list: one item hits", "match_not: [{type: x}, {meta: {domain: '/\\.wikipedia\\.org$/'}}]", ev, false},
		{"match_not list: no item hits", "match_not: [{type: x}, {meta: {domain: '/wiktionary/'}}]", ev, true},
		{"match_not list: items are ANDs", "match_not: [{type: edit, n: 6}, {type: x, n: 5}]", ev, true},
		{"match_not in a case", "cases:\n  - match: {type: edit}\n    match_not: [{n: 5}]\n  - match: {type: x}", ev, false},
		{"match_not in a case, next case", "cases:\n  - match: {type: edit}\n    match_not: [{n: 5}]\n  - match: {n: 5}", ev, true},

		// "A string written /.../flags is a regular expression."
		{"flag m", `match: {multi: '/^line two$/m'}`, ev, true},
		{"no flag m", `match: {multi: '/^line two$/'}`, ev, false},
		{"flag s", `match: {multi: '/one.line/s'}`, ev, true},
		{"no flag s", `match: {multi: '/one.line/'}`, ev, false},
		{"flags g and u change nothing", `match: {type: '/^EDIT$/giu'}`, ev, true},
		{"regex vs boolean", `match: {b: '/true/'}`, `{"meta":{},"b":true}`, false},
		{"regex vs object", `match: {obj: '/a/'}`, ev, false},
		{"unknown flag: a plain string", `match: {p: '/a/x'}`, `{"meta":{},"p":"/a/x"}`, true},

		// "Any other string, number or boolean matches by strict equality."
		{"exponent number", "match: {n: 5e0}", ev, true},
		{"false vs absent", "match: {nope: false}", ev, false},
		{"0 vs false", "match: {f: 0}", `{"meta":{},"f":false}`, false},
		{"empty string vs absent", "match: {nope: ''}", ev, false},
		{"case matters", "match: {type: Edit}", ev, false},
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

// "Capture groups are available to templates: unnamed as match.<path>[n],
// named as match.<path>.<name>", wherever the regex sits.
func TestSpecCaptures(t *testing.T) {
	tests := []struct {
		name, rule, event, uri string
	}{
		{"inside an array pattern", `
match: {tags: ['/^cp-(.+)$/']}
exec: {uri: 'http://x/{{match.tags[0][1]}}'}`,
			`{"meta":{},"tags":["other","cp-purge"]}`, "http://x/purge"},
		{"inside a case", `
cases:
  - match: {meta: {uri: '/\/wiki\/(?<title>.+)$/'}}
    exec: {uri: 'http://x/{match.meta.uri.title}'}`,
			`{"meta":{"uri":"https://a/wiki/A b"}}`, "http://x/A%20b"},
		{"several regexes", `
match: {meta: {domain: '/^([a-z]+)\./', uri: '/(?<title>[^/]+)$/'}}
exec: {uri: 'http://x/{{match.meta.domain[1]}}/{{match.meta.uri.title}}'}`,
			`{"meta":{"domain":"de.wikipedia.org","uri":"https://de.wikipedia.org/wiki/Z"}}`, "http://x/de/Z"},
		{"optional group that did not take part", `
match: {meta: {uri: '/^https:\/\/([^/]+)(\/wiki)?/'}}
exec: {uri: 'http://x/{{match.meta.uri[1]}}/{{match.meta.uri[2]}}/{{match.meta.uri[0]}}'}`,
			`{"meta":{"uri":"https://a.org/w/index.php"}}`, "http://x/a.org//https://a.org"},
		{"the whole match is element 0", `
match: {type: '/dit/'}
exec: {uri: 'http://x/{{match.type[0]}}'}`,
			`{"meta":{},"type":"edit"}`, "http://x/dit"},
		{"match_not records nothing", `
match_not: {type: '/^(x)$/'}
exec: {uri: 'http://x/{{match.type[1]}}'}`,
			`{"meta":{},"type":"edit"}`, "http://x/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ruleWith(t, tt.rule)
			ev := mustEvent(t, tt.event)
			m, ok := r.Match(ev)
			if !ok {
				t.Fatal("no match")
			}
			reqs, err := m.Requests(ev)
			if err != nil || len(reqs) != 1 || reqs[0].URI != tt.uri {
				t.Errorf("requests %+v %v, want uri %s", reqs, err, tt.uri)
			}
		})
	}
}

// "discard_canary_events: reject events whose meta.domain is canary;
// default true".
func TestSpecCanary(t *testing.T) {
	c := mustLoad(t, `
service_name: s
kafka: {brokers: b}
defaults: {discard_canary_events: false}
rules:
  fromDefaults: {topic: t}
  own: {topic: t, discard_canary_events: true}
`)
	def := ruleWith(t, "match: {type: x}")
	tests := []struct {
		rule  *Rule
		event string
		want  Verdict
	}{
		{def, `{"meta":{"domain":"canary"},"type":"x"}`, Canary},
		{def, `{"meta":{"domain":"canary"},"type":"y"}`, Canary}, // before matching
		{def, `{"meta":{"domain":"canary.wikipedia.org"},"type":"x"}`, Matched},
		{def, `{"meta":{"domain":"Canary"},"type":"x"}`, Matched},
		{def, `{"meta":{},"type":"x"}`, Matched},
		{def, `{"meta":{"domain":null},"type":"x"}`, Matched},
		{c.Rule("fromDefaults"), `{"meta":{"domain":"canary"}}`, Matched},
		{c.Rule("own"), `{"meta":{"domain":"canary"}}`, Canary},
	}
	for _, tt := range tests {
		if _, got := tt.rule.Evaluate(mustEvent(t, tt.event)); got != tt.want {
			t.Errorf("%s %s: %v, want %v", tt.rule.Name, tt.event, got, tt.want)
		}
	}
}

// "retry_limit: retries after the first attempt; 0 means no retries;
// default 2", and the defect "a configured retry_limit: 0 (and other zero
// values) was silently replaced by the default".
func TestSpecZeroIsNotAbsent(t *testing.T) {
	tests := []struct {
		name     string
		defaults string
		rule     string
		check    func(r *Rule) any
		want     any
	}{
		{"retry_limit absent", "", "", func(r *Rule) any { return r.RetryLimit }, 2},
		{"retry_limit 0", "", "retry_limit: 0", func(r *Rule) any { return r.RetryLimit }, 0},
		{"retry_limit 5", "", "retry_limit: 5", func(r *Rule) any { return r.RetryLimit }, 5},
		{"retry_limit 0 from defaults", "retry_limit: 0", "", func(r *Rule) any { return r.RetryLimit }, 0},
		{"retry_limit 0 over defaults", "retry_limit: 3", "retry_limit: 0", func(r *Rule) any { return r.RetryLimit }, 0},
		{"retry_limit 4 over defaults 0", "retry_limit: 0", "retry_limit: 4", func(r *Rule) any { return r.RetryLimit }, 4},
		{"retry_delay 0", "", "retry_delay: 0", func(r *Rule) any { return r.RetryDelay }, time.Duration(0)},
		{"retry_delay 0 from defaults", "retry_delay: 0", "", func(r *Rule) any { return r.RetryDelay }, time.Duration(0)},
		{"reenqueue_delay 0", "", "reenqueue_delay: 0", func(r *Rule) any { return r.ReenqueueDelay }, time.Duration(0)},
		{"claim_ttl 0 is never", "", "claim_ttl: 0", func(r *Rule) any { return r.ClaimTTL }, time.Duration(0)},
		{"discard_canary_events false", "", "discard_canary_events: false", func(r *Rule) any { return r.DiscardCanaryEvents }, false},
		{"sample rate 0", "", "sample: {rate: 0}", func(r *Rule) any { return r.Sample.Rate }, 0.0},
		{"partition_default 0", "", "partition_stream: p\npartition_key: k\npartition_default: 0", func(r *Rule) any { return r.Partition.Default }, 0},
		{"key_concurrency default 0 is uncapped", "", "concurrency_key: '{{message.k}}'\nkey_concurrency: {default: 0}", func(r *Rule) any { return r.KeyConcurrency.Limit("x") }, 0},
		{"empty ignore matches nothing", "", "ignore: {}", func(r *Rule) any { return r.Classify(412, nil, nil) }, Failed},
		{"empty retry_on retries nothing", "", "retry_on: {status: []}", func(r *Rule) any { return r.Classify(503, nil, nil) }, Failed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "service_name: s\nkafka: {brokers: b}\n"
			if tt.defaults != "" {
				src += "defaults:\n  " + strings.ReplaceAll(tt.defaults, "\n", "\n  ") + "\n"
			}
			src += "rules:\n  r:\n    topic: t\n"
			if tt.rule != "" {
				src += "    " + strings.ReplaceAll(tt.rule, "\n", "\n    ") + "\n"
			}
			c := mustLoad(t, src)
			if got := tt.check(c.Rules[0]); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	// Zero where zero makes no sense is a problem, never the default.
	for body, want := range map[string]string{
		"retry_limit: -1":                      "rules.r.retry_limit: must not be negative",
		"retry_limit: 1.5":                     `rules.r.retry_limit: must be an integer, not "1.5"`,
		"retry_limit: '2'":                     `rules.r.retry_limit: must be an integer, not "2"`,
		"retry_limit: ~":                       "rules.r.retry_limit: must be an integer",
		"concurrency: 0":                       "rules.r.concurrency: must be at least 1, got 0",
		"timeout: 0":                           "rules.r.timeout: must be positive",
		"retry_factor: 0":                      "rules.r.retry_factor: must be at least 1",
		"exec: {uri: 'http://a/', timeout: 0}": "rules.r.exec.timeout: must be positive",
	} {
		if _, err := loadRule(body); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
}

// "retry_delay: integer = milliseconds, or a duration string 60s";
// "timeout: ms or duration"; "reenqueue_delay: seconds"; "claim_ttl /
// root_claim_ttl: seconds"; service.md: "Durations accept integers in the
// unit the Node service used ... or Go durations".
func TestSpecDurations(t *testing.T) {
	tests := []struct {
		where string // rule key, exec.timeout, or a service key
		value string
		want  time.Duration
		err   string // substring of the error; "" when valid
	}{
		{"retry_delay", "60000", time.Minute, ""},
		{"retry_delay", "'60s'", time.Minute, ""},
		{"retry_delay", "1m30s", 90 * time.Second, ""},
		{"retry_delay", "1.5", 1500 * time.Microsecond, ""},
		{"retry_delay", "0x10", 16 * time.Millisecond, ""},
		{"retry_delay", "'60'", 0, `bad duration "60": want an integer (milliseconds) or a duration such as "60s"`},
		{"retry_delay", "-1", 0, "must not be negative"},
		{"retry_delay", "-5s", 0, "must not be negative"},
		{"retry_delay", "9223372036854775807", 0, "bad duration"},
		{"retry_delay", "1e300", 0, "bad duration"},
		{"retry_delay", ".nan", 0, "bad duration"},
		{"retry_delay", "[1]", 0, "must be a duration"},
		{"timeout", "420000", 7 * time.Minute, ""},
		{"timeout", "7m", 7 * time.Minute, ""},
		{"exec.timeout", "5000", 5 * time.Second, ""},
		{"exec.timeout", "2.5s", 2500 * time.Millisecond, ""},
		{"reenqueue_delay", "20", 20 * time.Second, ""},
		{"reenqueue_delay", "500ms", 500 * time.Millisecond, ""},
		{"reenqueue_delay", "'20'", 0, "want an integer (seconds)"},
		{"claim_ttl", "86400", 24 * time.Hour, ""},
		{"claim_ttl", "24h", 24 * time.Hour, ""},
		{"root_claim_ttl", "604800", 7 * 24 * time.Hour, ""},
		{"root_claim_ttl", "168h", 7 * 24 * time.Hour, ""},
		{"commit_interval", "1000", time.Second, ""},
		{"commit_interval", "250ms", 250 * time.Millisecond, ""},
		{"shutdown_timeout", "30000", 30 * time.Second, ""},
		{"breaker.interval", "10000", 10 * time.Second, ""},
		{"breaker.open_timeout", "30s", 30 * time.Second, ""},
	}
	for _, tt := range tests {
		t.Run(tt.where+"="+tt.value, func(t *testing.T) {
			var head, rule string
			switch tt.where {
			case "commit_interval":
				head = "kafka: {brokers: b, commit_interval: " + tt.value + "}\n"
			case "shutdown_timeout":
				head = "kafka: {brokers: b}\nshutdown_timeout: " + tt.value + "\n"
			case "breaker.interval", "breaker.open_timeout":
				head = "kafka: {brokers: b}\nbreaker: {" + strings.TrimPrefix(tt.where, "breaker.") + ": " + tt.value + "}\n"
			case "exec.timeout":
				head = "kafka: {brokers: b}\n"
				rule = "exec: {uri: 'http://a/', timeout: " + tt.value + "}"
			default:
				head = "kafka: {brokers: b}\n"
				rule = tt.where + ": " + tt.value
			}
			src := "service_name: s\n" + head + "rules:\n  r:\n    topic: t\n"
			if rule != "" {
				src += "    " + rule + "\n"
			}
			c, err := Load([]byte(src), nil)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r := c.Rules[0]
			got := map[string]time.Duration{
				"retry_delay": r.RetryDelay, "timeout": r.Timeout, "reenqueue_delay": r.ReenqueueDelay,
				"claim_ttl": r.ClaimTTL, "root_claim_ttl": r.RootClaimTTL, "commit_interval": c.Kafka.CommitInterval,
				"shutdown_timeout": c.ShutdownTimeout, "breaker.interval": c.Breaker.Interval,
				"breaker.open_timeout": c.Breaker.OpenTimeout,
			}[tt.where]
			if tt.where == "exec.timeout" {
				got = r.Cases[0].Exec[0].Timeout
			}
			if got != tt.want {
				t.Errorf("%v, want %v", got, tt.want)
			}
		})
	}
	// The exec timeout defaults to the rule's, which defaults to 7m.
	r := ruleWith(t, "timeout: 3s\nexec: [{uri: 'http://a/'}, {uri: 'http://b/', timeout: 1s}]")
	if a, b := r.Cases[0].Exec[0].Timeout, r.Cases[0].Exec[1].Timeout; a != 3*time.Second || b != time.Second {
		t.Errorf("exec timeouts %v %v", a, b)
	}
	if got := ruleWith(t, "exec: {uri: 'http://a/'}").Cases[0].Exec[0].Timeout; got != DefaultTimeout {
		t.Errorf("default exec timeout %v", got)
	}
}

// "sample: {rate: 0..1, hash_template: '{{...}}'}: keep a deterministic
// fraction of events" (issue 3: "deterministic by hash").
func TestSpecSample(t *testing.T) {
	events := make([]*Event, 4000)
	for i := range events {
		events[i] = mustEvent(t, fmt.Sprintf(`{"meta":{"id":"%08x-id","domain":"en.wikipedia.org"},"title":"T%d","n":%d}`, i*2654435761, i%50, i))
	}
	kept := func(r *Rule) []bool {
		out := make([]bool, len(events))
		for i, ev := range events {
			_, v := r.Evaluate(ev)
			if v != Matched && v != SampledOut {
				t.Fatalf("verdict %v", v)
			}
			out[i] = v == Matched
		}
		return out
	}
	count := func(k []bool) int {
		n := 0
		for _, b := range k {
			if b {
				n++
			}
		}
		return n
	}

	// The same decisions in every process: two separate loads agree, and
	// the hash itself is pinned so that a new release keeps them too.
	a := kept(ruleWith(t, "sample: {rate: 0.3}"))
	b := kept(ruleWith(t, "sample: {rate: 0.3}"))
	if !reflect.DeepEqual(a, b) {
		t.Error("two loads of the same rule sample differently")
	}
	for key, want := range map[string]float64{
		"":                                     0.309626944070314,
		"a":                                    0.9683975557978203,
		"6c2a8f4e-1b3d-11ef-9a7c-1866da5c8f10": 0.42069531226334056,
		"Albert_Einstein":                      0.7175926614724858,
	} {
		if got := Fraction([]byte(key)); got != want {
			t.Errorf("Fraction(%q) = %v, want %v: sampling decisions would change across releases", key, got, want)
		}
	}

	// The fraction kept is close to the rate, and a higher rate keeps a
	// superset.
	for _, rate := range []float64{0.05, 0.3, 0.5, 0.9} {
		n := count(kept(ruleWith(t, fmt.Sprintf("sample: {rate: %v}", rate))))
		if want := rate * float64(len(events)); float64(n) < want*0.85 || float64(n) > want*1.15 {
			t.Errorf("rate %v kept %d of %d", rate, n, len(events))
		}
	}
	low, high := kept(ruleWith(t, "sample: {rate: 0.2}")), kept(ruleWith(t, "sample: {rate: 0.6}"))
	for i := range low {
		if low[i] && !high[i] {
			t.Fatalf("event %d kept at 0.2 but not at 0.6", i)
		}
	}
	if n := count(kept(ruleWith(t, "sample: {rate: 0}"))); n != 0 {
		t.Errorf("rate 0 kept %d", n)
	}
	if n := count(kept(ruleWith(t, "sample: {rate: 1}"))); n != len(events) {
		t.Errorf("rate 1 kept %d", n)
	}

	// The default hash_template is the event id; with another template,
	// events with the same key share their fate.
	if r := ruleWith(t, "sample: {rate: 0.5}"); r.Sample.HashTemplate.String() != DefaultSampleHash {
		t.Errorf("default hash_template %q", r.Sample.HashTemplate)
	}
	byTitle := kept(ruleWith(t, "sample: {rate: 0.5, hash_template: '{{message.title}}'}"))
	fate := map[int]bool{}
	for i, k := range byTitle {
		if prev, ok := fate[i%50]; ok && prev != k {
			t.Fatalf("title T%d both kept and dropped", i%50)
		}
		fate[i%50] = k
	}
	if n := count(byTitle); n == 0 || n == len(events) {
		t.Errorf("hash by title kept %d", n)
	}
	// Decisions follow the hash of the expanded key, nothing else.
	r := ruleWith(t, "sample: {rate: 0.5, hash_template: 'x-{{message.title}}'}")
	for i, ev := range events[:200] {
		want := Fraction([]byte(fmt.Sprintf("x-T%d", i%50))) < 0.5
		if _, ok := r.Match(ev); ok != want {
			t.Fatalf("event %d: kept %v, want %v", i, ok, want)
		}
	}

	// A case's sample replaces the rule's; a case without one inherits it.
	r = ruleWith(t, `
sample: {rate: 0}
cases:
  - match: {n: 1}
    sample: {rate: 1}
  - match: {n: 2}`)
	if _, v := r.Evaluate(events[1]); v != Matched {
		t.Errorf("case sample: %v", v)
	}
	if _, v := r.Evaluate(events[2]); v != SampledOut {
		t.Errorf("inherited sample: %v", v)
	}

	for body, want := range map[string]string{
		"sample: {hash_template: '{{message.meta.id}}'}": "rules.r.sample.rate: required",
		"sample: {rate: -0.1}":                           "rules.r.sample.rate: invalid sample rate -0.1",
		"sample: {rate: half}":                           `rules.r.sample.rate: must be a number, not "half"`,
		"sample: {rate: 0.5, hash_template: '{{x'}":      "rules.r.sample.hash_template: template",
		"sample: {rate: 0.5, seed: 1}":                   "rules.r.sample.seed: unknown key",
	} {
		if _, err := loadRule(body); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
}

// "Conditions: an object of response field -> value or list of values
// (list = any) ... Network errors and timeouts count as status 504."
func TestSpecConditions(t *testing.T) {
	timeout := errors.New("i/o timeout")
	tests := []struct {
		rule   string
		status int
		header map[string]string
		err    error
		want   Outcome
	}{
		{"retry_on: {status: 503}", 503, nil, nil, Retry},
		{"retry_on: {status: 503}", 502, nil, nil, Failed},
		{"retry_on: {status: '503'}", 503, nil, nil, Retry},
		{"retry_on: {status: [503, 429]}", 429, nil, nil, Retry},
		{"retry_on: {status: ['4xx']}", 404, nil, nil, Retry},
		{"retry_on: {status: ['4xx']}", 504, nil, timeout, Failed},
		{"retry_on: {status: [504]}", 0, nil, timeout, Retry},
		{"retry_on: {status: ['5xx']}", 0, nil, timeout, Retry},
		{"retry_on: {status: [503]}", 0, nil, timeout, Failed},
		{"ignore: {status: ['50x']}", 0, nil, timeout, Ignored},
		{"ignore: {status: 404}", 404, nil, nil, Ignored},
		{"ignore: {status: 404}", 412, nil, nil, Failed}, // the rule's ignore replaces the default
		// Fields are ANDed; header values are exact or /regex/, a list is any.
		{"retry_on: {status: ['5xx'], headers: {retry-after: ['/^\\d+$/', soon]}}", 503, map[string]string{"Retry-After": "120"}, nil, Retry},
		{"retry_on: {status: ['5xx'], headers: {retry-after: ['/^\\d+$/', soon]}}", 503, map[string]string{"Retry-After": "soon"}, nil, Retry},
		{"retry_on: {status: ['5xx'], headers: {retry-after: ['/^\\d+$/', soon]}}", 503, nil, nil, Failed},
		{"retry_on: {status: ['5xx'], headers: {retry-after: ['/^\\d+$/', soon]}}", 429, map[string]string{"Retry-After": "1"}, nil, Failed},
		{"retry_on: {headers: {x-retry: 'yes'}}", 418, map[string]string{"X-Retry": "yes"}, nil, Retry},
	}
	for _, tt := range tests {
		r := ruleWith(t, tt.rule)
		var header func(string) string
		if tt.header != nil {
			header = func(name string) string {
				for k, v := range tt.header {
					if strings.EqualFold(k, name) {
						return v
					}
				}
				return ""
			}
		}
		if got := r.Classify(tt.status, header, tt.err); got != tt.want {
			t.Errorf("%s: Classify(%d, %v, %v) = %v, want %v", tt.rule, tt.status, tt.header, tt.err, got, tt.want)
		}
	}
	for body, want := range map[string]string{
		"retry_on: {status: [500, '5xx', 'abc']}": `rules.r.retry_on.status[2]: bad status pattern "abc"`,
		"retry_on: {status: [600]}":               `rules.r.retry_on.status[0]: bad status pattern "600"`,
		"retry_on: {status: '5x'}":                `rules.r.retry_on.status: bad status pattern "5x"`,
		"ignore: {headers: {x: '/[/'}}":           "rules.r.ignore.headers.x: bad regex /[/",
		"ignore: [412]":                           "rules.r.ignore: must be a mapping",
	} {
		if _, err := loadRule(body); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
}

// "defaults: any rule key, applied to every rule that does not set it";
// "cases ... replaces top-level match/exec", so a rule with cases takes no
// match or exec from defaults.
func TestSpecDefaultsAndCases(t *testing.T) {
	c := mustLoad(t, `
service_name: s
kafka: {brokers: b}
defaults:
  match: {type: job}
  exec: {method: post, uri: 'http://jobrunner/rpc'}
rules:
  plain: {topic: t}
  ownMatch: {topic: t, match: {type: other}}
  withCases:
    topic: t
    cases:
      - match: {type: a}
        exec: {uri: 'http://a/'}
      - exec: {uri: 'http://fallback/'}
`)
	tests := []struct {
		rule, event, uri string // uri "" when the rule does not act
	}{
		{"plain", `{"meta":{},"type":"job"}`, "http://jobrunner/rpc"},
		{"plain", `{"meta":{},"type":"other"}`, ""},
		{"ownMatch", `{"meta":{},"type":"other"}`, "http://jobrunner/rpc"},
		{"ownMatch", `{"meta":{},"type":"job"}`, ""},
		{"withCases", `{"meta":{},"type":"a"}`, "http://a/"},
		{"withCases", `{"meta":{},"type":"job"}`, "http://fallback/"},
	}
	for _, tt := range tests {
		ev := mustEvent(t, tt.event)
		m, ok := c.Rule(tt.rule).Match(ev)
		if !ok {
			if tt.uri != "" {
				t.Errorf("%s %s: no match", tt.rule, tt.event)
			}
			continue
		}
		reqs, err := m.Requests(ev)
		if err != nil || tt.uri == "" || len(reqs) != 1 || reqs[0].URI != tt.uri {
			t.Errorf("%s %s: %+v %v, want %q", tt.rule, tt.event, reqs, err, tt.uri)
		}
	}
	for body, want := range map[string]string{
		"cases: []":                             "rules.r.cases: must be a non-empty list",
		"cases: {match: {a: 1}}":                "rules.r.cases: must be a non-empty list",
		"cases: [{match: {a: 1}, colour: red}]": "rules.r.cases[0].colour: unknown key",
		"cases: [{exec: {}}]":                   "rules.r.cases[0].exec.uri: required",
		"match: [1]":                            "rules.r.match[0]: must be a mapping",
		"match: x":                              "rules.r.match: must be a mapping or a list of mappings",
	} {
		if _, err := loadRule(body); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
}

// YAML anchors are accepted (TestLoadYAMLAnchors), but an alias inside the
// node it names would make decoding recurse forever, and nested aliases
// can stand for billions of nodes: both are load errors.
func TestSpecYAMLAliases(t *testing.T) {
	const head = "service_name: s\nkafka: {brokers: b}\nrules:\n"
	var bomb strings.Builder
	bomb.WriteString(head + "  r:\n    topic: t\n    match:\n      l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i <= 8; i++ {
		fmt.Fprintf(&bomb, "      l%d: &l%d [*l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	tests := []struct{ name, src, want string }{
		{"merge of itself", head + "  a: &a {topic: t, <<: *a}\n", "alias *a refers to a node that contains it"},
		{"alias in its own pattern", head + "  a: {topic: t, match: &m {x: {y: *m}}}\n", "alias *m refers to a node that contains it"},
		{"alias in its own body", head + "  a: {topic: t, exec: &e {uri: 'http://a/', body: [*e]}}\n", "alias *e refers to a node that contains it"},
		{"billion laughs", bomb.String(), "aliases expand to more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load([]byte(tt.src), nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
	// Reusing one anchor many times is fine.
	c := mustLoad(t, head+"  a: {topic: t, match: &m {type: '/^(x)$/'}, exec: {uri: 'http://a/{{match.type[1]}}'}}\n  b: {topic: u, match: *m}\n  c: {topic: v, match: *m, match_not: [*m]}\n")
	if _, ok := c.Rule("b").Match(mustEvent(t, `{"meta":{},"type":"x"}`)); !ok {
		t.Error("b: shared pattern does not match")
	}
}
