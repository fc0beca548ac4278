package breaker

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// State is a breaker's state; its values are those of the metric
// changeprop_breaker_state.
type State int

const (
	Closed   State = 0 // requests flow
	HalfOpen State = 1 // a few trial requests decide whether to close or open again
	Open     State = 2 // requests wait until OpenTimeout has passed
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half-open"
	case Open:
		return "open"
	}
	return "unknown"
}

func fromGobreaker(s gobreaker.State) State {
	switch s {
	case gobreaker.StateHalfOpen:
		return HalfOpen
	case gobreaker.StateOpen:
		return Open
	}
	return Closed
}

var (
	// ErrOpen is Allow's answer while a destination's breaker is open, or
	// half-open with every trial slot taken. The request must wait, not fail.
	ErrOpen = errors.New("breaker: destination circuit open")
	// ErrBackoff is Allow's answer while a destination is told to wait by a
	// Retry-After (see Backoff). The request must wait, not fail.
	ErrBackoff = errors.New("breaker: destination asked to back off (Retry-After)")
)

// errFailure is what a failed request reports to gobreaker.
var errFailure = errors.New("failure")

// Option configures a Set.
type Option func(*Set)

// OnStateChange calls fn after a destination's breaker changes state, in
// order per destination, from the goroutine whose call caused (or observed)
// the change, and with no lock held: fn may call the Set. Open becomes
// half-open lazily, when Allow, State, WaitUntil, Snapshot or a scrape next
// looks at the breaker, so schedule a timer for WaitUntil rather than waiting
// for that report.
func OnStateChange(fn func(dest string, from, to State)) Option {
	return func(s *Set) { s.onChange = fn }
}

// Set is a concurrency-safe map of destination -> breaker, each created on
// first use. Closed breakers idle for Settings.IdleTTL are evicted; open and
// half-open ones never are.
//
// Locks: Set.mu, then a breaker's own lock (gobreaker's), then entry.mu.
// Callbacks to OnStateChange run with none held.
type Set struct {
	st       Settings
	onChange func(dest string, from, to State)

	mu        sync.Mutex
	m         map[string]*entry
	nextSweep time.Time
}

// entry is one destination's breaker and what the Set keeps beside it.
type entry struct {
	dest        string
	cb          *gobreaker.TwoStepCircuitBreaker[struct{}]
	transitions [3]atomic.Uint64 // by State reached

	mu           sync.Mutex
	state        State  // as last reported by gobreaker
	gen          uint64 // bumped on every state change; older results are ignored
	win          window
	inflight     int
	lastUsed     time.Time
	openUntil    time.Time // when the current open period ends (gobreaker's expiry, or just after)
	backoffUntil time.Time
	pending      []transition
	delivering   bool
}

type transition struct{ from, to State }

// NewSet returns an empty Set whose breakers use s (zero fields meaning
// their defaults).
func NewSet(s Settings, opts ...Option) *Set {
	set := &Set{st: s.withDefaults(), m: make(map[string]*entry)}
	for _, o := range opts {
		o(set)
	}
	return set
}

func (s *Set) newEntry(dest string, now time.Time) *entry {
	e := &entry{dest: dest, lastUsed: now}
	e.win.width = s.st.Interval / buckets
	if e.win.width <= 0 {
		e.win.width = 1
	}
	minReq, ratio := s.st.MinRequests, s.st.FailureRatio
	e.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        dest,
		MaxRequests: uint32(s.st.HalfOpenRequests),
		// Interval 0: gobreaker never clears its counts while closed (it
		// would drop results of requests that outlive a window); the window
		// that matters is ours, consulted in ReadyToTrip.
		Timeout: s.st.OpenTimeout,
		ReadyToTrip: func(gobreaker.Counts) bool {
			e.mu.Lock()
			ok, fails := e.win.sum(time.Now())
			e.mu.Unlock()
			n := ok + fails
			return n >= minReq && float64(fails) >= ratio*float64(n)
		},
		// Runs under gobreaker's lock: record, queue for delivery, return.
		OnStateChange: func(_ string, from, to gobreaker.State) {
			f, t := fromGobreaker(from), fromGobreaker(to)
			e.transitions[t].Add(1)
			e.mu.Lock()
			e.state = t
			e.gen++
			e.win.reset()
			e.openUntil = time.Time{}
			if t == Open {
				// gobreaker's expiry is taken a moment earlier, so this is
				// never before it.
				e.openUntil = time.Now().Add(s.st.OpenTimeout)
			}
			if s.onChange != nil {
				e.pending = append(e.pending, transition{f, t})
			}
			e.mu.Unlock()
		},
	})
	return e
}

// get returns dest's entry, creating it if create is set (else it may be
// nil), and marks it used.
func (s *Set) get(dest string, now time.Time, create bool) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maybeSweepLocked(now)
	e := s.m[dest]
	if e == nil {
		if !create {
			return nil
		}
		e = s.newEntry(dest, now)
		s.m[dest] = e
	}
	return e
}

// Allow asks whether a request to dest may be sent now. If so, the request
// must report how it went by calling done exactly once (later calls are
// ignored), with IsFailure's verdict. If not, err is ErrOpen or ErrBackoff
// and WaitUntil(dest) says when to ask again.
func (s *Set) Allow(dest string) (done func(failure bool), err error) {
	now := time.Now()
	e := s.get(dest, now, true)
	e.mu.Lock()
	e.lastUsed = now
	if now.Before(e.backoffUntil) {
		e.mu.Unlock()
		return nil, ErrBackoff
	}
	e.mu.Unlock()

	cbDone, err := e.cb.Allow()
	s.deliver(e)
	if err != nil {
		return nil, ErrOpen
	}
	e.mu.Lock()
	e.inflight++
	gen := e.gen
	e.mu.Unlock()

	var called atomic.Bool
	return func(failure bool) {
		if called.Swap(true) {
			return
		}
		now := time.Now()
		e.mu.Lock()
		e.inflight--
		e.lastUsed = now
		if gen == e.gen {
			e.win.add(now, failure)
		}
		e.mu.Unlock()
		var err error
		if failure {
			err = errFailure
		}
		cbDone(err)
		s.deliver(e)
	}, nil
}

// State returns dest's breaker state; Closed for a destination never seen
// (or evicted). It does not create a breaker.
func (s *Set) State(dest string) State {
	e := s.get(dest, time.Now(), false)
	if e == nil {
		return Closed
	}
	st := fromGobreaker(e.cb.State())
	s.deliver(e)
	return st
}

// Snapshot returns the state of every breaker the Set holds.
func (s *Set) Snapshot() map[string]State {
	es := s.entries()
	out := make(map[string]State, len(es))
	for _, e := range es {
		out[e.dest] = fromGobreaker(e.cb.State())
		s.deliver(e)
	}
	return out
}

// entries sweeps idle breakers and returns the rest.
func (s *Set) entries() []*entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maybeSweepLocked(time.Now())
	es := make([]*entry, 0, len(s.m))
	for _, e := range s.m {
		es = append(es, e)
	}
	return es
}

// WaitUntil returns when dest may next be asked: the first instant an open
// breaker lets a trial through, or the end of a Retry-After backoff, the
// later of the two. It is zero when neither holds dest back; a half-open
// breaker with its trial slots taken is zero too (its trials decide, and
// OnStateChange reports the outcome).
func (s *Set) WaitUntil(dest string) time.Time {
	now := time.Now()
	e := s.get(dest, now, false)
	if e == nil {
		return time.Time{}
	}
	st := fromGobreaker(e.cb.State())
	s.deliver(e)
	e.mu.Lock()
	defer e.mu.Unlock()
	var t time.Time
	if st == Open {
		// gobreaker half-opens once its expiry is strictly before now.
		t = e.openUntil.Add(time.Nanosecond)
	}
	if e.backoffUntil.After(now) && e.backoffUntil.After(t) {
		t = e.backoffUntil
	}
	return t
}

// Backoff holds dest until the given time (at most Settings.MaxBackoff from
// now), as a 429 or 503 with Retry-After asks: Allow answers ErrBackoff
// until then. An earlier time than one already set does not shorten it.
func (s *Set) Backoff(dest string, until time.Time) {
	now := time.Now()
	if limit := now.Add(s.st.MaxBackoff); until.After(limit) {
		until = limit
	}
	e := s.get(dest, now, true)
	e.mu.Lock()
	e.lastUsed = now
	if until.After(e.backoffUntil) {
		e.backoffUntil = until
	}
	e.mu.Unlock()
}

// BackoffUntil returns when dest's Retry-After backoff ends; zero if none
// is in force.
func (s *Set) BackoffUntil(dest string) time.Time {
	now := time.Now()
	e := s.get(dest, now, false)
	if e == nil {
		return time.Time{}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.backoffUntil.After(now) {
		return e.backoffUntil
	}
	return time.Time{}
}

// maybeSweepLocked evicts idle closed breakers, at most every IdleTTL/4.
func (s *Set) maybeSweepLocked(now time.Time) {
	if now.Before(s.nextSweep) {
		return
	}
	s.nextSweep = now.Add(max(s.st.IdleTTL/4, time.Nanosecond))
	for dest, e := range s.m {
		e.mu.Lock()
		idle := e.state == Closed && e.inflight == 0 && !now.Before(e.backoffUntil) &&
			now.Sub(e.lastUsed) >= s.st.IdleTTL && len(e.pending) == 0
		e.mu.Unlock()
		if idle {
			delete(s.m, dest)
		}
	}
}

// deliver runs OnStateChange for e's queued transitions, in order, unless
// another goroutine is already doing so (it will deliver these too).
func (s *Set) deliver(e *entry) {
	if s.onChange == nil {
		return
	}
	e.mu.Lock()
	if e.delivering || len(e.pending) == 0 {
		e.mu.Unlock()
		return
	}
	e.delivering = true
	defer func() {
		e.mu.Lock()
		e.delivering = false
		e.mu.Unlock()
	}()
	for len(e.pending) > 0 {
		p := e.pending
		e.pending = nil
		e.mu.Unlock()
		for _, t := range p {
			s.onChange(e.dest, t.from, t.to)
		}
		e.mu.Lock()
	}
	e.mu.Unlock()
}
