package dispatch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"changeprop/breaker"
	"changeprop/dispatch/dedupe"
	"changeprop/partition"
	"changeprop/rules"
)

// RunnerConfig is what one rule's Runner needs. Zero durations take the
// defaults noted on each field.
type RunnerConfig struct {
	Rule *rules.Rule
	// Topics is a fixed subscription: topic names, dc prefix applied.
	Topics []string
	// Resolve, when set, makes the subscription follow the cluster: every
	// TopicRefresh the Runner lists the cluster's topics and subscribes to
	// Resolve(all topics). This is how /regex/ topics and exclude_topics
	// work, new topics included.
	Resolve      func(all []string) []string
	TopicRefresh time.Duration // default 30s
	Source       Source
	Sender       Sender
	// Producer writes error events (and everything else the rule produces).
	Producer Producer
	// Breakers guard the rule's destinations; nil means none.
	Breakers *breaker.Set
	// Dedupe is the deduplication store; nil means none.
	Dedupe dedupe.Store
	// Limiter is the blacklist limiter of rules with limiters; nil means none.
	Limiter dedupe.Limiter
	// Metrics receives the rule's observations; nil means none.
	Metrics *Metrics
	// AllowHost, when set, is asked about every expanded request's host and
	// host header (allowed_hosts); a request it refuses is not sent and its
	// event goes to the error topic.
	AllowHost func(hostport string) bool
	// Limits bound the events read and the requests expanded
	// (MaxEventBytes, MaxRequestBytes, MaxHeaderBytes; zero is no bound):
	// an event over them goes to the error topic. The response bounds are
	// the Sender's.
	Limits rules.Limits
	// MaxProduceBytes is the largest retry or error event produced
	// (default DefaultMaxProduceBytes): a retry event over it becomes an
	// error event, and an error event over it keeps an excerpt of the
	// original event.
	MaxProduceBytes int
	Names           Names // names of the error and retry topics
	// Partitioned names the repartitioned streams (PartitionedStreams):
	// retries and re-enqueued jobs of these keep their partition.
	Partitioned     map[string]bool
	UserAgent       string
	CommitInterval  time.Duration // default 1s
	ShutdownTimeout time.Duration // default 30s: how long in-flight events may finish after Run's context ends
	RevokeTimeout   time.Duration // default 10s: how long in-flight events of revoked partitions may finish
	// CloseTimeout bounds the final commit and the Source's Close at
	// shutdown, together (default 5s): with the brokers gone librdkafka
	// waits for them forever. Past it the client is left behind and Run
	// returns an error; what was not committed is read again.
	CloseTimeout time.Duration
	// MaxDelayed bounds the jobs of one partition waiting for their time
	// (retries not yet due, delayed jobs); past it the partition pauses
	// until some are due. Default 1000.
	MaxDelayed int
	// MaxBacklog bounds the jobs read ahead and waiting to be admitted, over
	// the rule's partitions. At it the loop stops taking messages from the
	// client (whose own prefetch is bounded) until some are admitted; a
	// single partition holding three quarters of it pauses, so that a stuck
	// partition cannot hold back the others. Default 256.
	MaxBacklog int
	Log        zerolog.Logger
}

// Runner consumes for one rule. Run owns the Source: every Source call, the
// partition table and the offset trackers live on Run's goroutine. Each event
// is handled on a worker goroutine, which reports back over a channel.
type Runner struct {
	cfg     RunnerConfig
	h       *handler
	stats   Stats
	workCtx context.Context
	cancel  context.CancelCauseFunc

	// Owned by Run's goroutine.
	parts       map[TopicPartition]*part
	order       []*part // assigned partitions
	inflight    int
	completions chan completion
	work1       chan *job // to the workers: a job to run, or nil to retire
	workers     int       // worker goroutines started and not retired
	peak        int       // most jobs in flight since the last trimWorkers
	limit       int       // rule-wide in-flight cap
	partLimit   int       // per-partition in-flight cap
	lanes       *partition.Lanes[*job]
	limiters    *partition.Limiters // safe for concurrent use
	draining    bool
	subscribed  []string
	delays      delayQueue
	maxDelayed  int // per partition: past it the partition pauses
	maxBacklog  int // the rule's read-ahead: past it the loop stops polling
	backlogN    int // jobs in all partitions' backlogs
	now         func() time.Time

	retune   chan Tuning // new settings for the poll goroutine
	hold     chan bool   // operator pause (true) and resume (false)
	held     bool        // paused by the operator; owned by the poll goroutine
	heldFlag atomic.Bool // held, for readers elsewhere
	ready    atomic.Bool // set once subscribed; read by health checks
	snapshot atomic.Pointer[[]PartitionState]
	consumed sync.Map // topic -> *atomic.Int64
}

// part is the poll goroutine's state for one assigned partition.
type part struct {
	tp        TopicPartition
	track     *offsetTracker
	backlog   []*job // ready to run, not yet admitted to the lanes; in order
	admitted  int    // jobs in the lanes: waiting for their key, or in flight
	inflight  int
	delayed   int // jobs of this partition in the delay queue
	blocked   int // of which waiting for an open breaker
	paused    bool
	committed int64         // last offset committed synchronously by this runner, -1 before
	stored    int64         // last offset handed to the Source for a background commit, -1 before
	consumed  *atomic.Int64 // messages read from the topic (shared by its partitions)
	revoking  bool          // being revoked: nothing more starts
	gone      bool          // revoked: late completions are ignored
}

type completion struct {
	j   *job
	out outcome
}

// NewRunner returns a Runner for cfg.
func NewRunner(cfg RunnerConfig) *Runner {
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = time.Second
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 30 * time.Second
	}
	if cfg.RevokeTimeout <= 0 {
		cfg.RevokeTimeout = 10 * time.Second
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = 5 * time.Second
	}
	if cfg.TopicRefresh <= 0 {
		cfg.TopicRefresh = 30 * time.Second
	}
	if cfg.MaxDelayed <= 0 {
		cfg.MaxDelayed = 1000
	}
	if cfg.MaxBacklog <= 0 {
		cfg.MaxBacklog = 256
	}
	if cfg.MaxProduceBytes <= 0 {
		cfg.MaxProduceBytes = DefaultMaxProduceBytes
	}
	tuning := TuningOf(cfg.Rule)
	limit, partLimit := tuning.caps()
	log := cfg.Log.With().Str("rule", cfg.Rule.Name).Logger()
	cfg.Log = log
	workCtx, cancel := context.WithCancelCause(context.Background())
	r := &Runner{
		cfg: cfg,
		h: &handler{
			rule: cfg.Rule, sender: cfg.Sender, producer: cfg.Producer, breakers: cfg.Breakers,
			names: cfg.Names, retryPrefix: cfg.Names.RetryPrefix(), continueTopic: continueTopic(cfg), userAgent: cfg.UserAgent,
			partitioned: cfg.Partitioned, rateLimited: cfg.Rule.RateLimit != nil, log: log, now: time.Now,
			dedupe: cfg.Dedupe, limiter: cfg.Limiter, allowHost: cfg.AllowHost,
			limits: cfg.Limits, maxProduce: cfg.MaxProduceBytes,
		},
		maxDelayed: cfg.MaxDelayed,
		maxBacklog: cfg.MaxBacklog,
		workCtx:    workCtx,
		cancel:     cancel,
		parts:      make(map[TopicPartition]*part),
		// Completions never wait while at most this many jobs are in
		// flight; beyond it (concurrency raised live) a worker waits for
		// the poll loop to take one, which it does at every turn.
		completions: make(chan completion, max(limit, completionBuffer)),
		// Never more jobs in flight than workers, so a job handed over
		// never waits for a worker while at most this many are in
		// flight.
		work1:     make(chan *job, max(limit, completionBuffer)),
		limit:     limit,
		partLimit: partLimit,
		lanes:     partition.NewLanes[*job](tuning.KeyLimits, cfg.Rule.Ordered),
		limiters:  partition.NewLimiters(tuning.Rate),
		now:       time.Now,
		retune:    make(chan Tuning, 1),
		hold:      make(chan bool, 1),
	}
	r.h.stats = &r.stats
	r.h.metrics = cfg.Metrics.forRule(cfg.Rule.Name)
	cfg.Metrics.add(r)
	return r
}

// completionBuffer is the least capacity of the completions channel.
const completionBuffer = 1024

// Name is the rule's name.
func (r *Runner) Name() string { return r.cfg.Rule.Name }

// Stats are the rule's counters.
func (r *Runner) Stats() *Stats { return &r.stats }

// pollWait bounds how long the loop waits for a completion, while a job
// waits for one, before it polls the client again: the delay a new message
// may see then. Poll is called at least this often, far below
// max.poll.interval.ms.
const pollWait = 5 * time.Millisecond

// Run subscribes and consumes until ctx ends, then stops reading, lets
// in-flight events finish (bounded by ShutdownTimeout), commits and closes
// the Source. It returns nil after a clean shutdown.
func (r *Runner) Run(ctx context.Context) error {
	defer r.cancel(errShutdown)
	if r.cfg.Resolve == nil {
		if err := r.subscribe(r.cfg.Topics); err != nil {
			_ = r.cfg.Source.Close()
			return fmt.Errorf("rule %s: %w", r.Name(), err)
		}
	}
	var refreshAt time.Time // a dynamic subscription is resolved at once
	commitAt := time.Now().Add(r.cfg.CommitInterval)
	wait := time.NewTimer(pollWait)
	defer wait.Stop()
	pollEmpty := false
	polled := time.Now()
	for ctx.Err() == nil {
		select {
		case t := <-r.retune:
			r.applyTuning(t)
		case h := <-r.hold:
			r.setHeld(h)
		default:
		}
		if r.held {
			for _, p := range r.order {
				r.pause(p) // partitions assigned while held
			}
		}
		r.drainCompletions()
		r.releaseDue(r.now())
		timeout := 100 * time.Millisecond
		if r.inflight == 0 {
			// Nothing to complete: wait in the client, which returns as
			// soon as a message comes. Fewer wake-ups of an idle rule
			// (a 30-rule process idles at 7% of a core instead of 10%).
			timeout = idlePoll
		}
		if due, ok := r.delays.next(); ok {
			timeout = max(0, min(timeout, time.Until(due)))
		}
		holding := r.backlogN >= r.maxBacklog
		if (r.inflight > 0 && pollEmpty && r.completionStarts()) || holding {
			// A job waits for one in flight and the client had nothing for
			// us, or the read-ahead is full: wait for a completion rather
			// than inside Poll, so that a finished job frees its slot at
			// once. With nothing waiting, the loop waits in Poll instead,
			// which returns as soon as a message comes: a completion then
			// only updates counts and offsets, and can wait for it.
			wait.Reset(min(timeout, pollWait))
			select {
			case c := <-r.completions:
				r.complete(c)
			case <-wait.C:
			case <-ctx.Done():
			}
			timeout = 0
			if holding && time.Since(polled) < holdPoll {
				// Leave the messages in the client, whose prefetch is
				// bounded, rather than pausing partitions: a resumed
				// partition takes long to refill. Poll at least every
				// holdPoll to serve the group.
				r.tick(&commitAt, &refreshAt)
				continue
			}
		}
		msg, err := r.cfg.Source.Poll(timeout)
		polled = time.Now()
		pollEmpty = msg == nil && err == nil
		if err != nil {
			if errors.Is(err, ErrFatal) {
				r.shutdown()
				return fmt.Errorf("rule %s: %w", r.Name(), err)
			}
			r.cfg.Log.Warn().Err(err).Msg("consumer")
		}
		if msg != nil {
			r.accept(msg)
		}
		r.tick(&commitAt, &refreshAt)
	}
	return r.shutdown()
}

// completionStarts reports whether a completion would let a job start: the
// rule is at its concurrency, or jobs wait in a backlog or for their key.
func (r *Runner) completionStarts() bool {
	return r.inflight >= r.limit || r.backlogN > 0 || r.lanes.Waiting() > 0
}

// idlePoll is how long Poll waits for a message with no job in flight: the
// longest a shutdown, a pause or a retune waits for an idle rule's loop.
const idlePoll = 500 * time.Millisecond

// holdPoll is the longest the loop goes without Poll while its read-ahead
// is full: far below max.poll.interval.ms.
const holdPoll = 250 * time.Millisecond

// tick commits and refreshes the subscription when their time has come.
func (r *Runner) tick(commitAt, refreshAt *time.Time) {
	now := time.Now()
	if !now.Before(*commitAt) {
		r.store()
		r.trimWorkers()
		*commitAt = now.Add(r.cfg.CommitInterval)
	}
	if r.cfg.Resolve != nil && !now.Before(*refreshAt) {
		*refreshAt = now.Add(r.refreshTopics())
	}
}

// topicListTimeout bounds the metadata request of a topic refresh.
const topicListTimeout = 5 * time.Second

// refreshTopics resolves a dynamic subscription against the cluster's
// topics and subscribes again when it changed. It returns how long to wait
// until the next refresh: sooner while a listing fails.
func (r *Runner) refreshTopics() time.Duration {
	all, err := r.cfg.Source.Topics(topicListTimeout)
	if err != nil {
		r.cfg.Log.Warn().Err(err).Msg("list topics")
		return min(time.Second, r.cfg.TopicRefresh)
	}
	want := r.cfg.Resolve(all)
	slices.Sort(want)
	want = slices.Compact(want)
	if slices.Equal(want, r.subscribed) {
		return r.cfg.TopicRefresh
	}
	if err := r.subscribe(want); err != nil {
		r.cfg.Log.Warn().Err(err).Msg("subscribe")
		return min(time.Second, r.cfg.TopicRefresh)
	}
	return r.cfg.TopicRefresh
}

func (r *Runner) subscribe(topics []string) error {
	if err := r.cfg.Source.Subscribe(topics, r); err != nil {
		return fmt.Errorf("subscribe %v: %w", topics, err)
	}
	r.subscribed = topics
	r.ready.Store(true)
	r.cfg.Log.Info().Strs("topics", topics).Int("concurrency", r.limit).Msg("subscribed")
	return nil
}

// Subscribed reports whether the rule has subscribed (its topics resolved).
func (r *Runner) Subscribed() bool { return r.ready.Load() }

// store hands the Source, for every partition where it moved, the end of
// the run of finished events, to commit in the background: the poll
// goroutine never waits for the broker on its way. Then it publishes a
// snapshot for metrics and /v1/rules.
func (r *Runner) store() {
	offs, moved := r.committable(r.order, func(p *part) int64 { return max(p.stored, p.committed) })
	if len(offs) > 0 {
		if err := r.cfg.Source.Store(offs); err != nil {
			// A partition being revoked (its offsets are committed on
			// the revoke), a rebalance in progress: stored next time.
			r.cfg.Log.Warn().Err(err).Int("partitions", len(offs)).Msg("store offsets")
		} else {
			for i, p := range moved {
				p.stored = offs[i].Offset
			}
		}
	}
	r.takeSnapshot()
}

// commit synchronously commits, for the given partitions (all when nil),
// the end of the run of finished events where it moved since the last
// synchronous commit: on a revoke and at shutdown, so that nothing
// finished is left to a background commit when the partitions go.
func (r *Runner) commit(only []*part) {
	if only == nil {
		only = r.order
	}
	offs, moved := r.committable(only, func(p *part) int64 { return p.committed })
	if len(offs) > 0 {
		if err := r.cfg.Source.Commit(offs); err != nil {
			// Expected during a rebalance (e.g. ILLEGAL_GENERATION); the
			// offsets stay uncommitted and go out with the next commit or
			// on revoke.
			r.cfg.Log.Warn().Err(err).Int("partitions", len(offs)).Msg("commit")
		} else {
			for i, p := range moved {
				p.committed = offs[i].Offset
				p.stored = max(p.stored, p.committed)
			}
		}
	}
	if len(only) == len(r.order) {
		r.takeSnapshot()
	}
}

// committable lists the partitions of ps whose run of finished events
// ends past since(p), with that end.
func (r *Runner) committable(ps []*part, since func(*part) int64) ([]Offset, []*part) {
	var offs []Offset
	var moved []*part
	for _, p := range ps {
		if c := p.track.committable(); c >= 0 && c > since(p) {
			offs = append(offs, Offset{TopicPartition: p.tp, Offset: c})
			moved = append(moved, p)
		}
	}
	return offs, moved
}

// takeSnapshot publishes the partitions' state for metrics and /v1/rules.
func (r *Runner) takeSnapshot() {
	snap := make([]PartitionState, 0, len(r.order))
	var lag int64
	for _, p := range r.order {
		s := PartitionState{TopicPartition: p.tp, Committed: max(p.stored, p.committed), InFlight: p.inflight, Paused: p.paused}
		if high, ok := r.cfg.Source.HighWatermark(p.tp); ok {
			pos := p.track.committable()
			if pos < 0 {
				pos = max(p.stored, p.committed)
			}
			if pos >= 0 && high > pos {
				s.Lag = high - pos
			}
		}
		lag += s.Lag
		snap = append(snap, s)
	}
	r.snapshot.Store(&snap)
	r.stats.Lag.Store(lag)
}

// Assigned implements RebalanceListener.
func (r *Runner) Assigned(tps []TopicPartition) {
	for _, tp := range tps {
		if r.parts[tp] != nil {
			continue
		}
		p := &part{tp: tp, track: newOffsetTracker(), committed: -1, stored: -1, consumed: r.topicCounter(tp.Topic)}
		r.parts[tp] = p
		r.order = append(r.order, p)
	}
	r.cfg.Log.Info().Int("partitions", len(tps)).Int("assigned", len(r.order)).Msg("assigned")
}

// Revoked implements RebalanceListener. Unless the partitions were lost, it
// lets their in-flight events finish (bounded by RevokeTimeout) and commits
// them before the partitions go.
func (r *Runner) Revoked(tps []TopicPartition, lost bool) {
	var revoked []*part
	for _, tp := range tps {
		if p := r.parts[tp]; p != nil {
			revoked = append(revoked, p)
		}
	}
	for _, p := range revoked {
		// Not started, or delayed: the next owner reads them. Lost
		// partitions too: their read-ahead must not hold the loop's.
		r.backlogN -= len(p.backlog)
		p.backlog = nil
	}
	if !lost {
		for _, p := range revoked {
			p.revoking = true
		}
		r.dropWaiting(func(p *part) bool { return p.revoking })
		r.awaitIdle(revoked, time.Now().Add(r.cfg.RevokeTimeout))
		r.commit(revoked)
	}
	for _, p := range revoked {
		p.gone = true
		delete(r.parts, p.tp)
	}
	r.dropWaiting(func(p *part) bool { return p.gone })
	kept := r.order[:0]
	for _, p := range r.order {
		if !p.gone {
			kept = append(kept, p)
		}
	}
	clear(r.order[len(kept):])
	r.order = kept
	r.cfg.Log.Info().Int("partitions", len(tps)).Bool("lost", lost).Int("assigned", len(r.order)).Msg("revoked")
}

// awaitIdle handles completions until none of ps has an event in flight or
// the deadline passes.
func (r *Runner) awaitIdle(ps []*part, deadline time.Time) bool {
	busy := func() bool {
		for _, p := range ps {
			if p.inflight > 0 {
				return true
			}
		}
		return false
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for busy() {
		select {
		case c := <-r.completions:
			r.complete(c)
		case <-timer.C:
			return false
		}
	}
	return true
}

// shutdown stops reading, waits for in-flight events, commits and closes.
func (r *Runner) shutdown() error {
	r.draining = true
	var all []TopicPartition
	for _, p := range r.order {
		r.backlogN -= len(p.backlog)
		p.backlog = nil // not started, or delayed (left in the delay queue): read again later
		all = append(all, p.tp)
	}
	r.dropWaiting(func(*part) bool { return true })
	if len(all) > 0 {
		if err := r.cfg.Source.Pause(all); err != nil {
			r.cfg.Log.Warn().Err(err).Msg("pause for shutdown")
		}
	}
	deadline := time.Now().Add(r.cfg.ShutdownTimeout)
	for r.inflight > 0 && time.Now().Before(deadline) {
		// Keep serving the group while the last events finish.
		if _, err := r.cfg.Source.Poll(0); err != nil && !errors.Is(err, ErrFatal) {
			r.cfg.Log.Warn().Err(err).Msg("consumer")
		}
		r.awaitIdle(r.order, minTime(deadline, time.Now().Add(pollWait)))
	}
	if r.inflight > 0 {
		r.cfg.Log.Warn().Int("inflight", r.inflight).Msg("shutdown deadline passed; abandoning in-flight events")
		r.cancel(errShutdown)
		// Cancelled jobs report back promptly once their requests are cancelled.
		r.awaitIdle(r.order, time.Now().Add(5*time.Second))
	}
	r.drainCompletions()
	close(r.work1) // workers whose jobs were abandoned end when those do
	// The final commit and the close (whose last revoke runs Revoked):
	// bounded, since a cluster that does not answer must not hold the
	// process (closeWithin).
	err, ok := closeWithin(r.cfg.CloseTimeout, r.cfg.Log, func() error {
		r.commit(nil)
		return r.cfg.Source.Close()
	})
	switch {
	case !ok:
		return fmt.Errorf("rule %s: final commit and close did not finish within %v", r.Name(), r.cfg.CloseTimeout)
	case err != nil:
		return fmt.Errorf("rule %s: close consumer: %w", r.Name(), err)
	}
	r.cfg.Log.Info().Int64("done", r.stats.Finished()).Msg("stopped")
	return nil
}

// closeWithin runs a rule's last commit and close on a goroutine of its
// own and waits for it at most timeout: with the brokers gone librdkafka
// waits for them for minutes or for ever. The caller touches none of the
// state finish uses until it returns ok; past the timeout the goroutine is
// left behind (the process is stopping), what was not committed is read
// again, and ok is false.
func closeWithin(timeout time.Duration, log zerolog.Logger, finish func() error) (err error, ok bool) {
	done := make(chan error, 1)
	go func() { done <- finish() }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err, true
	case <-t.C:
		log.Error().Dur("close_timeout", timeout).
			Msg("the last commit and leaving the group did not finish in time (is Kafka reachable?); what was not committed will be read again")
		return nil, false
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Close releases the Source of a Runner that was never Run.
func (r *Runner) Close() error { return r.cfg.Source.Close() }

// Pause stops the rule from reading (an operator's pause): its partitions
// pause, events already read still run, offsets are still committed. Safe
// from any goroutine; Resume undoes it.
func (r *Runner) Pause() { r.setHold(true) }

// Resume undoes Pause.
func (r *Runner) Resume() { r.setHold(false) }

// Held reports whether an operator's pause is in effect.
func (r *Runner) Held() bool { return r.heldFlag.Load() }

func (r *Runner) setHold(h bool) {
	select {
	case <-r.hold:
	default:
	}
	r.hold <- h
}

// setHeld runs on the poll goroutine.
func (r *Runner) setHeld(h bool) {
	if h == r.held {
		return
	}
	r.held = h
	r.heldFlag.Store(h)
	r.cfg.Log.Info().Bool("paused", h).Msg("operator")
	for _, p := range r.order {
		if h {
			r.pause(p)
		} else {
			r.resumeIfIdle(p)
		}
	}
}
