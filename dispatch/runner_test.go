package dispatch

import (
	"context"
	"fmt"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"changeprop/rules"
)

// fakeSource is a Source over in-memory partitions, for tests of the
// Runner's own logic. Poll serves the unpaused partitions in turn.
type fakeSource struct {
	mu        sync.Mutex
	parts     map[TopicPartition][]*Message
	paused    map[TopicPartition]bool
	assigned  bool
	rl        RebalanceListener
	polls     int
	commits   []Offset
	committed map[TopicPartition]int64
	pos       map[TopicPartition]int
	wake      chan struct{}
	closed    bool
	pauses    map[TopicPartition]int // Pause calls per partition
	// rebalance, when set, is run once by the next Poll (on the poll
	// goroutine, as a client runs its rebalance callbacks).
	rebalance chan func(RebalanceListener)
}

func newFakeSource() *fakeSource {
	return &fakeSource{
		parts: map[TopicPartition][]*Message{}, paused: map[TopicPartition]bool{},
		committed: map[TopicPartition]int64{}, pos: map[TopicPartition]int{}, wake: make(chan struct{}, 1),
		rebalance: make(chan func(RebalanceListener), 1),
	}
}

func (f *fakeSource) add(tp TopicPartition, values ...string) {
	f.mu.Lock()
	for _, v := range values {
		off := int64(len(f.parts[tp]))
		f.parts[tp] = append(f.parts[tp], &Message{TopicPartition: tp, Offset: off, Value: []byte(v)})
	}
	f.mu.Unlock()
}

func (f *fakeSource) Subscribe(_ []string, rl RebalanceListener) error { f.rl = rl; return nil }

func (f *fakeSource) Poll(timeout time.Duration) (*Message, error) {
	if !f.assigned {
		f.assigned = true
		var tps []TopicPartition
		f.mu.Lock()
		for tp := range f.parts {
			tps = append(tps, tp)
		}
		f.mu.Unlock()
		f.rl.Assigned(tps)
	}
	select {
	case fn := <-f.rebalance:
		fn(f.rl)
	default:
	}
	f.mu.Lock()
	f.polls++
	for tp, msgs := range f.parts {
		if f.paused[tp] {
			continue
		}
		if pos := f.pos[tp]; pos < len(msgs) {
			m := msgs[pos]
			f.pos[tp] = pos + 1
			f.mu.Unlock()
			return m, nil
		}
	}
	f.mu.Unlock()
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-t.C:
		case <-f.wake:
		}
	}
	return nil, nil
}

func (f *fakeSource) Topics(time.Duration) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for tp := range f.parts {
		out = append(out, tp.Topic)
	}
	return out, nil
}

func (f *fakeSource) Pause(tps []TopicPartition) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, tp := range tps {
		f.paused[tp] = true
		if f.pauses == nil {
			f.pauses = map[TopicPartition]int{}
		}
		f.pauses[tp]++
	}
	return nil
}

func (f *fakeSource) pauseCount(tp TopicPartition) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pauses[tp]
}

func (f *fakeSource) Resume(tps []TopicPartition) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, tp := range tps {
		f.paused[tp] = false
	}
	return nil
}

func (f *fakeSource) Commit(offs []Offset) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commits = append(f.commits, offs...)
	for _, o := range offs {
		f.committed[o.TopicPartition] = o.Offset
	}
	return nil
}

// Store commits at once, like a Source without background commits.
func (f *fakeSource) Store(offs []Offset) error { return f.Commit(offs) }

func (f *fakeSource) HighWatermark(tp TopicPartition) (int64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return int64(len(f.parts[tp])), true
}

func (f *fakeSource) Close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	return nil
}

func (f *fakeSource) snapshot() (polls int, paused bool, committed int64, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for tp := range f.parts {
		paused = paused || f.paused[tp]
		committed, ok = f.committed[tp]
	}
	return f.polls, paused, committed, ok
}

// runAsync runs r on a goroutine of its own; cancel ends it, and errc
// then gives Run's error.
func runAsync(r *Runner) (cancel context.CancelFunc, errc <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	c := make(chan error, 1)
	go func() { c <- r.Run(ctx) }()
	return cancel, c
}

// slowAndFast is a source of two partitions of topic jobs, "slow" (0) and
// "fast" (1), with nSlow and nFast jobs whose ids start with their name.
func slowAndFast(nSlow, nFast int) (src *fakeSource, slow, fast TopicPartition) {
	src = newFakeSource()
	slow, fast = TopicPartition{Topic: "jobs", Partition: 0}, TopicPartition{Topic: "jobs", Partition: 1}
	for i := range nSlow {
		src.add(slow, jobJSON(fmt.Sprint("slow", i)))
	}
	for i := range nFast {
		src.add(fast, jobJSON(fmt.Sprint("fast", i)))
	}
	return src, slow, fast
}

// gateSender holds every request until the test releases it by the
// event's meta.id.
type gateSender struct {
	mu       sync.Mutex
	gates    map[string]chan int
	started  chan string
	inflight int
	maxIn    int
}

func newGateSender() *gateSender {
	return &gateSender{gates: map[string]chan int{}, started: make(chan string, 100)}
}

func (g *gateSender) gate(id string) chan int {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.gates[id]
	if !ok {
		c = make(chan int, 1)
		g.gates[id] = c
	}
	return c
}

func (g *gateSender) Send(ctx context.Context, req *rules.Request) (*Response, error) {
	id := string(req.URI[len("http://runner/job/"):])
	g.mu.Lock()
	g.inflight++
	g.maxIn = max(g.maxIn, g.inflight)
	g.mu.Unlock()
	defer func() { g.mu.Lock(); g.inflight--; g.mu.Unlock() }()
	g.started <- id
	select {
	case status := <-g.gate(id):
		return &Response{Status: status}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func testRule(t *testing.T, concurrency int, extra ...string) *rules.Rule {
	t.Helper()
	cfg, err := rules.Load([]byte(fmt.Sprintf(`
service_name: test
kafka: {brokers: 127.0.0.1:1}
rules:
  job:
    topic: jobs
    concurrency: %d
    %s
    exec:
      method: post
      uri: http://runner/job/{message.meta.id}
`, concurrency, strings.Join(extra, "\n    "))), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Rules[0]
}

func jobJSON(id string) string {
	return fmt.Sprintf(`{"meta":{"id":%q,"stream":"jobs","uri":"https://x/%s","request_id":"r-%s"},"type":"t"}`, id, id, id)
}

// waitUntil polls cond with a ticker until it holds or the test times out.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestRunnerWaitsInPollWithFreeSlots: with a job in flight, free slots and
// nothing waiting for a completion, the loop waits in the client, which
// hands it a message as soon as one comes, rather than waking every
// pollWait to look again.
func TestRunnerWaitsInPollWithFreeSlots(t *testing.T) {
	src := newFakeSource()
	tp := TopicPartition{Topic: "jobs", Partition: 0}
	src.add(tp, jobJSON("a"))
	snd := newGateSender()
	r := NewRunner(RunnerConfig{
		Rule: testRule(t, 3), Topics: []string{"jobs"}, Source: src, Sender: snd,
		CommitInterval: time.Second, Log: zerolog.Nop(),
	})
	cancel, errc := runAsync(r)
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}()
	if id := <-snd.started; id != "a" {
		t.Fatalf("started %q, want a", id)
	}
	p0, _, _, _ := src.snapshot()
	const quiet = 300 * time.Millisecond
	time.Sleep(quiet)
	p1, _, _, _ := src.snapshot()
	// Waking every pollWait (5 ms) polls about 60 times; waiting in Poll
	// (100 ms) 3 or 4 times.
	if n := p1 - p0; n > 15 {
		t.Errorf("%d polls in %v with one job in flight and nothing to read", n, quiet)
	}
	src.add(tp, jobJSON("b"))
	src.wake <- struct{}{} // the client has a message: Poll returns
	select {
	case id := <-snd.started:
		if id != "b" {
			t.Fatalf("started %q, want b", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b did not start while a was in flight")
	}
	snd.gate("a") <- 200
	snd.gate("b") <- 200
	waitUntil(t, "both committed", func() bool {
		_, _, committed, ok := src.snapshot()
		return ok && committed == 2
	})
}

// TestRunnerCommitsOnlyFinishedRun checks the heart of the offset
// discipline: with events finishing out of order, the committed offset is
// the end of the contiguous run of finished events, never past an
// unfinished one; when the rule is full its partition is paused while Poll
// keeps being called.
func TestRunnerCommitsOnlyFinishedRun(t *testing.T) {
	src := newFakeSource()
	tp := TopicPartition{Topic: "jobs", Partition: 0}
	for i := range 6 {
		src.add(tp, jobJSON(fmt.Sprint(i)))
	}
	snd := newGateSender()
	r := NewRunner(RunnerConfig{
		Rule: testRule(t, 3), Topics: []string{"jobs"}, Source: src, Sender: snd,
		CommitInterval: time.Millisecond, MaxBacklog: 2, Log: zerolog.Nop(),
	})
	cancel, errc := runAsync(r)

	started := map[string]bool{}
	for range 3 {
		started[<-snd.started] = true
	}
	if !started["0"] || !started["1"] || !started["2"] {
		t.Fatalf("first three started = %v, want 0, 1, 2", started)
	}
	// Full (3 in flight, the read-ahead of 2 taken): the loop stops taking
	// messages but still polls the client now and then to serve the group.
	polls, _, _, _ := src.snapshot()
	waitUntil(t, "further polls while full", func() bool {
		p, _, _, _ := src.snapshot()
		return p >= polls+2
	})
	if got := r.Stats().Consumed.Load(); got > 6 {
		t.Fatalf("read %d messages with 3 in flight and a read-ahead of 2", got)
	}
	// 2 and 1 finish before 0: nothing may be committed.
	snd.gate("2") <- 200
	snd.gate("1") <- 200
	// Their slots go to 3 and 4.
	started[<-snd.started] = true
	started[<-snd.started] = true
	if !started["3"] || !started["4"] {
		t.Fatalf("started = %v, want 3 and 4 too", started)
	}
	// Committing 0 (where reading started) is allowed; anything past it is not.
	if _, _, c, ok := src.snapshot(); ok && c > 0 {
		t.Fatalf("committed %d while offset 0 is unfinished", c)
	}
	// 0 finishes: the run 0..2 is done, 3 and 4 are in flight.
	snd.gate("0") <- 200
	waitUntil(t, "commit of 3", func() bool { _, _, c, ok := src.snapshot(); return ok && c == 3 })
	for _, id := range []string{"4", "3"} {
		snd.gate(id) <- 200
	}
	<-snd.started // 5
	snd.gate("5") <- 200
	waitUntil(t, "commit of 6", func() bool { _, _, c, ok := src.snapshot(); return ok && c == 6 })

	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run = %v", err)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	last := int64(-1)
	for _, c := range src.commits {
		if c.Offset < last {
			t.Errorf("commits went backwards: %v", src.commits)
		}
		last = c.Offset
	}
	if snd.maxIn > 3 {
		t.Errorf("max in flight = %d, want <= 3", snd.maxIn)
	}
	if !src.closed {
		t.Error("source not closed")
	}
	if got := r.Stats().Done.Load(); got != 6 {
		t.Errorf("done = %d, want 6", got)
	}
}

// TestRunnerShutdownWaitsForInFlight: on shutdown, in-flight events finish
// and are committed; events that had not started are not.
func TestRunnerShutdownWaitsForInFlight(t *testing.T) {
	src := newFakeSource()
	tp := TopicPartition{Topic: "jobs", Partition: 0}
	for i := range 5 {
		src.add(tp, jobJSON(fmt.Sprint(i)))
	}
	snd := newGateSender()
	r := NewRunner(RunnerConfig{
		Rule: testRule(t, 2), Topics: []string{"jobs"}, Source: src, Sender: snd,
		CommitInterval: time.Hour, ShutdownTimeout: 10 * time.Second, Log: zerolog.Nop(),
	})
	cancel, errc := runAsync(r)
	<-snd.started
	<-snd.started
	cancel()
	// Still in flight after the cancel: Run must wait for them.
	select {
	case err := <-errc:
		t.Fatalf("Run returned %v before in-flight events finished", err)
	case <-time.After(50 * time.Millisecond):
	}
	snd.gate("0") <- 200
	snd.gate("1") <- 200
	if err := <-errc; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if _, _, c, ok := src.snapshot(); !ok || c != 2 {
		t.Fatalf("committed = %d (%v), want 2", c, ok)
	}
}

// TestRunnerShutdownDeadlineAbandons: past ShutdownTimeout, in-flight
// events are cancelled and not committed.
func TestRunnerShutdownDeadlineAbandons(t *testing.T) {
	src := newFakeSource()
	tp := TopicPartition{Topic: "jobs", Partition: 0}
	src.add(tp, jobJSON("0"), jobJSON("1"))
	snd := newGateSender()
	r := NewRunner(RunnerConfig{
		Rule: testRule(t, 2), Topics: []string{"jobs"}, Source: src, Sender: snd,
		CommitInterval: time.Hour, ShutdownTimeout: 20 * time.Millisecond, Log: zerolog.Nop(),
	})
	cancel, errc := runAsync(r)
	<-snd.started
	<-snd.started
	snd.gate("1") <- 200
	waitUntil(t, "1 done", func() bool { return r.Stats().Done.Load() == 1 })
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if _, _, c, ok := src.snapshot(); ok && c > 0 {
		t.Fatalf("committed %d although offset 0 was abandoned", c)
	}
	if got := r.Stats().Cancelled.Load(); got != 1 {
		t.Fatalf("abandoned = %d, want 1", got)
	}
}

// hangingSource is a fakeSource whose Commit and Close never return once
// hang is closed, as librdkafka's do when the brokers are gone.
type hangingSource struct {
	*fakeSource
	hang    chan struct{}
	blocked chan struct{} // never closed: what a hung call waits on
}

func (h *hangingSource) Commit(offs []Offset) error {
	select {
	case <-h.hang:
		<-h.blocked
	default:
	}
	return h.fakeSource.Commit(offs)
}

// Store is the background commit: it returns at once.
func (h *hangingSource) Store(offs []Offset) error { return h.fakeSource.Commit(offs) }

func (h *hangingSource) Close() error {
	select {
	case <-h.hang:
		<-h.blocked
	default:
	}
	return h.fakeSource.Close()
}

// okSender answers every request with 200.
type okSender struct{}

func (okSender) Send(context.Context, *rules.Request) (*Response, error) {
	return &Response{Status: 200}, nil
}

// TestRunnerShutdownDoesNotWaitForAHungClient: with the final commit and
// the close hanging, Run still returns, with an error, after CloseTimeout.
func TestRunnerShutdownDoesNotWaitForAHungClient(t *testing.T) {
	src := &hangingSource{fakeSource: newFakeSource(), hang: make(chan struct{}), blocked: make(chan struct{})}
	tp := TopicPartition{Topic: "jobs", Partition: 0}
	src.add(tp, jobJSON("0"), jobJSON("1"))
	r := NewRunner(RunnerConfig{
		Rule: testRule(t, 2), Topics: []string{"jobs"}, Source: src, Sender: okSender{},
		CommitInterval: time.Hour, CloseTimeout: 50 * time.Millisecond, Log: zerolog.Nop(),
	})
	cancel, errc := runAsync(r)
	waitUntil(t, "2 done", func() bool { return r.Stats().Done.Load() == 2 })
	close(src.hang)
	cancel()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "did not finish within 50ms") {
			t.Fatalf("Run = %v, want the close timeout", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not return: it waits for the hung commit")
	}
}

// TestPartitionConcurrency: a partition whose events hang takes at most
// partition_concurrency slots; the rule's other partitions keep flowing.
func TestPartitionConcurrency(t *testing.T) {
	src, _, fast := slowAndFast(10, 50)
	snd := newGateSender()
	r := NewRunner(RunnerConfig{
		Rule: testRule(t, 4, "partition_concurrency: 2"), Topics: []string{"jobs"}, Source: src, Sender: snd,
		CommitInterval: time.Millisecond, ShutdownTimeout: time.Millisecond, Log: zerolog.Nop(),
	})
	cancel, errc := runAsync(r)
	fastDone := 0
	for fastDone < 50 {
		id := <-snd.started
		if strings.HasPrefix(id, "fast") {
			snd.gate(id) <- 200
			fastDone++
		}
	}
	waitUntil(t, "fast partition committed to its end", func() bool {
		src.mu.Lock()
		defer src.mu.Unlock()
		return src.committed[fast] == 50
	})
	snd.mu.Lock()
	maxIn := snd.maxIn
	snd.mu.Unlock()
	if maxIn > 4 {
		t.Errorf("%d in flight, rule concurrency is 4", maxIn)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got := r.Stats().Cancelled.Load(); got != 2 {
		t.Errorf("abandoned %d slow events at shutdown, want the 2 partition_concurrency allowed in flight", got)
	}
}

// TestReadAheadPausesOnlyAStuckPartition: a partition whose jobs fill
// most of the read-ahead while they cannot start (partition_concurrency
// reached, the rule with room) is paused so that the others are read; a
// partition that is only busy, the rule full of its jobs, is not.
func TestReadAheadPausesOnlyAStuckPartition(t *testing.T) {
	t.Run("stuck", func(t *testing.T) {
		src, slow, fast := slowAndFast(20, 30)
		snd := newGateSender()
		r := NewRunner(RunnerConfig{
			Rule: testRule(t, 4, "partition_concurrency: 2"), Topics: []string{"jobs"}, Source: src, Sender: snd,
			CommitInterval: time.Millisecond, MaxBacklog: 8, ShutdownTimeout: time.Millisecond, Log: zerolog.Nop(),
		})
		cancel, errc := runAsync(r)
		go func() {
			for id := range snd.started {
				if strings.HasPrefix(id, "fast") {
					snd.gate(id) <- 200
				}
			}
		}()
		waitUntil(t, "the fast partition done", func() bool {
			src.mu.Lock()
			defer src.mu.Unlock()
			return src.committed[fast] == 30
		})
		if src.pauseCount(slow) == 0 {
			t.Error("the stuck partition was never paused")
		}
		if n := src.pauseCount(fast); n != 0 {
			t.Errorf("the fast partition was paused %d times", n)
		}
		cancel()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("busy", func(t *testing.T) {
		src := newFakeSource()
		hot := TopicPartition{Topic: "jobs", Partition: 0}
		src.parts[TopicPartition{Topic: "jobs", Partition: 1}] = nil // assigned, empty
		for i := range 40 {
			src.add(hot, jobJSON(fmt.Sprint(i)))
		}
		snd := newGateSender()
		r := NewRunner(RunnerConfig{
			Rule: testRule(t, 2), Topics: []string{"jobs"}, Source: src, Sender: snd,
			CommitInterval: time.Millisecond, MaxBacklog: 8, Log: zerolog.Nop(),
		})
		cancel, errc := runAsync(r)
		// The rule full (2 in flight), the read-ahead full of the hot
		// partition's jobs: it waits, unpaused.
		first := []string{<-snd.started, <-snd.started}
		waitUntil(t, "the read-ahead full", func() bool { return r.Stats().Consumed.Load() >= 2+8 })
		if n := src.pauseCount(hot); n != 0 {
			t.Fatalf("the busy partition was paused %d times with the rule full", n)
		}
		for _, id := range first {
			snd.gate(id) <- 200
		}
		for range 38 {
			snd.gate(<-snd.started) <- 200
		}
		waitUntil(t, "every job done", func() bool {
			src.mu.Lock()
			defer src.mu.Unlock()
			return src.committed[hot] == 40
		})
		if n := src.pauseCount(hot); n != 0 {
			t.Errorf("the busy partition was paused %d times", n)
		}
		cancel()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	})
}

// TestRunnerWorkers: a worker per job in flight at the busiest moment,
// reused for later jobs; the idle ones are retired at the following
// commits, and none is left once Run has returned.
func TestRunnerWorkers(t *testing.T) {
	src := newFakeSource()
	tp := TopicPartition{Topic: "jobs", Partition: 0}
	for i := range 8 {
		src.add(tp, jobJSON(fmt.Sprint(i)))
	}
	snd := newGateSender()
	r := NewRunner(RunnerConfig{
		Rule: testRule(t, 8), Topics: []string{"jobs"}, Source: src, Sender: snd,
		CommitInterval: time.Millisecond, Log: zerolog.Nop(),
	})
	cancel, errc := runAsync(r)
	for range 8 {
		<-snd.started
	}
	if n := countWorkers(); n != 8 {
		t.Errorf("%d workers with 8 jobs in flight, want 8", n)
	}
	for i := range 8 {
		snd.gate(fmt.Sprint(i)) <- 200
	}
	waitUntil(t, "idle workers retired", func() bool { return countWorkers() == 0 })
	// A later job gets a worker again.
	src.add(tp, jobJSON("8"))
	<-snd.started
	if n := countWorkers(); n != 1 {
		t.Errorf("%d workers for one job, want 1", n)
	}
	snd.gate("8") <- 200
	waitUntil(t, "all done", func() bool { return r.Stats().Done.Load() == 9 })
	src.add(tp, jobJSON("9"))
	<-snd.started
	cancel() // 9 is in flight
	snd.gate("9") <- 200
	if err := <-errc; err != nil {
		t.Fatalf("Run = %v", err)
	}
	waitUntil(t, "no worker after Run", func() bool { return countWorkers() == 0 })
}

// countWorkers counts the goroutines running Runner.work.
func countWorkers() int {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	return strings.Count(b.String(), "dispatch.(*Runner).work(")
}

// TestLostPartitionsLeaveNoReadAhead: partitions lost with a full
// read-ahead (a session timeout) and assigned again are read at full speed:
// the lost read-ahead no longer counts against the rule's (it held the
// loop at one message per holdPoll for good).
func TestLostPartitionsLeaveNoReadAhead(t *testing.T) {
	src := newFakeSource()
	tp := TopicPartition{Topic: "jobs", Partition: 0}
	const n = 40
	for i := range n {
		src.add(tp, jobJSON(fmt.Sprint(i)))
	}
	snd := newGateSender()
	snd.started = make(chan string, 2*n)
	r := NewRunner(RunnerConfig{
		Rule: testRule(t, 2), Topics: []string{"jobs"}, Source: src, Sender: snd,
		CommitInterval: time.Millisecond, MaxBacklog: 4, ShutdownTimeout: time.Second, Log: zerolog.Nop(),
	})
	cancel, errc := runAsync(r)
	first := []string{<-snd.started, <-snd.started}
	waitUntil(t, "the read-ahead full", func() bool { return r.Stats().Consumed.Load() >= 2+4 })
	lost := make(chan struct{})
	src.rebalance <- func(rl RebalanceListener) {
		rl.Revoked([]TopicPartition{tp}, true)
		src.mu.Lock()
		src.pos[tp] = int(src.committed[tp]) // the next owner reads from the commit
		src.mu.Unlock()
		rl.Assigned([]TopicPartition{tp})
		close(lost)
	}
	<-lost
	for _, id := range first {
		snd.gate(id) <- 200
	}
	go func() {
		for id := range snd.started {
			snd.gate(id) <- 200
		}
	}()
	// Every job of the partition, read again from the commit, is done (a
	// held loop takes one message per holdPoll: 10 s here), and nothing is
	// left counted.
	waitUntil(t, "every job done after the loss", func() bool {
		src.mu.Lock()
		defer src.mu.Unlock()
		return src.committed[tp] == n
	})
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if r.backlogN != 0 {
		t.Errorf("%d jobs counted in the read-ahead after shutdown, want 0", r.backlogN)
	}
}
