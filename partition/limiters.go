package partition

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateSpec is a token bucket: Rate tokens a second, holding at most Burst.
type RateSpec struct {
	Rate  float64 // tokens per second; 0 (or less, or +Inf) = unlimited
	Burst int     // bucket size; 0 = max(1, ceil(Rate))
}

func (s RateSpec) unlimited() bool { return !(s.Rate > 0) || math.IsInf(s.Rate, 1) }

func (s RateSpec) burst() int {
	if s.Burst > 0 {
		return s.Burst
	}
	return int(max(1, math.Min(math.Ceil(s.Rate), math.MaxInt32)))
}

// Limiters is one token bucket per key (per wiki), created on first use.
// A bucket that has refilled completely is the same as a new one, so it is
// dropped, at most once a minute: the map holds only keys used lately.
// Limiters is safe for concurrent use.
type Limiters struct {
	mu        sync.Mutex
	spec      RateSpec
	gen       uint64 // bumped by SetSpec; buckets of an older gen are retuned on use
	m         map[string]*bucket
	nextSweep time.Time
}

type bucket struct {
	lim *rate.Limiter
	gen uint64
}

// sweepEvery is how often ReserveAt looks for full buckets to drop.
const sweepEvery = time.Minute

// NewLimiters returns Limiters whose buckets follow spec.
func NewLimiters(spec RateSpec) *Limiters {
	return &Limiters{spec: spec, m: make(map[string]*bucket)}
}

// ReserveAt takes a token from key's bucket at now and returns how long to
// wait before acting on it: 0 means go now. The token is spent whether or
// not the caller goes on; wait with a timer, never a sleep.
func (l *Limiters) ReserveAt(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.spec.unlimited() {
		return 0
	}
	if !now.Before(l.nextSweep) {
		l.sweep(now)
		l.nextSweep = now.Add(sweepEvery)
	}
	limit, burst := rate.Limit(l.spec.Rate), l.spec.burst()
	b := l.m[key]
	switch {
	case b == nil:
		b = &bucket{lim: rate.NewLimiter(limit, burst), gen: l.gen}
		l.m[key] = b
	case b.gen != l.gen:
		b.lim.SetLimitAt(now, limit)
		b.lim.SetBurstAt(now, burst)
		b.gen = l.gen
	}
	r := b.lim.ReserveN(now, 1)
	if !r.OK() { // cannot happen: burst >= 1 and the limit is finite
		return 0
	}
	return r.DelayFrom(now)
}

// SetSpec retunes every bucket. A bucket keeps its tokens (up to the new
// burst) and refills at the new rate from the time of its next use.
func (l *Limiters) SetSpec(spec RateSpec) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.spec = spec
	l.gen++
	if spec.unlimited() {
		clear(l.m)
	}
}

// sweep drops full buckets: a new one would be the same.
func (l *Limiters) sweep(now time.Time) {
	for key, b := range l.m {
		if b.lim.TokensAt(now) >= float64(b.lim.Burst()) {
			delete(l.m, key)
		}
	}
}

// len returns how many buckets are held (for tests).
func (l *Limiters) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
