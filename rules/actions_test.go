package rules

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

const editEvent = `{"meta":{"domain":"en.wikipedia.org","uri":"https://en.wikipedia.org/wiki/Foo","dt":"2024-05-01T10:00:00Z","request_id":"r-1"},` +
	`"page_title":"Template:Info box","rev_id":42,"page_namespace":10}`

func TestProduceExec(t *testing.T) {
	r := ruleWith(t, `
exec:
  - uri: 'http://rest.svc/{{message.meta.domain}}/html/{message.page_title}'
  - method: post
    uri: kafka:///resource_change
    body:
      $schema: /resource_change/1.0.0
      meta: {uri: 'https://{{message.meta.domain}}/api/rest_v1/page/html/{message.page_title}/{{message.rev_id}}', domain: '{{message.meta.domain}}'}
      tags: [restbase]
  - uri: kafka:///copies
    body: '{{globals.message}}'
  - uri: kafka:///two
    body: [{meta: {uri: a}}, {meta: {uri: '{{message.rev_id}}'}}]`)
	ev := mustEvent(t, editEvent)
	m, ok := r.Match(ev)
	if !ok {
		t.Fatal("no match")
	}
	reqs, err := m.Requests(ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 4 || reqs[0].Stream != "" || reqs[0].Method != "GET" {
		t.Fatalf("requests: %+v", reqs)
	}
	want := Request{Stream: "resource_change", URI: "kafka:///resource_change",
		Body: []byte(`{"$schema":"/resource_change/1.0.0","meta":{"domain":"en.wikipedia.org","uri":"https://en.wikipedia.org/api/rest_v1/page/html/Template%3AInfo%20box/42"},"tags":["restbase"]}`)}
	if got := reqs[1]; !reflect.DeepEqual(got, want) {
		t.Errorf("produce exec:\n got %+v\nwant %+v\n body %s", got, want, got.Body)
	}
	if got := reqs[2]; got.Stream != "copies" || string(got.Body) != editEvent {
		t.Errorf("copy of the event: %+v", got)
	}
	if got := string(reqs[3].Body); got != `[{"meta":{"uri":"a"}},{"meta":{"uri":42}}]` {
		t.Errorf("list of events: %s", got)
	}

	bad := ruleWith(t, `
exec: {uri: kafka:///x, body: '{{message.page_title}}'}`)
	m, _ = bad.Match(ev)
	if _, err := m.Requests(ev); !errors.Is(err, errNotEvents) {
		t.Errorf("a string body: err %v, want errNotEvents", err)
	}
}

func TestActionProblems(t *testing.T) {
	tests := []struct {
		name, rule string
		want       []string
	}{
		{"produce exec", `
exec:
  - {uri: 'kafka://host/x', body: {a: 1}}
  - {uri: 'kafka:///{{message.stream}}', body: {a: 1}}
  - {uri: kafka:///ok, method: get, headers: {a: b}, query: {q: 1}, timeout: 5s}
  - {uri: kafka:///ok, body: 5}`, []string{
			`rules.r.exec[0].uri: want kafka:///<stream>, got "kafka://host/x"`,
			`rules.r.exec[1].uri: bad stream name "{{message.stream}}"`,
			"rules.r.exec[2].method: a kafka:/// exec produces events: method must be post",
			"rules.r.exec[2].headers: not used by a kafka:/// exec", "rules.r.exec[2].query: not used",
			"rules.r.exec[2].timeout: not used", "rules.r.exec[2].body: required",
			"rules.r.exec[3].body: must be an event"}},
		{"fanout", `
fanout: {list: links, limit: 9000, stream: 'a b', colour: red, api: 'ftp://x/'}
exec: {uri: 'http://a/'}`, []string{
			`rules.r.fanout.list: want backlinks or embeddedin, got "links"`,
			"rules.r.fanout.limit: must be in [1, 5000], got 9000", `rules.r.fanout.stream: bad stream name "a b"`,
			"rules.r.fanout.colour: unknown key", `rules.r.fanout.api: uri "ftp://x/": scheme must be http or https`,
			"rules.r.exec: not allowed with fanout"}},
		{"fanout required", `
fanout: {}`, []string{"rules.r.fanout.api: required", "rules.r.fanout.list: required"}},
		{"purge", `
purge: {caches: ['http://a:1', 'a:2', 'http://b/x', 'http://a:1'], uris: []}
fanout: {api: 'http://api/', list: backlinks}`, []string{
			`rules.r.purge.caches[1]: want http(s)://host[:port], got "a:2"`,
			`rules.r.purge.caches[2]: want http(s)://host[:port] without path`,
			"rules.r.purge.caches[3]: duplicate cache a:1", "rules.r.purge.uris: at least one uri is required",
			"rules.r.purge: not allowed with fanout: a rule has one action"}},
		{"purge required", `
purge: {uris: ['{{message.x']}`, []string{"rules.r.purge.caches: required", "rules.r.purge.uris[0]: template"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "service_name: s\nkafka: {brokers: b}\nrules:\n  r:\n    topic: t\n" + indent(tt.rule)
			_, err := Load([]byte(src), nil)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("missing %q in:\n%s", w, err)
				}
			}
		})
	}
}

func indent(body string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.Trim(body, "\n"), "\n") {
		b.WriteString("    " + line + "\n")
	}
	return b.String()
}

func TestFanoutRequestAndPage(t *testing.T) {
	r := ruleWith(t, `
timeout: 9s
fanout:
  api: 'http://api.svc/w/api.php'
  headers: {host: '{{message.meta.domain}}'}
  list: embeddedin
  namespace: [0, 14]`)
	f := r.Fanout
	if f.Limit != 500 || f.Stream != "resource_change" || !reflect.DeepEqual(f.Tags, []string{"change-prop", "transcludes", "templates"}) {
		t.Fatalf("defaults: %+v", f)
	}
	ev := mustEvent(t, editEvent)
	m, _ := r.Match(ev)
	req, err := f.Request(m, ev, nil)
	if err != nil {
		t.Fatal(err)
	}
	const base = "http://api.svc/w/api.php?action=query&format=json&formatversion=2&list=embeddedin&eititle=Template%3AInfo+box&eilimit=500&einamespace=0%7C14"
	if req.URI != base || req.Method != "GET" || req.Timeout != 9*time.Second || req.Header("host") != "en.wikipedia.org" {
		t.Errorf("first request: %+v", req)
	}
	req, _ = f.Request(m, ev, map[string]string{"eicontinue": "10|123", "continue": "-||"})
	if want := base + "&continue=-%7C%7C&eicontinue=10%7C123"; req.URI != want {
		t.Errorf("continued request:\n got %s\nwant %s", req.URI, want)
	}

	page, err := f.ParsePage([]byte(`{"batchcomplete":true,"continue":{"eicontinue":"10|456","continue":"-||"},` +
		`"query":{"embeddedin":[{"pageid":1,"ns":0,"title":"Foo bar"},{"pageid":2,"ns":14,"title":"Category:X"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(page, Page{Titles: []string{"Foo bar", "Category:X"}, Continue: map[string]string{"eicontinue": "10|456", "continue": "-||"}}) {
		t.Errorf("page: %+v", page)
	}
	page, err = f.ParsePage([]byte(`{"batchcomplete":true,"query":{"embeddedin":[]}}`))
	if err != nil || len(page.Titles) != 0 || page.Continue != nil {
		t.Errorf("last empty page: %+v %v", page, err)
	}
	var apiErr *APIError
	if _, err := f.ParsePage([]byte(`{"error":{"code":"maxlag","info":"lagged"}}`)); !errors.As(err, &apiErr) || !apiErr.Retryable() {
		t.Errorf("maxlag: %v", err)
	}
	if _, err := f.ParsePage([]byte(`{"error":{"code":"invalidtitle","info":"bad"}}`)); !errors.As(err, &apiErr) || apiErr.Retryable() {
		t.Errorf("invalidtitle: %v", err)
	}
	for _, body := range []string{`<html>`, `{"query":{"embeddedin":{"a":1}}}`, `{"query":{"embeddedin":[{"ns":0}]}}`} {
		if _, err := f.ParsePage([]byte(body)); !errors.Is(err, ErrBadPage) {
			t.Errorf("%s: err %v, want ErrBadPage", body, err)
		}
	}

	bl := ruleWith(t, `
fanout: {api: 'http://api/', list: backlinks, limit: 50, title: '{{message.meta.uri}}', tags: [x]}`)
	req, _ = bl.Fanout.Request(m, ev, nil)
	if want := "http://api/?action=query&format=json&formatversion=2&list=backlinks&bltitle=https%3A%2F%2Fen.wikipedia.org%2Fwiki%2FFoo&bllimit=50"; req.URI != want {
		t.Errorf("backlinks request:\n got %s\nwant %s", req.URI, want)
	}
	if !reflect.DeepEqual(bl.Fanout.Tags, []string{"x"}) {
		t.Errorf("tags %v", bl.Fanout.Tags)
	}
}

func TestPageURI(t *testing.T) {
	for title, want := range map[string]string{
		"Main Page":          "https://en.wikipedia.org/wiki/Main_Page",
		"Talk:A/B (c), d's":  "https://en.wikipedia.org/wiki/Talk:A/B_(c),_d's",
		"Ünïcode & 100% ?#":  "https://en.wikipedia.org/wiki/%C3%9Cn%C3%AFcode_%26_100%25_%3F%23",
		"User:x@y $5 ~tilde": "https://en.wikipedia.org/wiki/User:x@y_$5_~tilde",
	} {
		if got := PageURI("en.wikipedia.org", title); got != want {
			t.Errorf("PageURI(%q) = %s, want %s", title, got, want)
		}
	}
}

func TestPurgeInstances(t *testing.T) {
	c := mustLoad(t, `
service_name: s
kafka: {brokers: b}
rules:
  cdn:
    topic: resource_change
    concurrency: 7
    match: {meta: {uri: '/^(?<all>.*)$/'}}
    purge:
      caches: ['http://cache1:3128', 'https://cache2.example']
      uris: ['{{message.meta.uri}}', 'https://{{message.meta.domain}}/wiki/{message.title}']
`)
	r := c.Rule("cdn")
	inst := r.Instances()
	if len(inst) != 2 || inst[0].Name != "cdn@cache1:3128" || inst[1].Name != "cdn@cache2.example" ||
		inst[0].Purge.Cache != "http://cache1:3128" || inst[1].Concurrency != 7 || r.Purge.Cache != "" {
		t.Fatalf("instances: %+v", inst)
	}
	if again := r.Instances(); again[0] != inst[0] || again[1] != inst[1] {
		t.Error("Instances makes new copies on each call")
	}
	ev := mustEvent(t, `{"meta":{"uri":"//en.wikipedia.org/api/rest_v1/page/html/A%2FB?x=1#frag","domain":"en.m.wikipedia.org"},"title":"A/B"}`)
	m, ok := inst[1].Match(ev)
	if !ok || m.Rule != inst[1] {
		t.Fatalf("match of an instance: %v %+v", ok, m)
	}
	reqs, err := m.Requests(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := []Request{
		{Method: "PURGE", URI: "https://cache2.example/api/rest_v1/page/html/A%2FB?x=1", Headers: []Header{{"host", "en.wikipedia.org"}}, Timeout: 7 * time.Minute},
		{Method: "PURGE", URI: "https://cache2.example/wiki/A%2FB", Headers: []Header{{"host", "en.m.wikipedia.org"}}, Timeout: 7 * time.Minute},
	}
	if !reflect.DeepEqual(reqs, want) {
		t.Errorf("purge requests:\n got %+v\nwant %+v", reqs, want)
	}
	if m, _ := r.Match(ev); m != nil {
		if _, err := m.Requests(ev); err == nil {
			t.Error("the rule itself (not an instance) expanded purge requests")
		}
	}
	if got := c.Rule("cdn").Instances()[0].Instances(); len(got) != 1 || got[0].Name != "cdn@cache1:3128" {
		t.Errorf("an instance's instances: %v", got)
	}
	for uri, want := range map[string][2]string{
		"https://a.org/wiki/X": {"a.org", "/wiki/X"},
		"http://a.org":         {"a.org", "/"},
		"//a.org?x":            {"a.org", "/?x"},
		"HTTPS://a.org:8/p#f":  {"a.org:8", "/p"},
	} {
		if h, p, err := purgeTarget(uri); err != nil || h != want[0] || p != want[1] {
			t.Errorf("purgeTarget(%q) = %q %q %v", uri, h, p, err)
		}
	}
	for _, uri := range []string{"/wiki/X", "https:///x", "ftp://a/x", ""} {
		if _, _, err := purgeTarget(uri); err == nil {
			t.Errorf("purgeTarget(%q) accepted", uri)
		}
	}
}

func TestConsumeAndProduceDC(t *testing.T) {
	c := mustLoad(t, "service_name: s\nkafka: {brokers: b}\ndc: eqiad\nrules: {r: {topic: t}}\n")
	if c.ConsumeDC != "eqiad" || c.ProduceDC != "eqiad" || c.ConsumeTopic("t") != "eqiad.t" || c.Topic("t") != "eqiad.t" {
		t.Errorf("defaults from dc: %q %q", c.ConsumeDC, c.ProduceDC)
	}
	c = mustLoad(t, "service_name: s\nkafka: {brokers: b}\ndc: eqiad\nconsume_dc: codfw\nrules: {r: {topic: t}}\n")
	if c.ConsumeTopic("t") != "codfw.t" || c.Topic("t") != "eqiad.t" || c.TopicName("codfw.t") != "t" || c.TopicName("eqiad.t") != "eqiad.t" {
		t.Errorf("consume_dc: %q %q", c.ConsumeTopic("t"), c.Topic("t"))
	}
	c = mustLoad(t, "service_name: s\nkafka: {brokers: b}\nproduce_dc: codfw\nrules: {r: {topic: t}}\n")
	if c.ConsumeTopic("t") != "t" || c.Topic("t") != "codfw.t" {
		t.Errorf("produce_dc: %q %q", c.ConsumeTopic("t"), c.Topic("t"))
	}
	_, err := Load([]byte("service_name: s\nkafka: {brokers: b}\nconsume_dc: 'a b'\nproduce_dc: 'c/d'\nrules: {r: {topic: t}}\n"), nil)
	if err == nil || !strings.Contains(err.Error(), `consume_dc: bad topic prefix "a b"`) || !strings.Contains(err.Error(), `produce_dc: bad topic prefix "c/d"`) {
		t.Errorf("bad prefixes: %v", err)
	}
}
