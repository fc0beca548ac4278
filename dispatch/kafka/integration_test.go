package kafka_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"changeprop/internal/jobgen"
	"changeprop/internal/testkit"
	"changeprop/rules"
)

const ruleYAML = `
service_name: cpjobqueue
kafka:
  brokers: %s
  consumer:
    auto.offset.reset: earliest
  commit_interval: 200ms
user_agent: ChangePropagation-JobQueue/Go (test)
rules:
  refreshLinks:
    topic: mediawiki.job.refreshLinks
    concurrency: %d
    exec:
      method: post
      uri: '%s/rpc/RunSingleJob.php'
      headers:
        content-type: application/json
        host: '{{globals.message.meta.domain}}'
      body: '{{globals.message}}'
`

// TestDeliverEveryJobOnceAndCommitToTheEnd: 10,000 job events over 4
// partitions are each POSTed once, with the event as the body and the
// headers of rules.md; after a clean drain the committed offsets equal the
// high watermarks.
func TestDeliverEveryJobOnceAndCommitToTheEnd(t *testing.T) {
	const (
		topic       = "mediawiki.job.refreshLinks"
		n           = 10000
		concurrency = 25
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{topic: 4}})
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{KeepBodies: true})

	gen := jobgen.New(42)
	sent := make(map[string][]byte, n)
	recs := make([]testkit.Record, 0, 1000)
	for i := 0; i < n; i++ {
		v := gen.NextOfType("refreshLinks")
		sent[metaField(t, v, "id")] = v
		recs = append(recs, testkit.Record{Topic: topic, Partition: int32(i % 4), Value: v})
		if len(recs) == cap(recs) {
			if err := cluster.Produce(ctx, recs...); err != nil {
				t.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	if len(sent) != n {
		t.Fatalf("generator made %d distinct ids, want %d", len(sent), n)
	}

	cfg, err := rules.Load(fmt.Appendf(nil, ruleYAML, cluster.Addr(), concurrency, jr.URL()), nil)
	if err != nil {
		t.Fatal(err)
	}
	runner, stop := startRunner(t, cfg, cfg.Rules[0])
	if err := jr.WaitFor(ctx, n); err != nil {
		t.Fatalf("job runner saw %d of %d jobs: %v", jr.Succeeded(), n, err)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}

	end, err := cluster.EndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := cluster.Committed(ctx, "cpjobqueue-refreshLinks", topic)
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 4; p++ {
		if committed[p] != end[p] || end[p] != n/4 {
			t.Errorf("partition %d: committed %d, high watermark %d, want both %d", p, committed[p], end[p], n/4)
		}
	}

	seen := make(map[string]bool, n)
	for _, req := range jr.Requests() {
		id := metaField(t, req.Body, "id")
		if seen[id] {
			t.Errorf("job %s delivered twice", id)
		}
		seen[id] = true
		want, ok := sent[id]
		if !ok {
			t.Fatalf("unknown job %s delivered", id)
		}
		if !bytes.Equal(req.Body, want) {
			t.Fatalf("job %s: body differs from the event:\n got %s\nwant %s", id, req.Body, want)
		}
		checkHeaders(t, req, want)
	}
	if len(seen) != n {
		t.Errorf("delivered %d distinct jobs, want %d", len(seen), n)
	}
	if got := jr.MaxConcurrent(); got > concurrency {
		t.Errorf("job runner saw %d requests at once, rule concurrency is %d", got, concurrency)
	}
	if got := runner.Stats().Done.Load(); got != n {
		t.Errorf("stats: done = %d, want %d", got, n)
	}
}

func checkHeaders(t *testing.T, req testkit.Request, event []byte) {
	t.Helper()
	if req.Method != "POST" || req.Path != "/rpc/RunSingleJob.php" {
		t.Fatalf("request %s %s, want POST /rpc/RunSingleJob.php", req.Method, req.Path)
	}
	want := map[string]string{
		"Content-Type":   "application/json",
		"User-Agent":     "ChangePropagation-JobQueue/Go (test)",
		"X-Request-Id":   metaField(t, event, "request_id"),
		"X-Triggered-By": "mediawiki.job.refreshLinks:" + metaField(t, event, "uri"),
	}
	for k, v := range want {
		if got := req.Header.Get(k); got != v {
			t.Fatalf("header %s = %q, want %q", k, got, v)
		}
	}
	if d := metaField(t, event, "domain"); req.Host != d {
		t.Fatalf("Host = %q, want %q", req.Host, d)
	}
}

func metaField(t *testing.T, event []byte, key string) string {
	t.Helper()
	var ev struct {
		Meta map[string]any `json:"meta"`
	}
	if err := json.Unmarshal(event, &ev); err != nil {
		t.Fatalf("event %q: %v", event, err)
	}
	s, _ := ev.Meta[key].(string)
	return s
}

// TestCommitsInTheBackground: while the rule runs, the offsets of finished
// events reach the group within a few commit intervals, committed by the
// client in the background (the poll loop only stores them), with no
// revoke or shutdown to force them out.
func TestCommitsInTheBackground(t *testing.T) {
	const topic, n = "mediawiki.job.refreshLinks", 2000
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{topic: 2}})
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{})
	gen := jobgen.New(7)
	recs := make([]testkit.Record, n)
	for i := range recs {
		recs[i] = testkit.Record{Topic: topic, Partition: int32(i % 2), Value: gen.NextOfType("refreshLinks")}
	}
	if err := cluster.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	cfg, err := rules.Load(fmt.Appendf(nil, ruleYAML, cluster.Addr(), 20, jr.URL()), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, stop := startRunner(t, cfg, cfg.Rules[0])
	if err := jr.WaitFor(ctx, n); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the group's offsets at the end while running", func() bool {
		c, err := cluster.Committed(ctx, "cpjobqueue-refreshLinks", topic)
		return err == nil && c[0] == n/2 && c[1] == n/2
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
