package main

import (
	"context"
	_ "embed"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"changeprop/internal/jobgen"
	"changeprop/internal/testkit"
	"changeprop/rules"
)

//go:embed devrules.yaml
var devRules string

// devPartitions is the partition count of every dev job topic.
const devPartitions = 4

func cmdDev(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	jobs := fs.Int64("jobs", 0, "stop after this many jobs are done (0: run until interrupted)")
	rate := fs.Int("rate", 1000, "jobs produced per second when -jobs is 0")
	failure := fs.Float64("failure-rate", 0.005, "share of jobs the simulated job runner fails")
	level := fs.String("log-level", "error", "log level: debug, info, warn, error")
	listen := fs.String("listen", "127.0.0.1:7200", "address of /metrics, /healthz, /readyz and /v1/ (port 0: any free port)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	ctx, stop := signalContext(log)
	defer stop()

	cluster, err := testkit.StartCluster(testkit.ClusterOptions{})
	if err != nil {
		fmt.Fprintln(stderr, "start embedded cluster:", err)
		return 1
	}
	defer cluster.Close()
	runner := testkit.StartJobRunner(testkit.JobRunnerOptions{
		Latency:     func() time.Duration { return time.Millisecond + rand.N(19*time.Millisecond) },
		FailureRate: *failure,
		Seed:        time.Now().UnixNano(),
		MaxRecorded: 1000,
	})
	defer runner.Close()

	gen := jobgen.New(time.Now().UnixNano())
	gen.Now = time.Now
	jobTypes := jobgen.Types()
	// The job topics, their retry topics and the error topic.
	for _, jt := range jobTypes {
		for _, t := range []string{jobgen.Topic(jt), "changeprop-dev.retry." + jobgen.Topic(jt)} {
			if err := cluster.CreateTopic(ctx, t, devPartitions); err != nil {
				fmt.Fprintln(stderr, "create topic:", err)
				return 1
			}
		}
	}
	if err := cluster.CreateTopic(ctx, "changeprop-dev.error", 1); err != nil {
		fmt.Fprintln(stderr, "create topic:", err)
		return 1
	}
	cfg, err := rules.Load([]byte(strings.ReplaceAll(devRules, "@JOBRUNNER@", runner.URL())),
		func(k string) string {
			switch k {
			case rules.EnvKafkaBrokers:
				return cluster.Addr()
			case rules.EnvAdminToken:
				return os.Getenv(k) // POST /v1/... with this token
			}
			return ""
		})
	if err != nil {
		fmt.Fprintln(stderr, "sample rules:", err)
		return 1
	}
	reg, metrics := newRegistry()
	svc, err := newService(cfg, log, withMetrics(metrics))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	for _, set := range svc.breakers.all {
		reg.MustRegister(set.Collector())
	}
	mainH, _ := adminHandlers(svc, reg, log)
	srv, addr, err := serveHTTP(*listen, mainH, log)
	if err != nil {
		svc.closeUnstarted()
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer srv.Close()
	fmt.Fprintf(stdout, "changeprop dev: Kafka-protocol cluster at %s (e.g. kcat -b %s -L)\n", cluster.Addr(), cluster.Addr())
	fmt.Fprintf(stdout, "changeprop dev: simulated job runner at %s, %d rules, %d job topics\n", runner.URL(), len(cfg.Rules), len(jobTypes))
	fmt.Fprintf(stdout, "changeprop dev: metrics and admin API at http://%s (/metrics /healthz /readyz /v1/rules)\n", addr)

	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	var wg sync.WaitGroup
	var svcErr, prodErr error
	wg.Go(func() { svcErr = svc.run(runCtx) })
	wg.Go(func() { prodErr = produceJobs(runCtx, cluster, gen, *jobs, *rate) })

	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last int64
	lastAt := start
	for done := false; !done; {
		select {
		case <-runCtx.Done():
			done = true
		case now := <-tick.C:
			p := svc.progress()
			fmt.Fprintf(stdout, "%4.0fs  consumed %8d  done %8d  retried %5d  failed %5d  %7.0f jobs/s  in-flight %4d  lag %6d\n",
				now.Sub(start).Seconds(), p.consumed, p.finished, p.retried, p.failed,
				float64(p.finished-last)/now.Sub(lastAt).Seconds(), p.inflight, p.lag)
			last, lastAt = p.finished, now
			if *jobs > 0 && p.finished >= *jobs {
				done = true
			}
		}
	}
	cancelRun()
	wg.Wait()
	p := svc.progress()
	elapsed := time.Since(start)
	fmt.Fprintf(stdout, "summary: %d jobs done in %.1fs (%.0f jobs/s): %d succeeded, %d duplicates skipped, %d ignored, %d on the error topic; %d retries; job runner answered %d requests, at most %d at once\n",
		p.finished, elapsed.Seconds(), float64(p.finished)/elapsed.Seconds(), p.done, p.deduped, p.ignored, p.failed, p.retried, runner.Count(), runner.MaxConcurrent())
	if svcErr != nil {
		fmt.Fprintln(stderr, svcErr)
		return 1
	}
	if prodErr != nil && runCtx.Err() == nil {
		fmt.Fprintln(stderr, prodErr)
		return 1
	}
	if *jobs > 0 && p.finished < *jobs {
		fmt.Fprintf(stderr, "interrupted after %d of %d jobs\n", p.finished, *jobs)
		return 1
	}
	return 0
}

// produceJobs writes n job events as fast as the cluster takes them, or,
// when n is 0, rate events per second until ctx ends.
func produceJobs(ctx context.Context, c *testkit.Cluster, gen *jobgen.Gen, n int64, rate int) error {
	const batch = 500
	if n > 0 {
		for sent := int64(0); sent < n; {
			k := min(int64(batch), n-sent)
			if err := c.Produce(ctx, jobBatch(gen, int(k))...); err != nil {
				return err
			}
			sent += k
		}
		return nil
	}
	perTick := max(rate/10, 1)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := c.Produce(ctx, jobBatch(gen, perTick)...); err != nil {
				return err
			}
		}
	}
}

func jobBatch(gen *jobgen.Gen, n int) []testkit.Record {
	recs := make([]testkit.Record, n)
	for i := range recs {
		topic, value := gen.Next()
		recs[i] = testkit.Record{Topic: topic, Partition: testkit.AnyPartition, Value: value}
	}
	return recs
}

// progress sums every rule's counters.
type progress struct {
	consumed, finished, retried, failed, inflight, lag int64
	// Of finished: done (the job runner succeeded, perhaps after
	// retries), deduped (a duplicate of a job done, not run again) and
	// ignored (an answer the rule ignores); the rest is failed.
	done, deduped, ignored int64
}

func (s *service) progress() progress {
	var p progress
	for _, r := range s.runners {
		st := r.Stats()
		p.consumed += st.Consumed.Load()
		// Done, ignored, failed for good or a duplicate of one done: jobs
		// at their end. A retried job counts when its retry ends.
		done, ignored, failed, deduped := st.Done.Load(), st.Ignored.Load(), st.Failed.Load(), st.Deduped.Load()
		p.finished += done + ignored + failed + deduped
		p.done += done
		p.deduped += deduped
		p.ignored += ignored
		p.failed += failed
		p.retried += st.Retried.Load()
		p.inflight += st.InFlight.Load()
		p.lag += st.Lag.Load()
	}
	return p
}
