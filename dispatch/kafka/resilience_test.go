package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"changeprop/internal/jobgen"
	"changeprop/internal/testkit"
	"changeprop/rules"
)

const jobRule = `
service_name: cpjobqueue
kafka:
  brokers: %s
  consumer:
    auto.offset.reset: earliest
    session.timeout.ms: 2000
    heartbeat.interval.ms: 300
    partition.assignment.strategy: %s
  commit_interval: 100ms
rules:
  job:
    topic: %s
    concurrency: 20
    exec:
      method: post
      uri: '%s/rpc/RunSingleJob.php'
      headers: {content-type: application/json}
      body: '{{globals.message}}'
`

func loadRule(t *testing.T, brokers, strategy, topic, runner string) *rules.Config {
	t.Helper()
	cfg, err := rules.Load(fmt.Appendf(nil, jobRule, brokers, strategy, topic, runner), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// jobs produces n refreshLinks jobs round-robin over the partitions and
// returns their ids.
func produceJobs(t *testing.T, ctx context.Context, c *testkit.Cluster, gen *jobgen.Gen, topic string, partitions, n int) []string {
	t.Helper()
	ids := make([]string, 0, n)
	var recs []testkit.Record
	for i := 0; i < n; i++ {
		v := gen.NextOfType("refreshLinks")
		ids = append(ids, metaField(t, v, "id"))
		recs = append(recs, testkit.Record{Topic: topic, Partition: int32(i % partitions), Value: v})
		if len(recs) == 500 || i == n-1 {
			if err := c.Produce(ctx, recs...); err != nil {
				t.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	return ids
}

// delivered is the set of job ids the runner answered 200.
func delivered(t *testing.T, jr *testkit.JobRunner) map[string]int {
	out := map[string]int{}
	for _, r := range jr.Requests() {
		if r.Status == 200 {
			out[metaField(t, r.Body, "id")]++
		}
	}
	return out
}

// waitDelivered waits until the job runner answered 200 to every id; at
// the timeout it says how many are missing.
func waitDelivered(t *testing.T, ctx context.Context, what string, jr *testkit.JobRunner, ids []string) {
	t.Helper()
	missing := 0
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		d := delivered(t, jr)
		missing = 0
		for _, id := range ids {
			if d[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s: %d of %d jobs never answered 200 (%d requests answered)", what, missing, len(ids), jr.Succeeded())
		}
	}
}

func checkCommittedToEnd(t *testing.T, ctx context.Context, c *testkit.Cluster, group, topic string) {
	t.Helper()
	end, err := c.EndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := c.Committed(ctx, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	for p, e := range end {
		if committed[p] != e {
			t.Errorf("%s/%d: committed %d, high watermark %d", topic, p, committed[p], e)
		}
	}
}

// TestMalformedEventsGoToTheErrorTopic interleaves 10,000 malformed events
// with 10,000 good ones: every good one is done, every bad one is on the
// error topic with its raw bytes and coordinates, and nothing stalls.
func TestMalformedEventsGoToTheErrorTopic(t *testing.T) {
	const topic, n = "mediawiki.job.refreshLinks", 10000
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{topic: 4, "cpjobqueue.error": 1}})
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{KeepBodies: true})
	gen := jobgen.New(3)
	bad := map[string]bool{}
	var recs []testkit.Record
	for i := 0; i < n; i++ {
		var b string
		switch i % 4 {
		case 0:
			b = fmt.Sprintf("not json %d", i)
		case 1:
			b = fmt.Sprintf(`{"type":"refreshLinks","n":%d}`, i) // no meta
		case 2:
			b = fmt.Sprintf(`[%d]`, i)
		case 3:
			b = fmt.Sprintf(`{"meta":"flat %d"}`, i) // meta is not an object
		}
		bad[b] = true
		recs = append(recs,
			testkit.Record{Topic: topic, Partition: int32(i % 4), Value: gen.NextOfType("refreshLinks")},
			testkit.Record{Topic: topic, Partition: int32(i % 4), Value: []byte(b)})
		if len(recs) >= 1000 {
			if err := cluster.Produce(ctx, recs...); err != nil {
				t.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	cfg := loadRule(t, cluster.Addr(), "cooperative-sticky", topic, jr.URL())
	runner, stop := startRunner(t, cfg, cfg.Rules[0])
	if err := jr.WaitFor(ctx, n); err != nil {
		t.Fatalf("%d of %d good jobs done: %v", jr.Succeeded(), n, err)
	}
	waitFor(t, ctx, "every bad event finished", func() bool { return runner.Stats().Failed.Load() == n })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkCommittedToEnd(t, ctx, cluster, "cpjobqueue-job", topic)
	if got := len(delivered(t, jr)); got != n {
		t.Errorf("%d distinct good jobs delivered, want %d", got, n)
	}

	errs, err := cluster.ReadAll(ctx, "cpjobqueue.error")
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) != n {
		t.Fatalf("%d error events, want %d", len(errs), n)
	}
	for _, r := range errs {
		var ev struct {
			Schema    string `json:"$schema"`
			Meta      struct{ ID, DT, Stream string }
			EmitterID string `json:"emitter_id"`
			RawEvent  string `json:"raw_event"`
			Message   string
			Rule      string
			Topic     string
			Partition *int32
			Offset    *int64
		}
		if err := json.Unmarshal(r.Value, &ev); err != nil {
			t.Fatalf("error event %s: %v", r.Value, err)
		}
		if !bad[ev.RawEvent] {
			t.Fatalf("error event for an unknown raw event %q", ev.RawEvent)
		}
		delete(bad, ev.RawEvent)
		if ev.Schema != "/error/0.0.3" || ev.EmitterID != "cpjobqueue#job" || ev.Rule != "job" ||
			ev.Topic != topic || ev.Partition == nil || ev.Offset == nil || ev.Message == "" ||
			ev.Meta.ID == "" || ev.Meta.DT == "" || ev.Meta.Stream != "cpjobqueue.error" {
			t.Fatalf("error event lacks fields: %s", r.Value)
		}
	}
}

// TestInstancesJoinAndLeave runs one, two, then three members of a rule's
// group while events keep arriving, then stops them one by one: no event
// is lost, under the cooperative and the eager protocol.
func TestInstancesJoinAndLeave(t *testing.T) {
	for _, strategy := range []string{"cooperative-sticky", "range"} {
		t.Run(strategy, func(t *testing.T) {
			const topic, total = "mediawiki.job.refreshLinks", 12000
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{topic: 6}})
			jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{
				KeepBodies: true,
				Latency:    func() time.Duration { return time.Millisecond },
			})
			cfg := loadRule(t, cluster.Addr(), strategy, topic, jr.URL())
			gen := jobgen.New(11)

			// The stream: 12 batches of 1,000, one every 200ms.
			var ids []string
			produced := make(chan struct{})
			go func() {
				defer close(produced)
				tick := time.NewTicker(200 * time.Millisecond)
				defer tick.Stop()
				for range total / 1000 {
					ids = append(ids, produceJobs(t, ctx, cluster, gen, topic, 6, 1000)...)
					<-tick.C
				}
			}()

			_, stop1 := startRunner(t, cfg, cfg.Rules[0])
			waitFor(t, ctx, "2,000 jobs", func() bool { return jr.Succeeded() >= 2000 })
			_, stop2 := startRunner(t, cfg, cfg.Rules[0])
			waitFor(t, ctx, "4,000 jobs", func() bool { return jr.Succeeded() >= 4000 })
			_, stop3 := startRunner(t, cfg, cfg.Rules[0])
			waitFor(t, ctx, "6,000 jobs", func() bool { return jr.Succeeded() >= 6000 })
			if err := stop1(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, ctx, "8,000 jobs", func() bool { return jr.Succeeded() >= 8000 })
			if err := stop2(); err != nil {
				t.Fatal(err)
			}
			<-produced
			waitDelivered(t, ctx, "every job", jr, ids)
			if err := stop3(); err != nil {
				t.Fatal(err)
			}
			checkCommittedToEnd(t, ctx, cluster, "cpjobqueue-job", topic)
			t.Logf("%d jobs, %d deliveries", total, jr.Succeeded())
		})
	}
}

// TestRegexSubscriptionFollowsTopics: a /regex/ rule picks up a topic
// created while it runs and never reads its exclude_topics.
func TestRegexSubscriptionFollowsTopics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{
		"mediawiki.job.a": 2, "mediawiki.job.excluded": 2, "other.topic": 1,
	}})
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{KeepBodies: true})
	cfg, err := rules.Load(fmt.Appendf(nil, `
service_name: cpjobqueue
kafka:
  brokers: %s
  consumer: {auto.offset.reset: earliest}
  commit_interval: 100ms
rules:
  others:
    topic: '/^mediawiki\.job\..*/'
    exclude_topics: [mediawiki.job.excluded]
    exec: {method: post, uri: '%s/rpc/RunSingleJob.php', body: '{{globals.message}}'}
`, cluster.Addr(), jr.URL()), nil)
	if err != nil {
		t.Fatal(err)
	}
	gen := jobgen.New(5)
	a := produceJobs(t, ctx, cluster, gen, "mediawiki.job.a", 2, 100)
	produceJobs(t, ctx, cluster, gen, "mediawiki.job.excluded", 2, 100)
	produceJobs(t, ctx, cluster, gen, "other.topic", 1, 100)
	runner, stop := startRunner(t, cfg, cfg.Rules[0])
	if err := jr.WaitFor(ctx, 100); err != nil {
		t.Fatal(err)
	}
	if err := cluster.CreateTopic(ctx, "mediawiki.job.new", 3); err != nil {
		t.Fatal(err)
	}
	b := produceJobs(t, ctx, cluster, gen, "mediawiki.job.new", 3, 100)
	if err := jr.WaitFor(ctx, 200); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	d := delivered(t, jr)
	for _, id := range append(a, b...) {
		if d[id] == 0 {
			t.Fatalf("job %s of a subscribed topic not delivered", id)
		}
	}
	if len(d) != 200 {
		t.Errorf("%d jobs delivered, want the 200 of the subscribed topics", len(d))
	}
	if got := runner.Stats().Consumed.Load(); got != 200 {
		t.Errorf("consumed %d messages, want 200: excluded or unrelated topics were read", got)
	}
}

// TestRecoversFromInjectedKafkaFaults fails every OffsetCommit, Fetch and
// Produce for a while (the broker drops the connection): nothing is lost
// and the service recovers by itself.
func TestRecoversFromInjectedKafkaFaults(t *testing.T) {
	const topic, n = "mediawiki.job.refreshLinks", 4000
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{topic: 4, "cpjobqueue.error": 1}})
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{
		KeepBodies: true,
		Latency:    func() time.Duration { return 2 * time.Millisecond },
	})
	var failing atomic.Bool
	var injected atomic.Int64
	for _, key := range []kmsg.Key{kmsg.OffsetCommit, kmsg.Fetch, kmsg.Produce} {
		cluster.Kfake().ControlKey(int16(key), func(kmsg.Request) (kmsg.Response, error, bool) {
			cluster.Kfake().KeepControl()
			if !failing.Load() {
				return nil, nil, false
			}
			injected.Add(1)
			return nil, fmt.Errorf("injected fault"), true
		})
	}
	gen := jobgen.New(9)
	ids := produceJobs(t, ctx, cluster, gen, topic, 4, n/2)
	badRecs := make([]testkit.Record, 100)
	for i := range badRecs {
		badRecs[i] = testkit.Record{Topic: topic, Partition: int32(i % 4), Value: fmt.Appendf(nil, "garbage %d", i)}
	}

	cfg := loadRule(t, cluster.Addr(), "cooperative-sticky", topic, jr.URL())
	_, stop := startRunner(t, cfg, cfg.Rules[0])
	waitFor(t, ctx, "500 jobs", func() bool { return jr.Succeeded() >= 500 })
	// Produce the rest before the faults start: the fault also hits our
	// own producer, which is not under test.
	if err := cluster.Produce(ctx, badRecs...); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, produceJobs(t, ctx, cluster, gen, topic, 4, n/2)...)
	failing.Store(true)
	faultEnd := time.NewTimer(3 * time.Second)
	<-faultEnd.C
	failing.Store(false)
	if injected.Load() == 0 {
		t.Fatal("no request was failed: the fault injection did not bite")
	}
	waitDelivered(t, ctx, "every job after the faults", jr, ids)
	waitFor(t, ctx, "the error events", func() bool {
		errs, err := cluster.ReadAll(ctx, "cpjobqueue.error")
		return err == nil && len(errs) >= len(badRecs)
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkCommittedToEnd(t, ctx, cluster, "cpjobqueue-job", topic)
	t.Logf("%d requests failed by injection", injected.Load())
}
