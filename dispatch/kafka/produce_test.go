package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"changeprop/internal/testkit"
	"changeprop/rules"
)

const chainYAML = `
service_name: cp
kafka:
  brokers: %[1]s
  consumer: {auto.offset.reset: earliest}
  commit_interval: 100ms
defaults:
  retry_delay: 100ms
  retry_on: {status: ['5xx']}
rules:
  rerender_html:
    topic: mediawiki.revision-create
    exec:
      - uri: '%[2]s/{{message.meta.domain}}/v1/page/html/{message.page_title}/{{message.rev_id}}'
        headers:
          cache-control: no-cache
          if-unmodified-since: '{{date(message.meta.dt)}}'
      - uri: kafka:///resource_change
        body:
          $schema: /resource_change/1.0.0
          meta:
            uri: 'https://{{message.meta.domain}}/api/rest_v1/page/html/{message.page_title}/{{message.rev_id}}'
            domain: '{{message.meta.domain}}'
          tags: [restbase]
  rerender_summary:
    topic: resource_change
    match: &rb
      meta: {uri: '/^https:\/\/([^/]+)\/api\/rest_v1\/page\/html\/([^/]+)\/(\d+)$/'}
      tags: [restbase]
    exec:
      uri: '%[2]s/{{match.meta.uri[1]}}/v1/page/summary/{{match.meta.uri[2]}}'
      headers: {cache-control: no-cache}
  rerender_mobile:
    topic: resource_change
    match: *rb
    exec:
      uri: '%[2]s/{{match.meta.uri[1]}}/v1/page/mobile-sections/{{match.meta.uri[2]}}/{{match.meta.uri[3]}}'
      headers: {cache-control: no-cache}
`

// TestEditFlowsThroughThreeRules: an edit is re-rendered (the first try
// answered 503, so it runs again from the retry topic); only then does the
// rule produce a resource_change event, which two more rules act on with
// re-renders of their own. Every request carries the edit's request id,
// and x-triggered-by shows the chain: the edit, then the resource_change.
func TestEditFlowsThroughThreeRules(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{
		"mediawiki.revision-create": 2, "resource_change": 2,
		"cp.retry.mediawiki.revision-create": 2, "cp.retry.resource_change": 2, "cp.error": 1,
	}})
	var htmlTries atomic.Int32
	rb := testkit.NewJobRunner(t, testkit.JobRunnerOptions{Respond: func(r *http.Request, _ []byte) (int, http.Header, []byte, bool) {
		if strings.Contains(r.URL.Path, "/page/html/") && htmlTries.Add(1) == 1 {
			return 503, nil, []byte(`{"type":"unavailable"}`), true
		}
		return 200, nil, []byte(`<html/>`), true
	}})
	cfg, err := rules.Load(fmt.Appendf(nil, chainYAML, cluster.Addr(), rb.URL()), nil)
	if err != nil {
		t.Fatal(err)
	}
	edit := `{"$schema":"/mediawiki/revision/create/1.1.0","meta":{"id":"e-1","domain":"en.wikipedia.org",` +
		`"uri":"https://en.wikipedia.org/wiki/Foo_bar","stream":"mediawiki.revision-create","request_id":"req-42",` +
		`"dt":"2024-05-01T10:00:00Z"},"page_title":"Foo_bar","rev_id":123,"rev_parent_id":122}`
	if err := cluster.Produce(ctx, testkit.Record{Topic: "mediawiki.revision-create", Partition: testkit.AnyPartition, Value: []byte(edit)}); err != nil {
		t.Fatal(err)
	}
	var stops []func() error
	for _, r := range cfg.Rules {
		_, stop := startRunner(t, cfg, r)
		stops = append(stops, stop)
	}
	if err := rb.WaitFor(ctx, 3); err != nil {
		t.Fatal(err)
	}
	for _, stop := range stops {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}

	const (
		editHop   = "mediawiki.revision-create:https://en.wikipedia.org/wiki/Foo_bar"
		changeURI = "https://en.wikipedia.org/api/rest_v1/page/html/Foo_bar/123"
	)
	byPath := map[string][]testkit.Request{}
	for _, r := range rb.Requests() {
		byPath[r.Path] = append(byPath[r.Path], r)
	}
	html := byPath["/en.wikipedia.org/v1/page/html/Foo_bar/123"]
	if len(html) != 2 || html[0].Status != 503 || html[1].Status != 200 {
		t.Fatalf("html re-render: %+v", html)
	}
	for _, r := range html {
		ius, err := http.ParseTime(r.Header.Get("If-Unmodified-Since"))
		if r.Method != "GET" || r.Header.Get("X-Triggered-By") != editHop || r.Header.Get("X-Request-Id") != "req-42" ||
			err != nil || !ius.Equal(time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)) {
			t.Errorf("html re-render %s %v", r.Method, r.Header)
		}
	}
	for _, path := range []string{"/en.wikipedia.org/v1/page/summary/Foo_bar", "/en.wikipedia.org/v1/page/mobile-sections/Foo_bar/123"} {
		reqs := byPath[path]
		if len(reqs) != 1 {
			t.Fatalf("%s: %d requests, want 1 (all: %v)", path, len(reqs), byPath)
		}
		if got := reqs[0].Header.Get("X-Triggered-By"); got != editHop+",resource_change:"+changeURI {
			t.Errorf("%s: x-triggered-by %q", path, got)
		}
		if got := reqs[0].Header.Get("X-Request-Id"); got != "req-42" {
			t.Errorf("%s: x-request-id %q", path, got)
		}
	}
	if len(byPath) != 3 {
		t.Errorf("requests to %d paths, want 3: %v", len(byPath), byPath)
	}

	recs, err := cluster.ReadAll(ctx, "resource_change")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Fatalf("%d resource_change events, want 1 (the first, failed re-render produced none)", len(recs))
	}
	var change struct {
		Schema      string            `json:"$schema"`
		Meta        map[string]string `json:"meta"`
		Tags        []string          `json:"tags"`
		TriggeredBy string            `json:"triggered_by"`
	}
	if err := json.Unmarshal(recs[0].Value, &change); err != nil {
		t.Fatal(err)
	}
	m := change.Meta
	if change.Schema != "/resource_change/1.0.0" || m["uri"] != changeURI || m["stream"] != "resource_change" ||
		m["request_id"] != "req-42" || len(m["id"]) != 36 || m["id"] == "e-1" || m["domain"] != "en.wikipedia.org" ||
		change.TriggeredBy != editHop {
		t.Errorf("resource_change event %s", recs[0].Value)
	}
	if _, err := time.Parse(time.RFC3339Nano, m["dt"]); err != nil {
		t.Errorf("meta.dt %q: %v", m["dt"], err)
	}
	for _, g := range []struct{ group, topic string }{
		{"cp-rerender_html", "mediawiki.revision-create"}, {"cp-rerender_html", "cp.retry.mediawiki.revision-create"},
		{"cp-rerender_summary", "resource_change"}, {"cp-rerender_mobile", "resource_change"},
	} {
		checkCommittedToEnd(t, ctx, cluster, g.group, g.topic)
	}
}

const dcYAML = `
service_name: cp
dc: eqiad
consume_dc: codfw
kafka:
  brokers: %s
  consumer: {auto.offset.reset: earliest}
  commit_interval: 100ms
rules:
  rerender:
    topic: mediawiki.revision-create
    retry_limit: 1
    retry_delay: 100ms
    exec:
      - uri: '%s/{{message.meta.domain}}/v1/page/html/{message.page_title}'
      - uri: kafka:///resource_change
        body: {meta: {uri: 'https://{{message.meta.domain}}/api/rest_v1/page/html/{message.page_title}'}, tags: [restbase]}
`

// TestConsumeOneDatacenterProduceAnother: with dc eqiad and consume_dc
// codfw, the rule reads codfw.mediawiki.revision-create (not eqiad's),
// writes its events, retries and errors with the eqiad prefix, and reads
// its retries back from eqiad.
func TestConsumeOneDatacenterProduceAnother(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{
		"codfw.mediawiki.revision-create": 1, "eqiad.mediawiki.revision-create": 1, "eqiad.resource_change": 1,
		"eqiad.cp.retry.mediawiki.revision-create": 1, "eqiad.cp.error": 1,
	}})
	rb := testkit.NewJobRunner(t, testkit.JobRunnerOptions{Respond: func(r *http.Request, _ []byte) (int, http.Header, []byte, bool) {
		if strings.Contains(r.URL.Path, "Broken") {
			return 503, nil, nil, true
		}
		return 200, nil, nil, true
	}})
	cfg, err := rules.Load(fmt.Appendf(nil, dcYAML, cluster.Addr(), rb.URL()), nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := func(id, title string) []byte {
		return fmt.Appendf(nil, `{"meta":{"id":%q,"domain":"en.wikipedia.org","uri":"https://en.wikipedia.org/wiki/%s","stream":"mediawiki.revision-create"},"page_title":%q}`, id, title, title)
	}
	if err := cluster.Produce(ctx,
		testkit.Record{Topic: "codfw.mediawiki.revision-create", Partition: 0, Value: ev("1", "Fine")},
		testkit.Record{Topic: "codfw.mediawiki.revision-create", Partition: 0, Value: ev("2", "Broken")},
		testkit.Record{Topic: "eqiad.mediawiki.revision-create", Partition: 0, Value: ev("3", "Elsewhere")},
	); err != nil {
		t.Fatal(err)
	}
	runner, stop := startRunner(t, cfg, cfg.Rules[0])
	waitFor(t, ctx, "the two codfw events", func() bool {
		return runner.Stats().Done.Load() == 1 && runner.Stats().Failed.Load() == 1
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, r := range rb.Requests() {
		if strings.Contains(r.Path, "Elsewhere") {
			t.Errorf("read eqiad's input topic: %s", r.Path)
		}
	}
	for topic, want := range map[string]int64{
		"eqiad.resource_change": 1, "eqiad.cp.retry.mediawiki.revision-create": 1, "eqiad.cp.error": 1,
	} {
		if got := sumEnds(t, ctx, cluster, topic); got != want {
			t.Errorf("%s: %d events, want %d", topic, got, want)
		}
	}
	recs, err := cluster.ReadAll(ctx, "eqiad.resource_change")
	if err != nil || len(recs) != 1 || !strings.Contains(string(recs[0].Value), `"stream":"resource_change"`) ||
		!strings.Contains(string(recs[0].Value), "/page/html/Fine") {
		t.Errorf("eqiad.resource_change: %v %v", recs, err)
	}
	checkCommittedToEnd(t, ctx, cluster, "cp-rerender", "codfw.mediawiki.revision-create")
	checkCommittedToEnd(t, ctx, cluster, "cp-rerender", "eqiad.cp.retry.mediawiki.revision-create")
}
