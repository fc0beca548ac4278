package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"changeprop/dispatch"
	"changeprop/internal/testkit"
	"changeprop/rules"
)

const fanoutYAML = `
service_name: cp
kafka:
  brokers: %s
  consumer: {auto.offset.reset: earliest}
  commit_interval: 100ms
rules:
  transclusions:
    topic: mediawiki.revision-create
    match: {page_namespace: 10}
    fanout:
      api: '%s'
      headers: {host: '{{message.meta.domain}}'}
      list: embeddedin
      limit: 500
`

// sumEnds is the number of records in topic.
func sumEnds(t *testing.T, ctx context.Context, c *testkit.Cluster, topic string) int64 {
	t.Helper()
	ends, err := c.EndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range ends {
		n += e
	}
	return n
}

// TestFanoutTenThousandPagesAcrossARestart: a template edit expands, over
// an emulated Action API holding 10,000 transclusions in pages of 500,
// into 10,000 resource_change events, each exactly once, although the
// rule is stopped in the middle while the 8th page's request is in flight
// (cut short by the shutdown deadline, so that step is not committed) and
// a new instance takes over from the committed continuation event.
func TestFanoutTenThousandPagesAcrossARestart(t *testing.T) {
	const (
		n         = 10000
		pages     = n / 500
		cutPage   = 7
		contTopic = "cp.continue.transclusions"
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{
		"mediawiki.revision-create": 1, "resource_change": 4, contTopic: 2,
		"cp.retry.mediawiki.revision-create": 1, "cp.error": 1,
	}})
	deps := make([]string, n)
	for i := range deps {
		deps[i] = fmt.Sprintf("Page %05d", i)
	}
	held := make(chan struct{})
	var once sync.Once
	api := testkit.NewActionAPI(t, testkit.ActionAPIOptions{
		Dependents: map[string][]string{"Template:Infobox": deps},
		Hold: func(r *http.Request, page int) bool {
			first := false
			if page == cutPage {
				once.Do(func() { first = true })
			}
			if !first {
				return true
			}
			close(held)
			<-r.Context().Done() // until the shutdown deadline cancels the request
			return false
		},
	})
	cfg, err := rules.Load(fmt.Appendf(nil, fanoutYAML, cluster.Addr(), api.URL()), nil)
	if err != nil {
		t.Fatal(err)
	}
	edit := `{"meta":{"id":"edit-1","domain":"en.wikipedia.org","uri":"https://en.wikipedia.org/wiki/Template:Infobox",` +
		`"stream":"mediawiki.revision-create","request_id":"req-1","dt":"2024-05-01T10:00:00Z"},"page_title":"Template:Infobox","page_namespace":10}`
	if err := cluster.Produce(ctx, testkit.Record{Topic: "mediawiki.revision-create", Partition: 0, Value: []byte(edit)}); err != nil {
		t.Fatal(err)
	}
	short := func(rc *dispatch.RunnerConfig) { rc.ShutdownTimeout = 300 * time.Millisecond }

	_, stop := startRunner(t, cfg, cfg.Rules[0], short)
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("the 8th page was never asked for")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := sumEnds(t, ctx, cluster, "resource_change"); got != cutPage*500 {
		t.Fatalf("after the stop: %d events, want the %d of the first %d pages", got, cutPage*500, cutPage)
	}
	if got := sumEnds(t, ctx, cluster, contTopic); got != cutPage {
		t.Fatalf("after the stop: %d continuation events, want %d", got, cutPage)
	}

	runner, stop := startRunner(t, cfg, cfg.Rules[0], short)
	waitFor(t, ctx, "every page", func() bool { return sumEnds(t, ctx, cluster, "resource_change") >= n })
	waitFor(t, ctx, "the last step to finish", func() bool { return runner.Stats().Done.Load() >= pages-cutPage })
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	recs, err := cluster.ReadAll(ctx, "resource_change")
	if err != nil {
		t.Fatal(err)
	}
	uris := map[string]int{}
	ids := map[string]bool{}
	for _, r := range recs {
		var ev struct {
			Schema      string            `json:"$schema"`
			Meta        map[string]string `json:"meta"`
			Tags        []string          `json:"tags"`
			TriggeredBy string            `json:"triggered_by"`
		}
		if err := json.Unmarshal(r.Value, &ev); err != nil {
			t.Fatal(err)
		}
		meta := ev.Meta
		uris[meta["uri"]]++
		ids[meta["id"]] = true
		if ev.Schema != "/resource_change/1.0.0" || meta["stream"] != "resource_change" || meta["domain"] != "en.wikipedia.org" ||
			meta["request_id"] != "req-1" || meta["dt"] != "2024-05-01T10:00:00Z" || fmt.Sprint(ev.Tags) != "[change-prop transcludes templates]" ||
			ev.TriggeredBy != "mediawiki.revision-create:https://en.wikipedia.org/wiki/Template:Infobox" {
			t.Fatalf("event %s", r.Value)
		}
	}
	if len(recs) != n || len(uris) != n || len(ids) != n {
		t.Fatalf("%d events, %d distinct pages, %d distinct ids; want %d of each", len(recs), len(uris), len(ids), n)
	}
	for _, d := range deps {
		if uri := rules.PageURI("en.wikipedia.org", d); uris[uri] != 1 {
			t.Fatalf("%s: %d events", uri, uris[uri])
		}
	}
	if got := sumEnds(t, ctx, cluster, contTopic); got != pages-1 {
		t.Errorf("%d continuation events, want %d", got, pages-1)
	}
	asked := map[int]int{}
	for _, r := range api.Requests() {
		asked[r.Page]++
		if r.Host != "en.wikipedia.org" || r.Limit != 500 || r.Header.Get("X-Request-Id") != "req-1" {
			t.Errorf("API request %+v", r)
		}
	}
	for p := range pages {
		if want := map[bool]int{true: 2, false: 1}[p == cutPage]; asked[p] != want {
			t.Errorf("page %d asked for %d times, want %d", p, asked[p], want)
		}
	}
	checkCommittedToEnd(t, ctx, cluster, "cp-transclusions", "mediawiki.revision-create")
	checkCommittedToEnd(t, ctx, cluster, "cp-transclusions", contTopic)
}
