package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"changeprop/internal/testkit"
)

// TestKill9MidJobRunsTheJobAgain: with dedupe in Redis, `changeprop run` is
// killed while a job's request is in flight. The restarted process reads
// the job again and runs it: the dead process's claim was never confirmed,
// so the copy is not taken for a duplicate.
func TestKill9MidJobRunsTheJobAgain(t *testing.T) {
	const topic = "mediawiki.job.refreshLinks"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{topic: 1}})
	rs := testkit.StartRedis(t)
	var posts atomic.Int64
	hang := make(chan struct{})
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{
		Respond: func(r *http.Request, body []byte) (int, http.Header, []byte, bool) {
			if posts.Add(1) == 1 {
				select { // the first attempt hangs until its process dies
				case <-hang:
				case <-r.Context().Done():
				}
			}
			return 200, nil, []byte(`{"status":"ok"}`), true
		},
	})
	defer close(hang)
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	cfg := fmt.Sprintf(`
service_name: cpjobqueue
kafka:
  brokers: %s
  consumer: {auto.offset.reset: earliest, session.timeout.ms: 1000, heartbeat.interval.ms: 250}
  commit_interval: 100ms
redis: {addr: %s, prefix: CPJQ}
listen: 127.0.0.1:0
rules:
  job:
    topic: %s
    timeout: 3s
    exec: {method: post, uri: '%s/rpc/RunSingleJob.php', body: '{{globals.message}}'}
`, cluster.Addr(), rs.Addr, topic, jr.URL())
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	job := fmt.Sprintf(`{"meta":{"id":"stuck-1","dt":"%s","domain":"en.wikipedia.org","uri":"https://en.wikipedia.org/wiki/X","stream":"%s"},"database":"enwiki","type":"refreshLinks"}`,
		time.Now().UTC().Format(time.RFC3339), topic)
	if err := cluster.Produce(ctx, testkit.Record{Topic: topic, Partition: 0, Value: []byte(job)}); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cp := startChangeprop(t, ctx, &logs, "run", "-config", cfgFile)
	waitFor(t, cp.ctx, "the job in flight", func() bool { return posts.Load() == 1 })
	if err := cp.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-cp.done
	cp2 := startChangeprop(t, ctx, &logs, "run", "-config", cfgFile)
	waitFor(t, cp2.ctx, "the job to run again", func() bool { return jr.Succeeded() >= 1 && posts.Load() >= 2 })
	if err := cp2.stop(); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	if strings.Contains(logs.String(), `"dedupe"`) && jr.Succeeded() == 0 {
		t.Fatalf("the redelivered job was dropped as a duplicate:\n%s", logs.String())
	}
	t.Logf("posted %d times, %d answered", posts.Load(), jr.Succeeded())
}
