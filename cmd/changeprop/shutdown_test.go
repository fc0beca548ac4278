package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"changeprop/dispatch"
	"changeprop/internal/jobgen"
	"changeprop/internal/testkit"
	"changeprop/rules"
)

// goneConfig is runConfig with a 5 s shutdown_timeout and a partitioner
// rule (a transactional client too).
var goneConfig = strings.Replace(runConfig, "shutdown_timeout: 20s", "shutdown_timeout: 5s", 1) + `  htmlCacheUpdatePartitioner:
    topic: mediawiki.job.htmlCacheUpdate
    partition_stream: 'cpjobqueue.partitioned.{{message.meta.stream}}'
    partition_key: database
    partition_map: {enwiki: 0}
    partition_default: 1
`

// TestSIGTERMWithKafkaGone stops `changeprop run` after its cluster has
// gone away: librdkafka's last commit and leaving the group then wait for
// brokers that never answer, and the process must still end, with an
// error that says so, rather than hang until it is killed.
func TestSIGTERMWithKafkaGone(t *testing.T) {
	const jobs, html = "mediawiki.job.refreshLinks", "mediawiki.job.htmlCacheUpdate"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{
		jobs: 2, html: 2}})
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{})
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgFile, fmt.Appendf(nil, goneConfig, cluster.Addr(), jr.URL()), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cp := startChangeprop(t, ctx, &logs, "run", "-create-topics", "-config", cfgFile)

	gen := jobgen.New(3)
	gen.Distinct = true
	var recs []testkit.Record
	for range 200 {
		recs = append(recs, testkit.Record{Topic: jobs, Partition: testkit.AnyPartition, Value: gen.NextOfType("refreshLinks")},
			testkit.Record{Topic: html, Partition: testkit.AnyPartition, Value: gen.NextOfType("htmlCacheUpdate")})
	}
	if err := cluster.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	if err := jr.WaitFor(cp.ctx, 200); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	waitFor(t, cp.ctx, "the partitioner's first transaction", func() bool {
		end, err := cluster.EndOffsets(ctx, "cpjobqueue.partitioned."+html)
		return err == nil && end[0]+end[1] > 0
	})
	// More work after the last commit, then the cluster goes.
	if err := cluster.Produce(ctx, recs[:100]...); err != nil {
		t.Fatal(err)
	}
	cluster.Close()

	stopped := make(chan error, 1)
	go func() { stopped <- cp.stop() }()
	select {
	case err := <-stopped:
		// The last commit either hangs, and the bound ends the wait
		// (exit 1, "did not finish in time"), or fails at once, which is
		// logged: the finished events it held are read again.
		out := logs.String()
		switch {
		case err != nil && !strings.Contains(out, "did not finish in time") && !strings.Contains(out, "did not stop in time"):
			t.Fatalf("exit %v without saying why\n%s", err, out)
		case err == nil && !strings.Contains(out, `"message":"commit"`):
			t.Fatalf("exited 0 although it could not commit, and said nothing\n%s", out)
		}
	case <-time.After(time.Minute):
		// shutdown_timeout (5s) and the bound on the last commit and
		// close (5s) are far below this: it hangs.
		t.Fatalf("changeprop still running a minute after SIGTERM with the cluster gone\n%s", logs.String())
	}
}

// failedProducer stands for a producer that has failed for good.
type failedProducer chan struct{}

func (f failedProducer) Fatal() <-chan struct{} { return f }
func (f failedProducer) FatalError() error {
	return fmt.Errorf("%w: injected", dispatch.ErrFatal)
}

// TestServiceStopsWhenTheProducerFails: a producer that failed for good
// (no retry, error or produced event can be written) stops the service with
// an error, so that it exits 1 and is restarted with a new one.
func TestServiceStopsWhenTheProducerFails(t *testing.T) {
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{"mediawiki.job.refreshLinks": 2}})
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{})
	cfg, err := rules.Load(fmt.Appendf(nil, runConfig, cluster.Addr(), jr.URL()), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := newService(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	failed := make(failedProducer)
	s.failed = failed
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- s.run(ctx) }()
	time.Sleep(500 * time.Millisecond) // the rules are running
	close(failed)
	select {
	case err := <-errc:
		if !errors.Is(err, dispatch.ErrFatal) {
			t.Fatalf("run = %v, want an error wrapping dispatch.ErrFatal", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the service did not stop after its producer failed")
	}
}
