package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"changeprop/internal/jobgen"
	"changeprop/internal/testkit"
)

const killConfig = `
service_name: cpjobqueue
kafka:
  brokers: %s
  consumer:
    auto.offset.reset: earliest
    session.timeout.ms: 1000
    heartbeat.interval.ms: 250
  commit_interval: 100ms
listen: 127.0.0.1:0
rules:
  refreshLinks:
    topic: mediawiki.job.refreshLinks
    concurrency: %d
    exec:
      method: post
      uri: '%s/rpc/RunSingleJob.php'
      headers: {content-type: application/json}
      body: '{{globals.message}}'
`

// TestKill9DuringAStream kills `changeprop run` with SIGKILL at random
// moments, five times, while 20,000 events stream in, restarting it each
// time: every event reaches the job runner at least once, and the
// duplicates stay within what can be in flight or finished-but-uncommitted
// at each kill.
func TestKill9DuringAStream(t *testing.T) {
	const (
		topic       = "mediawiki.job.refreshLinks"
		n           = 20000
		kills       = 5
		concurrency = 20
	)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d", seed)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{topic: 4}})
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{
		KeepBodies: true,
		Latency:    func() time.Duration { return time.Millisecond },
	})
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgFile, fmt.Appendf(nil, killConfig, cluster.Addr(), concurrency, jr.URL()), 0o600); err != nil {
		t.Fatal(err)
	}

	gen := jobgen.New(int64(seed))
	gen.Distinct = true // counted by delivery, not deduplicated
	ids := make(chan []string, 1)
	go func() {
		var all []string
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < n; i += 500 {
			recs := make([]testkit.Record, 500)
			for j := range recs {
				v := gen.NextOfType("refreshLinks")
				all = append(all, eventID(t, v))
				recs[j] = testkit.Record{Topic: topic, Partition: testkit.AnyPartition, Value: v}
			}
			if err := cluster.Produce(ctx, recs...); err != nil {
				t.Errorf("produce: %v", err)
				break
			}
			<-tick.C
		}
		ids <- all
	}()

	var logs syncBuffer
	for k := 0; k < kills; k++ {
		cp := startChangeprop(t, ctx, &logs, "run", "-config", cfgFile)
		target := jr.Succeeded() + 500 + rng.Int64N(3000)
		waitFor(t, cp.ctx, fmt.Sprintf("%d deliveries before kill %d", target, k+1), func() bool {
			return jr.Succeeded() >= target
		})
		if err := cp.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-cp.done
		t.Logf("kill %d after %d deliveries", k+1, jr.Succeeded())
	}
	all := <-ids
	cp := startChangeprop(t, ctx, &logs, "run", "-config", cfgFile)
	waitFor(t, cp.ctx, "every event delivered", func() bool {
		d := deliveredIDs(t, jr)
		for _, id := range all {
			if !d[id] {
				return false
			}
		}
		return true
	})
	if err := cp.stop(); err != nil {
		t.Fatalf("final run: %v\n%s", err, logs.String())
	}
	dups := jr.Succeeded() - n
	// At a kill, what runs again is what was in flight (concurrency) plus
	// what finished since the last commit: at most one commit interval of
	// jobs at the most this rule can do (concurrency jobs per runner
	// latency), 2,000 here. After a restart the rule drains a backlog at
	// that pace; before it, it follows the 5,000 events/s it is given.
	const commitInterval, runnerLatency = 100 * time.Millisecond, time.Millisecond
	bound := int64(kills * (concurrency + concurrency*int(commitInterval/runnerLatency)))
	t.Logf("%d events, %d deliveries, %d duplicates (bound %d)", n, jr.Succeeded(), dups, bound)
	if dups > bound {
		t.Errorf("%d duplicates, more than the in-flight window allows (%d)", dups, bound)
	}
}
