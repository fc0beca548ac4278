package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"changeprop/breaker"
	"changeprop/dispatch"
	"changeprop/internal/jobgen"
	"changeprop/internal/testkit"
	"changeprop/rules"
)

// proxy forwards TCP connections to a backend and can go down (its port
// refuses connections) and come back on the same port.
type proxy struct {
	t       *testing.T
	addr    string
	backend string
	mu      sync.Mutex
	ln      net.Listener
	conns   map[net.Conn]bool
}

func newProxy(t *testing.T, backend string) *proxy {
	p := &proxy{t: t, backend: backend, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.down)
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", p.backend)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[b] = true, true
			p.mu.Unlock()
			go func() { _, _ = io.Copy(b, c); b.Close() }()
			go func() { _, _ = io.Copy(c, b); c.Close() }()
		}
	}()
}

// down closes the listener and every connection: requests fail at once.
func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *proxy) up() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy back up on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// transitions records breaker state changes.
type transitions struct {
	mu  sync.Mutex
	log []transition
}

type transition struct {
	dest     string
	from, to breaker.State
	at       time.Time
}

func (tr *transitions) option() breaker.Option {
	return breaker.OnStateChange(func(dest string, from, to breaker.State) {
		tr.mu.Lock()
		tr.log = append(tr.log, transition{dest, from, to, time.Now()})
		tr.mu.Unlock()
	})
}

func (tr *transitions) find(dest string, to breaker.State, after time.Time) (time.Time, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, x := range tr.log {
		if x.dest == dest && x.to == to && !x.at.Before(after) {
			return x.at, true
		}
	}
	return time.Time{}, false
}

func breakerSettings(r *rules.Rule) breaker.Settings {
	b := r.Breaker
	return breaker.Settings{FailureRatio: b.FailureRatio, MinRequests: b.MinRequests, Interval: b.Interval,
		OpenTimeout: b.OpenTimeout, HalfOpenRequests: b.HalfOpenRequests}
}

func withBreakers(set *breaker.Set) func(*dispatch.RunnerConfig) {
	return func(rc *dispatch.RunnerConfig) { rc.Breakers = set }
}

// TestJobRunnerDownPausesWithoutRetries takes the job runner away for 30s
// in the middle of a stream: nothing goes to the retry or error topics,
// nothing is lost, the breaker opens, and it closes within open_timeout
// (plus the half-open trial) of the runner coming back.
func TestJobRunnerDownPausesWithoutRetries(t *testing.T) {
	const n = 3000
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{jobTopic: 4, retryTopic: 4, errorTopic: 1}})
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{KeepBodies: true})
	px := newProxy(t, jr.URL()[len("http://"):])
	cfg, err := rules.Load(fmt.Appendf(nil, `
service_name: cpjobqueue
kafka:
  brokers: %s
  consumer: {auto.offset.reset: earliest}
  commit_interval: 100ms
rules:
  job:
    topic: mediawiki.job.refreshLinks
    concurrency: 20
    retry_delay: 100ms
    breaker: {failure_ratio: 0.5, min_requests: 5, interval: 10s, open_timeout: 2s, half_open_requests: 2}
    exec:
      method: post
      uri: 'http://%s/rpc/RunSingleJob.php'
      headers: {content-type: application/json}
      body: '{{globals.message}}'
`, cluster.Addr(), px.addr), nil)
	if err != nil {
		t.Fatal(err)
	}
	var tr transitions
	set := breaker.NewSet(breakerSettings(cfg.Rules[0]), tr.option())
	gen := jobgen.New(31)
	var ids []string
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < n; i += 100 {
			ids = append(ids, produceJobs(t, ctx, cluster, gen, jobTopic, 4, 100)...)
			<-tick.C
		}
	}()
	runner, stop := startRunner(t, cfg, cfg.Rules[0], withBreakers(set))
	waitFor(t, ctx, "1,000 jobs", func() bool { return jr.Succeeded() >= 1000 })
	px.down()
	downAt := time.Now()
	dest := "http://" + px.addr
	waitFor(t, ctx, "the breaker to open", func() bool { _, ok := tr.find(dest, breaker.Open, downAt); return ok })
	outage := time.NewTimer(30*time.Second - time.Since(downAt))
	<-outage.C
	px.up()
	upAt := time.Now()
	closedAt := time.Time{}
	waitFor(t, ctx, "the breaker to close", func() bool {
		var ok bool
		closedAt, ok = tr.find(dest, breaker.Closed, upAt)
		return ok
	})
	<-produced
	waitDelivered(t, ctx, "every job", jr, ids)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if took := closedAt.Sub(upAt); took > 2*time.Second+time.Second {
		t.Errorf("breaker closed %v after the runner came back; open_timeout is 2s", took)
	}
	for _, topic := range []string{retryTopic, errorTopic} {
		if recs, err := cluster.ReadAll(ctx, topic); err != nil || len(recs) != 0 {
			t.Errorf("%s holds %d events (%v), want none", topic, len(recs), err)
			for _, r := range recs {
				t.Logf("%s", r.Value[max(0, len(r.Value)-300):])
			}
		}
	}
	st := runner.Stats()
	t.Logf("breaker closed %v after recovery; %d deliveries for %d jobs; %d passes waited",
		closedAt.Sub(upAt), jr.Succeeded(), n, st.Delayed.Load())
	checkCommittedToEnd(t, ctx, cluster, "cpjobqueue-job", jobTopic)
}

// wikiJob is a small job event for one wiki with a sequence number.
func wikiJob(db string, seq int) []byte {
	return fmt.Appendf(nil, `{"$schema":"/mediawiki/job/1.0.0","meta":{"uri":"https://%s.example/wiki/J","request_id":"r-%s-%d","id":"%s-%d","dt":"%s","domain":"%s.example","stream":"mediawiki.job.refreshLinks"},"database":"%s","type":"refreshLinks","params":{"seq":%d}}`,
		db, db, seq, db, seq, time.Now().UTC().Format(time.RFC3339), db, db, seq)
}

// perWiki counts requests in flight per wiki at the job runner emulator.
type perWiki struct {
	mu       sync.Mutex
	inflight map[string]int
	max      map[string]int
	order    map[string][]int
	total    atomic.Int64
	maxAll   atomic.Int64
	latency  time.Duration
	fail     func(db string) bool
}

func newPerWiki(latency time.Duration) *perWiki {
	return &perWiki{inflight: map[string]int{}, max: map[string]int{}, order: map[string][]int{}, latency: latency}
}

func (w *perWiki) respond(r *http.Request, body []byte) (int, http.Header, []byte, bool) {
	var ev struct {
		Database string
		Params   struct{ Seq int }
	}
	_ = json.Unmarshal(body, &ev)
	db := ev.Database
	w.mu.Lock()
	w.inflight[db]++
	w.max[db] = max(w.max[db], w.inflight[db])
	w.order[db] = append(w.order[db], ev.Params.Seq)
	w.mu.Unlock()
	all := w.total.Add(1)
	for {
		m := w.maxAll.Load()
		if all <= m || w.maxAll.CompareAndSwap(m, all) {
			break
		}
	}
	if w.latency > 0 {
		t := time.NewTimer(w.latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
	}
	w.total.Add(-1)
	w.mu.Lock()
	w.inflight[db]--
	w.mu.Unlock()
	if w.fail != nil && w.fail(db) {
		return 500, nil, []byte(`{"error":"broken wiki"}`), true
	}
	return 200, nil, []byte(`{"status":"ok"}`), true
}

func (w *perWiki) maxOf(db string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.max[db]
}

func (w *perWiki) resetMax() {
	w.mu.Lock()
	defer w.mu.Unlock()
	clear(w.max)
}

// TestOrderedPerKey: with ordered: true, the job runner sees each wiki's
// jobs one at a time in offset order, while different wikis run in
// parallel.
func TestOrderedPerKey(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{jobTopic: 1}})
	w := newPerWiki(2 * time.Millisecond)
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{Respond: w.respond})
	cfg, err := rules.Load(fmt.Appendf(nil, `
service_name: cpjobqueue
kafka:
  brokers: %s
  consumer: {auto.offset.reset: earliest}
rules:
  job:
    topic: mediawiki.job.refreshLinks
    concurrency: 20
    concurrency_key: '{{message.database}}'
    ordered: true
    exec: {method: post, uri: '%s/rpc/RunSingleJob.php', body: '{{globals.message}}'}
`, cluster.Addr(), jr.URL()), nil)
	if err != nil {
		t.Fatal(err)
	}
	wikis := []string{"enwiki", "dewiki", "frwiki", "jawiki", "eswiki"}
	var recs []testkit.Record
	for i := 0; i < 500; i++ {
		recs = append(recs, testkit.Record{Topic: jobTopic, Partition: 0, Value: wikiJob(wikis[i%len(wikis)], i)})
	}
	if err := cluster.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	_, stop := startRunner(t, cfg, cfg.Rules[0])
	if err := jr.WaitFor(ctx, 500); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, db := range wikis {
		if w.max[db] != 1 {
			t.Errorf("%s: %d jobs at once, want 1", db, w.max[db])
		}
		seqs := w.order[db]
		for i := 1; i < len(seqs); i++ {
			if seqs[i] < seqs[i-1] {
				t.Fatalf("%s: job %d ran after job %d", db, seqs[i], seqs[i-1])
			}
		}
	}
	if got := w.maxAll.Load(); got < 2 {
		t.Errorf("at most %d jobs at once over all wikis: keys did not run in parallel", got)
	}
}

// TestPerKeyBreakerIsolatesAWiki: one wiki whose every job fails, with a
// per-key breaker ('{{message.database}}'): its breaker opens, its jobs
// are parked on the retry topic, and the other wikis keep flowing. The
// other wikis' throughput is compared with a run without the broken wiki.
func TestPerKeyBreakerIsolatesAWiki(t *testing.T) {
	const perWikiJobs = 400
	wikis := []string{"enwiki", "dewiki", "frwiki", "jawiki"}
	run := func(t *testing.T, broken bool) (time.Duration, *transitions, *testkit.Cluster, *dispatch.Runner) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{jobTopic: 4, retryTopic: 4, errorTopic: 1}})
		w := newPerWiki(5 * time.Millisecond)
		w.fail = func(db string) bool { return db == "badwiki" }
		jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{Respond: w.respond})
		cfg, err := rules.Load(fmt.Appendf(nil, `
service_name: cpjobqueue
kafka:
  brokers: %s
  consumer: {auto.offset.reset: earliest}
rules:
  job:
    topic: mediawiki.job.refreshLinks
    concurrency: 20
    retry_delay: 200ms
    breaker: {key: '{{message.database}}', min_requests: 5, failure_ratio: 0.5, open_timeout: 5s, half_open_requests: 1}
    exec: {method: post, uri: '%s/rpc/RunSingleJob.php', body: '{{globals.message}}'}
`, cluster.Addr(), jr.URL()), nil)
		if err != nil {
			t.Fatal(err)
		}
		var tr transitions
		set := breaker.NewSet(breakerSettings(cfg.Rules[0]), tr.option())
		var recs []testkit.Record
		for i := 0; i < perWikiJobs; i++ {
			for _, db := range wikis {
				recs = append(recs, testkit.Record{Topic: jobTopic, Partition: int32(i % 4), Value: wikiJob(db, i)})
			}
			if broken {
				recs = append(recs, testkit.Record{Topic: jobTopic, Partition: int32(i % 4), Value: wikiJob("badwiki", i)})
			}
		}
		if err := cluster.Produce(ctx, recs...); err != nil {
			t.Fatal(err)
		}
		runner, stop := startRunner(t, cfg, cfg.Rules[0], withBreakers(set))
		start := time.Now()
		waitFor(t, ctx, "the healthy wikis' jobs", func() bool {
			return runner.Stats().Done.Load() >= int64(perWikiJobs*len(wikis))
		})
		took := time.Since(start)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		return took, &tr, cluster, runner
	}
	base, _, _, _ := run(t, false)
	took, tr, cluster, runner := run(t, true)
	if _, ok := tr.find("job:badwiki", breaker.Open, time.Time{}); !ok {
		t.Error("badwiki's breaker never opened")
	}
	for _, db := range wikis {
		if _, ok := tr.find("job:"+db, breaker.Open, time.Time{}); ok {
			t.Errorf("%s's breaker opened", db)
		}
	}
	if recs, _ := cluster.ReadAll(context.Background(), retryTopic); len(recs) == 0 {
		t.Error("badwiki's jobs were not parked on the retry topic")
	}
	t.Logf("healthy wikis: %v alone, %v beside a broken wiki: %.0f%% of their throughput; %d passes parked or retried",
		base, took, 100*base.Seconds()/took.Seconds(), runner.Stats().Retried.Load())
}

// TestRateLimitPerKey: rate_limit {rate: 20, burst: 1, key: database} lets
// each wiki's jobs through at 20 a second, waiting without holding a slot:
// another wiki's jobs are not held back by it.
func TestRateLimitPerKey(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{jobTopic: 1}})
	w := newPerWiki(0)
	var mu sync.Mutex
	arrivals := map[string][]time.Time{}
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{Respond: func(r *http.Request, body []byte) (int, http.Header, []byte, bool) {
		var ev struct{ Database string }
		_ = json.Unmarshal(body, &ev)
		mu.Lock()
		arrivals[ev.Database] = append(arrivals[ev.Database], time.Now())
		mu.Unlock()
		return w.respond(r, body)
	}})
	cfg, err := rules.Load(fmt.Appendf(nil, `
service_name: cpjobqueue
kafka:
  brokers: %s
  consumer: {auto.offset.reset: earliest}
rules:
  job:
    topic: mediawiki.job.refreshLinks
    concurrency: 10
    concurrency_key: '{{message.database}}'
    rate_limit: {rate: 20, burst: 1}
    exec: {method: post, uri: '%s/rpc/RunSingleJob.php', body: '{{globals.message}}'}
`, cluster.Addr(), jr.URL()), nil)
	if err != nil {
		t.Fatal(err)
	}
	var recs []testkit.Record
	for i := range 40 {
		recs = append(recs, testkit.Record{Topic: jobTopic, Partition: 0, Value: wikiJob("enwiki", i)})
	}
	for i := range 40 {
		recs = append(recs, testkit.Record{Topic: jobTopic, Partition: 0, Value: wikiJob("dewiki", i)})
	}
	if err := cluster.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	_, stop := startRunner(t, cfg, cfg.Rules[0])
	if err := jr.WaitFor(ctx, 80); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, db := range []string{"enwiki", "dewiki"} {
		a := arrivals[db]
		// 40 jobs at 20/s with a burst of 1 take at least 39/20 s: the
		// token bucket guarantees this lower bound.
		if span := a[len(a)-1].Sub(a[0]); span < 1900*time.Millisecond {
			t.Errorf("%s: 40 jobs within %v, faster than 20/s", db, span)
		}
	}
	// dewiki's jobs, read after all of enwiki's, did not wait for them:
	// both wikis ran side by side.
	if !arrivals["dewiki"][0].Before(arrivals["enwiki"][len(arrivals["enwiki"])-1]) {
		t.Error("dewiki's first job waited for enwiki's rate-limited jobs")
	}
}
