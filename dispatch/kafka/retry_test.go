package kafka_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"changeprop/dispatch"
	"changeprop/dispatch/kafka"
	"changeprop/internal/jobgen"
	"changeprop/internal/testkit"
	"changeprop/rules"
)

const retryRule = `
service_name: cpjobqueue
kafka:
  brokers: %s
  consumer: {auto.offset.reset: earliest}
  commit_interval: 100ms
rules:
  job:
    topic: mediawiki.job.refreshLinks
    concurrency: 30
    retry_delay: 200ms
    retry_factor: 2
    retry_limit: %d
    reenqueue_delay: 3s
    exec:
      method: post
      uri: '%s/rpc/RunSingleJob.php'
      headers: {content-type: application/json}
      body: '{{globals.message}}'
`

const (
	jobTopic   = "mediawiki.job.refreshLinks"
	retryTopic = "cpjobqueue.retry.mediawiki.job.refreshLinks"
	errorTopic = "cpjobqueue.error"
)

// script answers each job by its meta.id: the n-th attempt of a job gets
// answer(id, n); it records when each attempt arrived.
type script struct {
	mu       sync.Mutex
	attempts map[string][]time.Time
	answer   func(id string, n int) (int, http.Header)
}

func newScript(answer func(id string, n int) (int, http.Header)) *script {
	return &script{attempts: map[string][]time.Time{}, answer: answer}
}

func (s *script) respond(r *http.Request, body []byte) (int, http.Header, []byte, bool) {
	var ev struct{ Meta struct{ ID string } }
	if err := json.Unmarshal(body, &ev); err != nil {
		return 400, nil, []byte(`{"error":"bad json"}`), true
	}
	s.mu.Lock()
	// Wall clock, without the monotonic reading: due times travel in
	// events as wall-clock times, and this machine's wall clock may be
	// slewed against the monotonic one (0.5% was seen).
	s.attempts[ev.Meta.ID] = append(s.attempts[ev.Meta.ID], time.Now().Round(0))
	n := len(s.attempts[ev.Meta.ID])
	s.mu.Unlock()
	status, h := s.answer(ev.Meta.ID, n)
	if status == 200 {
		return 200, nil, []byte(`{"status":"ok"}`), true
	}
	return status, h, []byte(`{"error":"scripted failure"}`), true
}

func (s *script) times(id string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.attempts[id]...)
}

func (s *script) count(id string) int { return len(s.times(id)) }

func retrySetup(t *testing.T, retryLimit int, sc *script) (*testkit.Cluster, *rules.Config) {
	t.Helper()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{jobTopic: 4, retryTopic: 4, errorTopic: 1}})
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{Respond: sc.respond})
	cfg, err := rules.Load(fmt.Appendf(nil, retryRule, cluster.Addr(), retryLimit, jr.URL()), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cluster, cfg
}

type errorEvent struct {
	Schema    string `json:"$schema"`
	EmitterID string `json:"emitter_id"`
	RawEvent  string `json:"raw_event"`
	Message   string
	Details   struct {
		Status  int
		Headers map[string]string
		Body    string
	}
	Rule     string
	Attempts int
	Topic    string
}

func errorEvents(t *testing.T, ctx context.Context, c *testkit.Cluster) map[string]errorEvent {
	t.Helper()
	recs, err := c.ReadAll(ctx, errorTopic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]errorEvent{}
	for _, r := range recs {
		var e errorEvent
		if err := json.Unmarshal(r.Value, &e); err != nil {
			t.Fatal(err)
		}
		id := metaField(t, []byte(e.RawEvent), "id")
		if _, dup := out[id]; dup {
			t.Errorf("job %s is on the error topic twice", id)
		}
		out[id] = e
	}
	return out
}

// TestRetriesRunWhenDueAndEndOnTheErrorTopic: with retry_delay 200ms and
// retry_factor 2, a job that fails twice runs exactly three times, each
// retry no earlier than its delay; a job that always fails runs three times
// (retry_limit 2) and lands once on the error topic with the response's
// status, headers and body; with retry_limit 0 a failing job runs once.
func TestRetriesRunWhenDueAndEndOnTheErrorTopic(t *testing.T) {
	for _, limit := range []int{2, 0} {
		t.Run(fmt.Sprintf("retry_limit=%d", limit), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			gen := jobgen.New(21)
			flaky, broken := gen.NextOfType("refreshLinks"), gen.NextOfType("refreshLinks")
			flakyID, brokenID := metaField(t, flaky, "id"), metaField(t, broken, "id")
			sc := newScript(func(id string, n int) (int, http.Header) {
				if id == flakyID && n <= 2 || id == brokenID {
					return 503, http.Header{"X-Why": {"scripted"}}
				}
				return 200, nil
			})
			cluster, cfg := retrySetup(t, limit, sc)
			if err := cluster.Produce(ctx,
				testkit.Record{Topic: jobTopic, Partition: 0, Value: flaky},
				testkit.Record{Topic: jobTopic, Partition: 1, Value: broken}); err != nil {
				t.Fatal(err)
			}
			runner, stop := startRunner(t, cfg, cfg.Rules[0])
			wantErrors := 1
			if limit == 0 {
				wantErrors = 2
			}
			waitFor(t, ctx, "the error events", func() bool { return runner.Stats().Failed.Load() >= int64(wantErrors) })
			if limit == 2 {
				waitFor(t, ctx, "the flaky job to succeed", func() bool { return runner.Stats().Done.Load() == 1 })
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			wantRuns := limit + 1
			for _, id := range []string{flakyID, brokenID} {
				times := sc.times(id)
				if id == flakyID && limit == 2 {
					wantRuns = 3
				}
				if len(times) != wantRuns {
					t.Errorf("job %s ran %d times, want %d", id, len(times), wantRuns)
				}
				delay := 200 * time.Millisecond
				for i := 1; i < len(times); i++ {
					if gap := times[i].Sub(times[i-1]); gap < delay {
						t.Errorf("job %s: attempt %d came %v after the previous one, before its due time (%v)", id, i+1, gap, delay)
					}
					delay *= 2
				}
			}
			errs := errorEvents(t, ctx, cluster)
			if len(errs) != wantErrors {
				t.Fatalf("%d error events, want %d", len(errs), wantErrors)
			}
			e, ok := errs[brokenID]
			if !ok {
				t.Fatalf("the always-failing job is not on the error topic")
			}
			if e.RawEvent != string(broken) || e.Rule != "job" || e.EmitterID != "cpjobqueue#job" ||
				e.Attempts != limit+1 || e.Details.Status != 503 || e.Details.Headers["x-why"] != "scripted" ||
				e.Details.Body != `{"error":"scripted failure"}` || e.Schema != "/error/0.0.3" {
				t.Errorf("error event: %+v", e)
			}
			checkCommittedToEnd(t, ctx, cluster, "cpjobqueue-job", jobTopic)
			checkCommittedToEnd(t, ctx, cluster, "cpjobqueue-job", retryTopic)
		})
	}
}

// TestReadonlyRetriesBeyondTheLimit: a job answered 500 with X-Readonly
// keeps being retried, past retry_limit, until the database is writable.
func TestReadonlyRetriesBeyondTheLimit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	gen := jobgen.New(22)
	job := gen.NextOfType("refreshLinks")
	id := metaField(t, job, "id")
	sc := newScript(func(_ string, n int) (int, http.Header) {
		if n <= 5 {
			return 500, http.Header{"X-Readonly": {"true"}}
		}
		return 200, nil
	})
	cluster, cfg := retrySetup(t, 1, sc)
	if err := cluster.Produce(ctx, testkit.Record{Topic: jobTopic, Partition: 2, Value: job}); err != nil {
		t.Fatal(err)
	}
	runner, stop := startRunner(t, cfg, cfg.Rules[0])
	waitFor(t, ctx, "the job to succeed", func() bool { return runner.Stats().Done.Load() == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := sc.count(id); n != 6 {
		t.Errorf("ran %d times, want 6 (5 read-only answers, then success)", n)
	}
	if errs := errorEvents(t, ctx, cluster); len(errs) != 0 {
		t.Errorf("%d error events for a read-only database", len(errs))
	}
}

// TestStreamWithFailures: of 20,000 jobs, 10% fail once and 1% always
// fail; every job ends done or on the error topic exactly as classified,
// none is lost, and retries do not hold back fresh jobs.
func TestStreamWithFailures(t *testing.T) {
	const n = 20000
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	gen := jobgen.New(23)
	kind := map[string]int{} // 0 ok, 1 fails once, 2 always fails
	var recs []testkit.Record
	for i := 0; i < n; i++ {
		v := gen.NextOfType("refreshLinks")
		id := metaField(t, v, "id")
		switch {
		case i%100 == 7:
			kind[id] = 2
		case i%10 == 3:
			kind[id] = 1
		}
		recs = append(recs, testkit.Record{Topic: jobTopic, Partition: int32(i % 4), Value: v})
	}
	var mu sync.Mutex
	sc := newScript(func(id string, n int) (int, http.Header) {
		mu.Lock()
		k := kind[id]
		mu.Unlock()
		if k == 2 || k == 1 && n == 1 {
			return 502, nil
		}
		return 200, nil
	})
	cluster, cfg := retrySetup(t, 2, sc)
	for i := 0; i < n; i += 1000 {
		if err := cluster.Produce(ctx, recs[i:i+1000]...); err != nil {
			t.Fatal(err)
		}
	}
	runner, stop := startRunner(t, cfg, cfg.Rules[0])
	always, once := 0, 0
	for _, k := range kind {
		if k == 2 {
			always++
		} else if k == 1 {
			once++
		}
	}
	waitFor(t, ctx, "every job at its end", func() bool {
		st := runner.Stats()
		return st.Done.Load()+st.Failed.Load() >= n
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	errs := errorEvents(t, ctx, cluster)
	if len(errs) != always {
		t.Errorf("%d jobs on the error topic, want %d", len(errs), always)
	}
	var lastFresh time.Time
	var firstRetry []time.Time
	for _, r := range recs {
		id := metaField(t, r.Value, "id")
		times := sc.times(id)
		want := map[int]int{0: 1, 1: 2, 2: 3}[kind[id]]
		if len(times) != want {
			t.Fatalf("job %s (kind %d) ran %d times, want %d", id, kind[id], len(times), want)
		}
		if _, onErr := errs[id]; onErr != (kind[id] == 2) {
			t.Fatalf("job %s (kind %d): on the error topic = %v", id, kind[id], onErr)
		}
		if times[0].After(lastFresh) {
			lastFresh = times[0]
		}
		if len(times) > 1 {
			firstRetry = append(firstRetry, times[1])
		}
	}
	// Retries ran while fresh jobs were still arriving: they did not wait
	// behind the backlog, nor did the backlog wait for them.
	sort.Slice(firstRetry, func(i, j int) bool { return firstRetry[i].Before(firstRetry[j]) })
	if len(firstRetry) == 0 || !firstRetry[0].Before(lastFresh) {
		t.Errorf("the first retry ran at %v, after the last fresh job (%v)", firstRetry[0], lastFresh)
	}
	t.Logf("%d jobs: %d failed once, %d always; retried %d", n, once, always, runner.Stats().Retried.Load())
	checkCommittedToEnd(t, ctx, cluster, "cpjobqueue-job", jobTopic)
}

// TestDelayedJobs: a job with delay_until runs at its time (within a
// second), whether the delay is shorter or longer than reenqueue_delay
// (3s here), while the 200 jobs behind it on its partition run at once.
func TestDelayedJobs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sc := newScript(func(string, int) (int, http.Header) { return 200, nil })
	cluster, cfg := retrySetup(t, 2, sc)
	gen := jobgen.New(24)
	gen.Now = time.Now
	runner, stop := startRunner(t, cfg, cfg.Rules[0])
	warm := gen.NextOfType("refreshLinks")
	if err := cluster.Produce(ctx, testkit.Record{Topic: jobTopic, Partition: 0, Value: warm}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the rule to run", func() bool { return sc.count(metaField(t, warm, "id")) == 1 })

	start := time.Now().Round(0) // wall clock, as the attempts' times
	delays := []time.Duration{2 * time.Second, 7 * time.Second}
	var recs []testkit.Record
	ids := map[string]time.Time{}
	for _, d := range delays {
		var ev map[string]any
		if err := json.Unmarshal(gen.NextOfType("refreshLinks"), &ev); err != nil {
			t.Fatal(err)
		}
		due := start.Add(d)
		ev["delay_until"] = due.UTC().Format(time.RFC3339Nano)
		v, _ := json.Marshal(ev)
		ids[metaField(t, v, "id")] = due
		recs = append(recs, testkit.Record{Topic: jobTopic, Partition: 0, Value: v})
	}
	var plain []string
	for range 200 {
		v := gen.NextOfType("refreshLinks")
		plain = append(plain, metaField(t, v, "id"))
		recs = append(recs, testkit.Record{Topic: jobTopic, Partition: 0, Value: v})
	}
	if err := cluster.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the plain jobs", func() bool {
		for _, id := range plain {
			if sc.count(id) == 0 {
				return false
			}
		}
		return true
	})
	for id := range ids {
		if sc.count(id) != 0 {
			t.Fatalf("delayed job %s ran before the plain jobs behind it were done", id)
		}
	}
	waitFor(t, ctx, "the delayed jobs", func() bool {
		for id := range ids {
			if sc.count(id) == 0 {
				return false
			}
		}
		return true
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for id, due := range ids {
		times := sc.times(id)
		if len(times) != 1 {
			t.Errorf("delayed job ran %d times", len(times))
			continue
		}
		if off := times[0].Sub(due); off < 0 || off > time.Second {
			t.Errorf("job due at %v ran at %v (%v off)", due.Format(time.StampMilli), times[0].Format(time.StampMilli), off)
		}
	}
	// The 7s job is produced again at 3s (4s to go) and at 6s (1s to go:
	// it then runs when due); the 2s job is never re-enqueued.
	if got := runner.Stats().Reenqueued.Load(); got != 2 {
		t.Errorf("re-enqueued %d times, want 2", got)
	}
	checkCommittedToEnd(t, ctx, cluster, "cpjobqueue-job", jobTopic)
}

// TestFatalProducerEndsRetriesAtOnce: once the producer has failed for
// good, a job that needs its retry event ends its pass at once (not
// finished, not committed: read again after the restart the service then
// makes) instead of retrying the produce forever on a worker.
func TestFatalProducerEndsRetriesAtOnce(t *testing.T) {
	const topic = "mediawiki.job.refreshLinks"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{topic: 2, "cpjobqueue.retry." + topic: 1}})
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{Respond: func(*http.Request, []byte) (int, http.Header, []byte, bool) {
		return 503, nil, nil, true
	}})
	cfg := loadRule(t, cluster.Addr(), "cooperative-sticky", topic, jr.URL())
	p := newProducer(t, cfg)
	kafka.InjectFatal(p, "injected for the test")
	select {
	case <-p.Fatal():
	case <-ctx.Done():
		t.Fatal("Fatal() was not closed")
	}
	if err := p.FatalError(); !errors.Is(err, dispatch.ErrFatal) {
		t.Fatalf("FatalError() = %v, want one wrapping dispatch.ErrFatal", err)
	}
	if err := p.ProduceAsync(topic, -1, nil, []byte(`{}`), func(error) {}); !errors.Is(err, dispatch.ErrFatal) {
		t.Fatalf("ProduceAsync after the fatal error = %v, want one wrapping dispatch.ErrFatal", err)
	}
	gen := jobgen.New(5)
	produceJobs(t, ctx, cluster, gen, topic, 2, 10)
	r, stop := startRunner(t, cfg, cfg.Rules[0], func(rc *dispatch.RunnerConfig) { rc.Producer = p })
	waitFor(t, ctx, "10 passes ended without their retry event", func() bool { return r.Stats().Cancelled.Load() >= 10 })
	if n := r.Stats().InFlight.Load(); n != 0 {
		t.Errorf("%d jobs still in flight: a worker retries the produce", n)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	committed, err := cluster.Committed(ctx, "cpjobqueue-job", topic)
	if err != nil {
		t.Fatal(err)
	}
	for part, off := range committed {
		if off > 0 {
			t.Errorf("%s/%d committed at %d: a job whose retry was not written counted as done", topic, part, off)
		}
	}
}
