package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"changeprop/internal/testkit"
)

const retuneConfig = `
service_name: cpjobqueue
kafka:
  brokers: %s
  consumer: {auto.offset.reset: earliest}
  commit_interval: 100ms
listen: 127.0.0.1:0
rules:
  job:
    topic: mediawiki.job.refreshLinks
    concurrency: 30
    concurrency_key: '{{message.database}}'
    key_concurrency: {default: 2, overrides: {enwiki: %d}}
    exec:
      method: post
      uri: '%s/rpc/RunSingleJob.php'
      headers: {content-type: application/json}
      body: '{{globals.message}}'
`

// wikiMax tracks the highest number of jobs in flight per wiki at the job
// runner emulator.
type wikiMax struct {
	mu       sync.Mutex
	inflight map[string]int
	max      map[string]int
}

func (w *wikiMax) respond(r *http.Request, body []byte) (int, http.Header, []byte, bool) {
	var ev struct{ Database string }
	_ = json.Unmarshal(body, &ev)
	w.mu.Lock()
	w.inflight[ev.Database]++
	w.max[ev.Database] = max(w.max[ev.Database], w.inflight[ev.Database])
	w.mu.Unlock()
	t := time.NewTimer(20 * time.Millisecond)
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
	w.mu.Lock()
	w.inflight[ev.Database]--
	w.mu.Unlock()
	return 200, nil, []byte(`{"status":"ok"}`), true
}

func (w *wikiMax) take() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.max
	w.max = map[string]int{}
	return m
}

// TestKeyConcurrencyRetunedBySIGHUP runs `changeprop run` with per-wiki
// caps (enwiki 3, others 2): the job runner never sees more. Then the file
// raises enwiki to 8 and the process gets SIGHUP: enwiki's concurrency
// rises, with no restart and no rebalance.
func TestKeyConcurrencyRetunedBySIGHUP(t *testing.T) {
	const topic = "mediawiki.job.refreshLinks"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{topic: 4}})
	w := &wikiMax{inflight: map[string]int{}, max: map[string]int{}}
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{Respond: w.respond})
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	write := func(enwiki int) {
		if err := os.WriteFile(cfgFile, fmt.Appendf(nil, retuneConfig, cluster.Addr(), enwiki, jr.URL()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(3)
	wikis := []string{"enwiki", "enwiki", "enwiki", "dewiki", "frwiki"}
	batch := 0
	produce := func(n int) {
		batch++
		recs := make([]testkit.Record, n)
		for i := range recs {
			db := wikis[i%len(wikis)]
			recs[i] = testkit.Record{Topic: topic, Partition: testkit.AnyPartition, Value: fmt.Appendf(nil,
				`{"meta":{"id":"%s-%d-%d","uri":"https://x/%d","domain":"%s.example","stream":"%s","dt":"%s"},"database":"%s","type":"refreshLinks"}`,
				db, batch, i, i, db, topic, time.Now().UTC().Format(time.RFC3339), db)}
		}
		if err := cluster.Produce(ctx, recs...); err != nil {
			t.Fatal(err)
		}
	}

	var logs syncBuffer
	cp := startChangeprop(t, ctx, &logs, "run", "-config", cfgFile)
	produce(600)
	if err := jr.WaitFor(cp.ctx, 600); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	before := w.take()
	if before["enwiki"] > 3 || before["dewiki"] > 2 || before["frwiki"] > 2 {
		t.Fatalf("caps exceeded: %v (enwiki 3, others 2)", before)
	}
	if before["enwiki"] < 3 {
		t.Fatalf("enwiki reached only %d at once; the test needs it to fill its cap", before["enwiki"])
	}

	write(8)
	if err := cp.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, cp.ctx, "the retune", func() bool { return strings.Contains(logs.String(), `"retuned"`) })
	produce(600)
	if err := jr.WaitFor(cp.ctx, 1200); err != nil {
		t.Fatal(err)
	}
	after := w.take()
	if after["enwiki"] <= 3 || after["enwiki"] > 8 {
		t.Errorf("after SIGHUP enwiki ran %d at once, want more than 3 and at most 8", after["enwiki"])
	}
	if after["dewiki"] > 2 || after["frwiki"] > 2 {
		t.Errorf("after SIGHUP other wikis exceeded 2: %v", after)
	}
	if err := cp.stop(); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	if n := strings.Count(logs.String(), `"message":"assigned"`); n != 1 {
		t.Errorf("%d assignments: the retune rebalanced or restarted the consumer", n)
	}
	t.Logf("max in flight per wiki: before %v, after %v", before, after)
}

// TestInvalidReloadKeepsTheRunningConfig: a file that fails validation is
// rejected with its problems, and the process keeps running.
func TestInvalidReloadKeepsTheRunningConfig(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{"mediawiki.job.refreshLinks": 1}})
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgFile, fmt.Appendf(nil, retuneConfig, cluster.Addr(), 3, "http://127.0.0.1:1"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cp := startChangeprop(t, ctx, &logs, "run", "-config", cfgFile)
	waitFor(t, cp.ctx, "subscription", func() bool { return strings.Contains(logs.String(), `"subscribed"`) })
	if err := os.WriteFile(cfgFile, []byte("service_name: x\nrules: {job: {concurrency: 0}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cp.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, cp.ctx, "the rejection", func() bool { return strings.Contains(logs.String(), "config reload rejected") })
	if !strings.Contains(logs.String(), "rules.job.concurrency") {
		t.Errorf("the rejection does not name the problem:\n%s", logs.String())
	}
	if err := cp.stop(); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
}
