package rules

// The projected decode (Rule.ParseEvent) against the full one
// (ParseEvent). For the production-shaped configurations and for every
// rule the matching, request and spec tests load, over their events,
// generated job events and edge cases, the two must give the same errors,
// verdicts, captures, requests, template values and fields.

import (
	"changeprop/internal/jobgen"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// testRecorder collects the rules the tests load (mustLoad) and the events
// they parse (mustEvent) while TestProjectedDecodeAgrees re-runs them.
type testRecorder struct {
	mu     sync.Mutex
	on     bool
	loaded []*Rule
	raws   []string
	seen   map[string]bool
}

var recorder testRecorder

// maxRecorded bounds the events kept from one test: the sampling tests
// parse thousands of events of one shape.
const maxRecorded = 64

func (rec *testRecorder) rules(rs []*Rule) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.on {
		rec.loaded = append(rec.loaded, rs...)
	}
}

func (rec *testRecorder) event(raw string) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.on && len(rec.raws) < maxRecorded && !rec.seen[raw] {
		rec.seen[raw] = true
		rec.raws = append(rec.raws, raw)
	}
}

// record runs test and returns the rules it loaded and the events it parsed.
func (rec *testRecorder) record(t *testing.T, name string, test func(*testing.T)) ([]*Rule, []string) {
	rec.mu.Lock()
	rec.on, rec.loaded, rec.raws, rec.seen = true, nil, nil, map[string]bool{}
	rec.mu.Unlock()
	t.Run(name, test)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.on = false
	return rec.loaded, rec.raws
}

func deepArray(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }

func deepObject(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }

// deepEvents nest up to and past the decoder's depth limit, in the parts
// a projection reads and in the parts it passes over.
func deepEvents() []string {
	return []string{
		`{"meta":{},"skipped":` + deepArray(10000) + `}`,
		`{"meta":{},"skipped":` + deepArray(10001) + `}`,
		`{"meta":{},"params":{"title":` + deepObject(9998) + `}}`,
		`{"meta":{},"params":{"title":` + deepObject(9999) + `}}`,
		`{"meta":{},"page":` + deepObject(9999) + `}`,
		`{"meta":` + deepObject(10000) + `}`,
	}
}

// edgeEvents are events that a decoder could get wrong: absent, null and
// 'undefined' values, arrays where objects are read and the other way
// round, escapes and invalid UTF-8 in names and values, duplicate names
// (the last one counts), nesting, numbers, and syntax errors in the parts
// a projection passes over.
func edgeEvents() []string {
	return []string{
		`{"meta":{}}`,
		` {"meta":{}} `,
		`{"meta":{"domain":"en.wikipedia.org"},"type":"undefined","s":"undefined","z":null,"n":5}`,
		`{"meta":{"domain":null,"dt":null,"id":null,"stream":null},"database":null,"sha1":null,"root_event":null,"params":null}`,
		`{"meta":{"dt":{"x":1},"uri":[]},"rev_parent_id":{"a":[1]},"nope":null,"type":{"k":"v"},"z":[],"s":{},"n":{"deep":{"er":1}},"gone":{}}`,
		`{"meta":{"domain":"canary"},"type":"x"}`,
		`{"meta":{"domain":"canary.wikipedia.org","uri":"https://canary/wiki/X"}}`,
		`{"meta":{"uri":"https://en.wikipedia.org/wiki/A b","domain":"en.wikipedia.org","stream":"mediawiki.job.refreshLinks","id":"i","dt":"2024-05-06T07:08:09Z"},"tags":["purge","restbase"],"database":"enwiki","type":"refreshLinks"}`,
		// Arrays and objects where the other is read.
		`{"meta":[],"x":1}`,
		`{"meta":{"domain":["en"]},"tags":{"0":"purge","1":"x","length":3},"params":["title"]}`,
		`{"meta":{},"tags":["a",{"k":"y","v":1},["p"]],"objs":[{"k":"x"}],"root_event":[{"dt":"x"}]}`,
		`{"meta":{},"page":{"page_title":["T"],"namespace_id":{"x":2}},"revision":"r","prior_state":{"page":[]}}`,
		`{"meta":{"uri":{"a":"b"}},"page_namespace":[0],"rev_id":{"n":1},"database":{"db":"enwiki"}}`,
		// Escapes and invalid UTF-8, in names and values.
		`{"me\u0074a":{"d\u006fmain":"en.wikipedia.org","stream":"s\u00e9"},"d\u0061tabase":"enwiki","type":"refresh\u004cinks"}`,
		`{"meta":{"domain":"x"},"\u006deta":{"domain":"y"}}`,
		"{\"meta\":{\"domain\":\"\xff\"},\"\xff\":1,\"\\ufffd\":2,\"database\":\"a\xffb\"}",
		`{"meta":{"uri":"https://x/wiki/\ud83d\ude00\ud800\u0041\udc00"},"sha1":"\"\\\/\b\f\n\r\t","page_title":"Caf\u00e9"}`,
		`{"meta":{},"skipped":"\ud800\ud800\u12ab\u0000 \\u","triggered_by":"a:b"}`,
		// Duplicate names: the last one counts, whatever came before.
		`{"meta":{"domain":"a"},"meta":{"domain":"b","stream":"s"}}`,
		`{"meta":{"domain":"a","domain":"b"},"database":"x","database":"y"}`,
		`{"meta":{"domain":"a"},"meta":"x"}`,
		`{"meta":"x","meta":{"id":"i"}}`,
		`{"meta":{},"root_event":{"dt":"2024-01-01T00:00:00Z","signature":"s"},"root_event":{"dt":"2024-02-01T00:00:00Z"}}`,
		`{"meta":{},"params":{"title":"a"},"params":null,"page_title":"p","page_title":["q"]}`,
		`{"meta":{},"params":{"title":"a","x":1},"params":{"y":2}}`,
		`{"meta":{},"type":"a","type":"refreshLinks","tags":["x"],"tags":["purge"]}`,
		// Nesting (deepEvents go to the limit).
		`{"meta":{},"skipped":` + deepArray(300) + `,"type":"x","tags":[[[["purge"]]]]}`,
		`{"meta":{"domain":` + deepObject(100) + `},"params":{"title":` + deepObject(50) + `}}`,
		// Numbers.
		`{"meta":{"id":12345678901234567890,"dt":1714979289},"n":-0,"f":1.50,"e":1e400,"g":-2.5E-3,"page_namespace":0.0,"rev_id":1222333444}`,
		`{"meta":{"dt":"1714979289000"},"n":5.0,"page_namespace":0,"delay_until":1714979289}`,
		// Syntax errors where a projection reads nothing.
		`{"meta":{},"skipped":01}`,
		`{"meta":{},"skipped":1.}`,
		`{"meta":{},"skipped":-}`,
		`{"meta":{},"skipped":.5}`,
		`{"meta":{},"skipped":1e}`,
		`{"meta":{},"skipped":"a` + "\x01" + `"}`,
		`{"meta":{},"skipped":"\x"}`,
		`{"meta":{},"skipped":"\u12"}`,
		`{"meta":{},"skipped":"unterminated}`,
		`{"meta":{},"skipped":[1,]}`,
		`{"meta":{},"skipped":{"a" 1}}`,
		`{"meta":{},"skipped":{"a":1,}}`,
		`{"meta":{},"skipped":{1:2}}`,
		`{"meta":{},"skipped":tru}`,
		`{"meta":{},"skipped":nul}`,
		`{"meta":{},"skipped":[1 2]}`,
		`{"meta":{},}`,
		`{"meta":{}} x`,
		`{"meta":{}}}`,
		`{"meta":{"x":1}`,
		`{"meta":{"domain":"a"}, "skipped": [{"a":[{"b":"\q"}]}]}`,
		// Not an object, no meta.
		``, `[]`, `"meta"`, `null`, `{}`, `{"type":"x"}`, `{"meta":null}`, `{"meta":[1]}`, `not json`,
	}
}

// jobEvents returns generated job events: every job type, wikis with a
// skewed distribution, 0.3–4 KB, some delayed, some without sha1 and
// root_event.
func jobEvents(n int) []string {
	g := jobgen.New(10)
	g.DelayRate, g.MinSize, g.MaxSize = 0.3, 300, 4000
	plain := jobgen.New(11)
	plain.Distinct = true
	var out []string
	for i := range n {
		gen := g
		if i%4 == 3 {
			gen = plain
		}
		_, v := gen.Next()
		out = append(out, string(v))
	}
	return out
}

// TestProjectedDecodeAgrees is the differential test of Rule.ParseEvent.
func TestProjectedDecodeAgrees(t *testing.T) {
	edge := edgeEvents()
	jobs := jobEvents(160)
	var configs []*Rule
	configs = append(configs, loadJobQueue(t).Rules...)
	configs = append(configs, loadChangeprop(t).Rules...)
	// The sample change-propagation deployment: events from exec, fanout
	// and purge rules (each purge cache an instance of its own).
	sample, err := os.ReadFile("../deploy/examples/changeprop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range mustLoad(t, string(sample)).Rules {
		configs = append(configs, r.Instances()...)
	}

	// Every test that loads rules and matches events, run again to
	// collect them.
	var recorded []string
	for _, test := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"TestMatch", TestMatch}, {"TestMatchCasesOrder", TestMatchCasesOrder}, {"TestMatchCaptures", TestMatchCaptures},
		{"TestEvaluateVerdicts", TestEvaluateVerdicts}, {"TestRequests", TestRequests},
		{"TestRequestsRawBodyIsShared", TestRequestsRawBodyIsShared}, {"TestRequestsExpandError", TestRequestsExpandError},
		{"TestSpecPatterns", TestSpecPatterns}, {"TestSpecCaptures", TestSpecCaptures}, {"TestSpecCanary", TestSpecCanary},
		{"TestSpecZeroIsNotAbsent", TestSpecZeroIsNotAbsent}, {"TestSpecSample", TestSpecSample},
		{"TestSpecDefaultsAndCases", TestSpecDefaultsAndCases}, {"TestSpecYAMLAliases", TestSpecYAMLAliases},
		{"TestLoadAllKeys", TestLoadAllKeys}, {"TestProjection", TestProjection},
		{"TestJobQueueEvents", TestJobQueueEvents}, {"TestChangepropEvents", TestChangepropEvents},
		{"TestChangepropDateHeader", TestChangepropDateHeader},
		{"TestProduceExec", TestProduceExec}, {"TestFanoutRequestAndPage", TestFanoutRequestAndPage},
		{"TestPurgeInstances", TestPurgeInstances},
	} {
		rules, raws := recorder.record(t, test.name, test.fn)
		recorded = append(recorded, raws...)
		// A test's rules against its own events, the edge cases and a
		// few jobs.
		events := append(append(append([]string(nil), raws...), edge...), jobs[:8]...)
		agree(t, test.name, rules, events)
	}
	// The production-shaped rules against everything. Each of them reads
	// less than the whole event, and the corpus has events they act on.
	for _, r := range configs {
		if r.proj == nil {
			t.Errorf("rule %s decodes events in full", r.Name)
		}
	}
	if matched := agree(t, "testdata", configs, append(append(append([]string(nil), jobs...), edge...), recorded...)); matched < len(jobs) {
		t.Errorf("only %d matches", matched)
	}
}

// TestProjectedDecodeDepth: the nesting limit holds in the parts a
// projection passes over as in those it builds.
func TestProjectedDecodeDepth(t *testing.T) {
	r := ruleWith(t, "match: {page: {}}")
	agree(t, "deep", []*Rule{r}, deepEvents())
	for i, raw := range deepEvents() {
		_, err := r.ParseEvent([]byte(raw))
		if want := i == 1 || i == 3 || i == 5; errors.Is(err, ErrNotJSON) != want {
			t.Errorf("deepEvents()[%d]: %v", i, err)
		}
	}
}

// agree checks every rule against every event, reporting the first few
// differences. It returns how many pairs matched.
func agree(t *testing.T, name string, rules []*Rule, events []string) (matched int) {
	t.Helper()
	full := make([]*Event, len(events))
	for i, raw := range events {
		full[i], _ = ParseEvent([]byte(raw))
	}
	failures := 0
	for _, r := range rules {
		for i, raw := range events {
			if full[i] != nil {
				if _, ok := r.Match(full[i]); ok {
					matched++
				}
			}
			d := diffDecodes(r, []byte(raw), full[i])
			if d == "" {
				continue
			}
			t.Errorf("%s: rule %s, event %.300q:\n%s", name, r.Name, raw, d)
			if failures++; failures == 10 {
				t.Fatal("too many differences")
			}
		}
	}
	return matched
}

// show prints v for a comparison: request bodies as text, every
// timeuuid() as TIMEUUID.
func show(v any) string {
	s := fmt.Sprintf("%#v", v)
	if reqs, ok := v.([]Request); ok {
		var b strings.Builder
		for _, r := range reqs {
			fmt.Fprintf(&b, "%s %s %v %q %v; ", r.Method, r.URI, r.Headers, r.Body, r.Timeout)
		}
		s = b.String()
	}
	return uuidV1.ReplaceAllString(s, "TIMEUUID")
}

// diffDecodes compares what r does with raw decoded for it and with full,
// the full decode of raw (nil when ParseEvent rejected it). It returns the
// differences, "" when there are none.
func diffDecodes(r *Rule, raw []byte, full *Event) string {
	var d []string
	differ := func(what string, got, want any) {
		if reflect.DeepEqual(got, want) {
			return
		}
		g, w := show(got), show(want)
		if g != w {
			d = append(d, fmt.Sprintf("%s: got %s\n\twant %s", what, g, w))
		}
	}
	_, ferr := ParseEvent(raw)
	ev, err := r.ParseEvent(raw)
	differ("error", fmt.Sprint(err), fmt.Sprint(ferr))
	differ("ErrNotJSON", errors.Is(err, ErrNotJSON), errors.Is(ferr, ErrNotJSON))
	differ("ErrNoMeta", errors.Is(err, ErrNoMeta), errors.Is(ferr, ErrNoMeta))
	if full == nil || ev == nil {
		return strings.Join(d, "\n")
	}
	if r.proj != nil {
		if s := disagreement(full.Message, ev.Message, r.proj, "message"); s != "" {
			d = append(d, s)
		}
	}
	for _, f := range serviceFields {
		differ("Get("+string(f)+")", ev.Get(f), full.Get(f))
	}
	for _, k := range []string{"domain", "id", "uri", "topic", "partition"} {
		differ("Meta("+k+")", ev.Meta(k), full.Meta(k))
	}
	raws := rawBodies(r)
	values := func(s Scope) []any {
		var out []any
		for _, t := range r.templates {
			if !raws[t] {
				v, err := t.Value(s)
				out = append(out, v, fmt.Sprint(err))
			}
		}
		return out
	}
	// Without captures, as the repartitioner and the dispatcher's keys of
	// unmatched events see them.
	differ("templates", values(ev.Scope()), values(full.Scope()))
	if r.Partition != nil {
		differ("partition key", r.Partition.KeyValue(ev), r.Partition.KeyValue(full))
	}
	pm, pv := r.Evaluate(ev)
	fm, fv := r.Evaluate(full)
	differ("verdict", pv, fv)
	if pv != Matched || fv != Matched {
		return strings.Join(d, "\n")
	}
	differ("case", pm.Case, fm.Case)
	differ("captures", pm.Captures, fm.Captures)
	differ("templates with captures", values(pm.Scope(ev)), values(fm.Scope(full)))
	preqs, perr := pm.Requests(ev)
	freqs, ferr := fm.Requests(full)
	differ("requests", preqs, freqs)
	differ("requests error", fmt.Sprint(perr), fmt.Sprint(ferr))
	return strings.Join(d, "\n")
}
