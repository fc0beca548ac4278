package rules

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

// listing lists what p reads, one path per line sorted: "a.b" for a value
// read whole, "a.b{}" for an object whose members are not read; nodes with
// members are implied by their members. nil (everything) is "*".
func listing(p *projection) []string {
	if p == nil || p.whole {
		return []string{"*"}
	}
	var out []string
	var walk func(p *projection, path string)
	walk = func(p *projection, path string) {
		switch {
		case p.whole:
			out = append(out, path)
		case len(p.keys) == 0:
			out = append(out, path+"{}")
		}
		for k, c := range p.keys {
			walk(c, strings.TrimPrefix(path+"."+k, "."))
		}
	}
	walk(p, "")
	sort.Strings(out)
	return out
}

// projectionOf builds a projection from listing's lines, with meta as
// every projection has it.
func projectionOf(paths ...string) *projection {
	p := newProjection()
	for _, path := range paths {
		if path == "*" {
			return everything
		}
		obj := strings.HasSuffix(path, "{}")
		keys := strings.Split(strings.TrimSuffix(path, "{}"), ".")
		if obj {
			at := p
			for _, k := range keys {
				at = at.child(k)
			}
			continue
		}
		p.add(keys)
	}
	return p
}

// disagreement says where got, decoded with p, differs from want, the full
// decode, on p's paths; "" when it does not. got may hold nothing p does
// not name.
func disagreement(want, got any, p *projection, path string) string {
	wm, isObj := want.(map[string]any)
	if p.whole || !isObj {
		if !reflect.DeepEqual(want, got) {
			return fmt.Sprintf("%s: got %#v, want %#v", path, got, want)
		}
		return ""
	}
	gm, ok := got.(map[string]any)
	if !ok {
		return fmt.Sprintf("%s: got %#v, want an object", path, got)
	}
	for k := range gm {
		if p.keys[k] == nil {
			return fmt.Sprintf("%s.%s: decoded, but not on the projection", path, k)
		}
	}
	for k, c := range p.keys {
		wv, wok := wm[k]
		gv, gok := gm[k]
		if wok != gok {
			return fmt.Sprintf("%s.%s: present %v, want %v", path, k, gok, wok)
		}
		if wok {
			if s := disagreement(wv, gv, c, path+"."+k); s != "" {
				return s
			}
		}
	}
	return ""
}

// TestProjection pins what rules read: each template site, the paths of
// patterns, and the cases that read everything.
func TestProjection(t *testing.T) {
	service := listing(project(&Rule{}))
	tests := []struct {
		name string
		rule string
		want []string // beyond the service fields ("*": everything); a partitioner's, beyond meta
	}{
		{"nothing", ``, nil},
		{"pattern paths", `match: {type: x, page: {namespace: 0, title: '/^A/'}, tags: [a], gone: undefined}`,
			[]string{"gone{}", "page.namespace", "page.title", "tags", "type"}},
		{"'undefined' under a value read whole", "match: {a: {b: undefined}, c: undefined}\nconcurrency_key: '{{message.a}}'",
			[]string{"a", "c{}"}},
		{"match_not and cases", "cases:\n  - match: {a: 1}\n    match_not: [{b: {c: 2}}]\n  - match_not: {d: {}}",
			[]string{"a", "b.c", "d{}"}},
		{"an object pattern under a value read whole", "match: {params: {a: 1}}\nconcurrency_key: '{{message.params}}'",
			[]string{"params"}}, // params.title of the service fields too
		{"uri, headers, query, body", `
exec:
  uri: 'http://x/{message.u}/{{match.meta.uri[1]}}'
  headers: {h: '{{message.h.x}}'}
  query: {q: '{{message.q}}'}
  body: {b: '{{message.b}}', l: ['{{message.l[2]}}', 1]}`,
			[]string{"b", "h.x", "l.2", "q", "u"}},
		{"function arguments are read whole", `exec: {uri: 'http://x/', body: '{{merge(message.params, {a: default(message.x, "y")})}}'}`,
			[]string{"params", "x"}},
		{"a subtree", `exec: {uri: 'http://x/', headers: {m: '{{message.meta}}'}}`,
			[]string{"meta"}},
		{"bracketed names", `exec: {uri: "http://x/{{message['a.b'].length}}"}`, []string{"a.b.length"}},
		{"rule keys", `
concurrency_key: '{{message.database}}'
rate_limit: {rate: 1, key: '{{message.wiki}}'}
breaker: {key: '{{message.cluster}}'}
limiters: {blacklist: 'html:{message.meta.uri}', other: '{message.o}'}
sample: {rate: 0.5, hash_template: '{{message.title}}'}`,
			[]string{"cluster", "database", "o", "title", "wiki"}},
		{"a case's sample", "cases:\n  - sample: {rate: 0.5, hash_template: '{{message.k}}'}", []string{"k"}},
		{"partitioner", "partition_stream: 'p.{{message.s}}'\npartition_key: a.b", []string{"a.b", "s"}},
		{"partitioner with a pattern", "match: {type: x}\npartition_stream: 'p.{{message.meta.stream}}'\npartition_key: database",
			[]string{"database", "meta.stream", "type"}},
		{"the event as the body: its raw bytes", "exec: {method: post, uri: 'http://x/', body: '{{globals.message}}'}", nil},
		{"the event as the body, with spaces", "exec: {method: post, uri: 'http://x/', body: '{{ message }}'}", nil},
		{"the event in a larger string", `exec: {uri: 'http://x/', body: 'event: {{globals.message}}'}`, []string{"*"}},
		{"the event inside an object body", `exec: {uri: 'http://x/', body: {e: '{{message}}'}}`, []string{"*"}},
		{"the event in a header", `exec: {uri: 'http://x/', headers: {e: '{{message}}'}}`, []string{"*"}},
		{"the event in a function", `exec: {uri: 'http://x/', body: '{{strip(message, "x")}}'}`, []string{"*"}},
		{"globals itself", `exec: {uri: 'http://x/{{globals}}'}`, []string{"*"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ruleWith(t, tt.rule)
			want := listing(projectionOf(append(slices.Clone(service), tt.want...)...))
			if strings.HasPrefix(tt.name, "partitioner") { // no service fields
				want = listing(projectionOf(append([]string{"meta{}"}, tt.want...)...))
			}
			if got := listing(r.proj); !slices.Equal(got, want) {
				t.Errorf("reads %q, want %q", got, want)
			}
		})
	}
	r := mustLoad(t, "service_name: s\nkafka: {brokers: b}\ndefaults: {concurrency_key: '{{message.k}}'}\nrules:\n  r: {topic: t}\n").Rules[0]
	if got := listing(r.proj); !slices.Contains(got, "k") {
		t.Errorf("a template from defaults: reads %q", got)
	}
	if want := []string{"meta.domain", "meta.dt", "meta.id", "meta.request_id", "meta.stream", "meta.uri",
		"delay_until", "page_title", "params.title", "root_event.dt", "root_event.signature", "sha1", "triggered_by"}; !sameSet(service, want) {
		t.Errorf("service fields %q", service)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}

// TestEventGetOutsideProjection: Get and Meta read a field that the
// event's projection left out from the raw bytes.
func TestEventGetOutsideProjection(t *testing.T) {
	r := ruleWith(t, "match: {type: x}")
	ev, err := r.ParseEvent([]byte(`{"meta":{"domain":"d","topic":"t","n":7},"type":"x","params":{"title":"T","x":[1]},"other":{"a":"b"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ev.Message["other"]; ok {
		t.Fatal("other decoded: the test needs a field outside the projection")
	}
	for _, tt := range []struct {
		f    Field
		want any
	}{
		{"other.a", "b"}, {"other", map[string]any{"a": "b"}}, {"params", map[string]any{"title": "T", "x": []any{json1}}},
		{FieldParamsTitle, "T"}, {"params.x", []any{json1}}, {"nope", nil}, {"type.x", nil}, {FieldMetaDomain, "d"},
	} {
		if got := ev.Get(tt.f); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Get(%s) = %#v, want %#v", tt.f, got, tt.want)
		}
	}
	if ev.Meta("topic") != "t" || ev.Meta("n") != "7" || ev.Meta("domain") != "d" || ev.Meta("nope") != "" {
		t.Errorf("Meta: %q %q %q", ev.Meta("topic"), ev.Meta("n"), ev.Meta("domain"))
	}
}

var json1 = json.Number("1")

// FuzzProjectedDecode holds the projected decode to the full one: the
// same inputs are accepted, with the same errors, and every path of the
// projection has the same value or the same absence. paths is a
// comma-separated list of listing's lines.
func FuzzProjectedDecode(f *testing.F) {
	for _, s := range append(edgeEvents(), deepEvents()...) {
		f.Add([]byte(s), "meta{},database,params.title,root_event.dt")
		f.Add([]byte(s), "meta.domain,tags.1,a.b.c,x{}")
	}
	f.Fuzz(func(t *testing.T, data []byte, paths string) {
		if len(paths) > 200 {
			return
		}
		var list []string
		for _, p := range strings.Split(paths, ",") {
			if p != "" && p != "{}" && !strings.Contains(p, "..") && !strings.HasPrefix(p, ".") && !strings.HasSuffix(p, ".") {
				list = append(list, p)
			}
		}
		p := projectionOf(list...)
		want, werr := parseEvent(data, nil)
		got, gerr := parseEvent(data, p)
		if fmt.Sprint(werr) != fmt.Sprint(gerr) {
			t.Fatalf("%q with %q: error %v, want %v", data, paths, gerr, werr)
		}
		if werr != nil {
			return
		}
		if s := disagreement(want.Message, got.Message, p, "message"); s != "" {
			t.Fatalf("%q with %q: %s", data, paths, s)
		}
		if want.meta != got.meta || want.meta == 0 || data[want.meta-1] != '{' {
			t.Fatalf("%q with %q: meta at %d, want %d", data, paths, got.meta-1, want.meta-1)
		}
	})
}

// TestEventOfAnotherRule: an event decoded for one rule, handed to
// another, is read in full for it.
func TestEventOfAnotherRule(t *testing.T) {
	a := ruleWith(t, "match: {type: x}")
	b := ruleWith(t, "match: {other: {k: v}}\nexec: {uri: 'http://x/{{message.other.n}}'}")
	c := ruleWith(t, "partition_stream: p\npartition_key: other.n")
	ev, err := a.ParseEvent([]byte(`{"meta":{},"type":"x","other":{"k":"v","n":7}}`))
	if err != nil {
		t.Fatal(err)
	}
	m, ok := b.Match(ev)
	if !ok {
		t.Fatal("no match")
	}
	if reqs, err := m.Requests(ev); err != nil || reqs[0].URI != "http://x/7" {
		t.Errorf("requests %+v %v", reqs, err)
	}
	if k := c.Partition.KeyValue(ev); k != "7" {
		t.Errorf("partition key %q", k)
	}
}
