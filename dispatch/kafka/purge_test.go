package kafka_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"changeprop/breaker"
	"changeprop/internal/testkit"
	"changeprop/rules"
)

// purges is the set of path@host a cache was sent PURGE for, with counts.
func purges(c *testkit.JobRunner) map[string]int {
	out := map[string]int{}
	for _, r := range c.Requests() {
		if r.Method == "PURGE" && r.Status == 200 {
			out[r.Path+"@"+r.Host]++
		}
	}
	return out
}

// TestPurgeReachesEveryCache: 300 resource_change events are purged on
// three caches, one rule instance per cache. The third cache cannot be
// reached: its breaker opens and its instance waits, while the other two
// receive every purge and commit to the end; nothing goes to the retry or
// error topics. When the third cache comes back it gets every purge too.
func TestPurgeReachesEveryCache(t *testing.T) {
	const n = 300
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{
		"resource_change": 2, "cp.retry.resource_change": 2, "cp.error": 1,
	}})
	ok := func(*http.Request, []byte) (int, http.Header, []byte, bool) { return 200, nil, nil, true }
	caches := []*testkit.JobRunner{
		testkit.NewJobRunner(t, testkit.JobRunnerOptions{Respond: ok}),
		testkit.NewJobRunner(t, testkit.JobRunnerOptions{Respond: ok}),
		testkit.NewJobRunner(t, testkit.JobRunnerOptions{Respond: ok}),
	}
	px := newProxy(t, strings.TrimPrefix(caches[2].URL(), "http://"))
	px.down()
	endpoints := []string{caches[0].URL(), caches[1].URL(), "http://" + px.addr}
	cfg, err := rules.Load(fmt.Appendf(nil, `
service_name: cp
kafka:
  brokers: %s
  consumer: {auto.offset.reset: earliest}
  commit_interval: 100ms
rules:
  purge_cdn:
    topic: resource_change
    match: {tags: [purge]}
    concurrency: 10
    ignore: {status: [404, 412]}
    breaker: {failure_ratio: 0.5, min_requests: 5, interval: 10s, open_timeout: 1s, half_open_requests: 2}
    purge:
      caches: ['%s']
`, cluster.Addr(), strings.Join(endpoints, "', '")), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	recs := make([]testkit.Record, n)
	for i := range recs {
		domain := []string{"en.wikipedia.org", "de.wikipedia.org", "en.m.wikipedia.org"}[i%3]
		path := fmt.Sprintf("/api/rest_v1/page/html/Page_%d", i)
		want[path+"@"+domain] = 1
		recs[i] = testkit.Record{Topic: "resource_change", Partition: testkit.AnyPartition, Value: fmt.Appendf(nil,
			`{"$schema":"/resource_change/1.0.0","meta":{"uri":"//%s%s","domain":%q,"stream":"resource_change","id":"%d"},"tags":["purge"]}`,
			domain, path, domain, i)}
	}
	if err := cluster.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}

	var tr transitions
	inst := cfg.Rule("purge_cdn").Instances()
	if len(inst) != 3 {
		t.Fatalf("%d instances, want one per cache", len(inst))
	}
	set := breaker.NewSet(breakerSettings(inst[0]), tr.option())
	var stops []func() error
	for _, r := range inst {
		_, stop := startRunner(t, cfg, r, withBreakers(set))
		stops = append(stops, stop)
	}
	same := func(got map[string]int) bool { return fmt.Sprint(got) == fmt.Sprint(want) }
	waitFor(t, ctx, "every purge on the two reachable caches", func() bool { return same(purges(caches[0])) && same(purges(caches[1])) })
	down := "http://" + px.addr
	waitFor(t, ctx, "the unreachable cache's breaker to open", func() bool { _, ok := tr.find(down, breaker.Open, time.Time{}); return ok })
	for _, c := range endpoints[:2] {
		if _, opened := tr.find(c, breaker.Open, time.Time{}); opened {
			t.Errorf("the breaker of the reachable cache %s opened", c)
		}
	}
	for i := range 2 {
		waitFor(t, ctx, "the reachable caches' commits", func() bool {
			committed, err := cluster.Committed(ctx, "cp-"+inst[i].Name, "resource_change")
			return err == nil && committed[0]+committed[1] == n
		})
	}
	if committed, _ := cluster.Committed(ctx, "cp-"+inst[2].Name, "resource_change"); committed[0]+committed[1] == n {
		t.Errorf("the unreachable cache's instance committed every event: %v", committed)
	}
	if got := len(purges(caches[2])); got != 0 {
		t.Fatalf("the unreachable cache got %d purges", got)
	}

	px.up()
	waitFor(t, ctx, "every purge on the cache that came back", func() bool { return same(purges(caches[2])) })
	for _, stop := range stops {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range inst {
		checkCommittedToEnd(t, ctx, cluster, "cp-"+r.Name, "resource_change")
	}
	for _, topic := range []string{"cp.retry.resource_change", "cp.error"} {
		if got := sumEnds(t, ctx, cluster, topic); got != 0 {
			t.Errorf("%s holds %d events, want none", topic, got)
		}
	}
	for i, c := range caches {
		for _, r := range c.Requests() {
			if r.Method != "PURGE" || r.Header.Get("X-Triggered-By") == "" {
				t.Fatalf("cache %d: %s %s %v", i, r.Method, r.Path, r.Header)
			}
		}
	}
}
