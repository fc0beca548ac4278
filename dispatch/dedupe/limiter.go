package dedupe

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Window is one sliding window of the blacklist limiter: a key that has
// failed Limit times within the last Period is blocked.
type Window struct {
	Limit  int
	Period time.Duration
}

// Limiter is the blacklist limiter of rules.md (`limiters: {blacklist:
// <key template>}`): it counts failures per key in sliding windows, and a
// key that reached the limit of any window is blocked until enough of its
// failures have left that window.
type Limiter interface {
	// Blocked reports whether key is blocked at now. On a store error it
	// returns false and an error wrapping ErrUnavailable (fail open).
	Blocked(ctx context.Context, key string, now time.Time) (bool, error)
	// Failure records a failure of key at now.
	Failure(ctx context.Context, key string, now time.Time) error
}

// ValidateWindows reports every window whose Limit or Period is not
// positive, and an empty list.
func ValidateWindows(ws []Window) error {
	if len(ws) == 0 {
		return errors.New("limiter: no windows")
	}
	var errs []error
	for i, w := range ws {
		if w.Limit <= 0 {
			errs = append(errs, fmt.Errorf("limiter: windows[%d].limit: %d is not positive", i, w.Limit))
		}
		if w.Period <= 0 {
			errs = append(errs, fmt.Errorf("limiter: windows[%d].period: %v is not positive", i, w.Period))
		}
	}
	return errors.Join(errs...)
}

// span returns the largest limit and period: no more failures than the
// largest limit, and none older than the longest period, can matter.
func span(ws []Window) (maxLimit int, maxPeriod time.Duration) {
	if err := ValidateWindows(ws); err != nil {
		panic(err) // a programming error: configuration is validated first
	}
	for _, w := range ws {
		maxLimit = max(maxLimit, w.Limit)
		maxPeriod = max(maxPeriod, w.Period)
	}
	return maxLimit, maxPeriod
}

// DefaultMaxKeys bounds the keys a MemoryLimiter tracks.
const DefaultMaxKeys = 100_000

// MemoryLimiter is an in-process Limiter. It keeps, per key, the times of
// its latest failures (at most the largest Limit) and at most
// DefaultMaxKeys keys: when full it drops keys with no failure left in any
// window, then arbitrary ones (which only unblocks them early).
type MemoryLimiter struct {
	windows   []Window
	maxLimit  int
	maxPeriod time.Duration
	maxKeys   int

	mu   sync.Mutex
	keys map[string][]int64 // failure times (unix ns), ascending
}

// NewMemoryLimiter returns a MemoryLimiter. It panics if ValidateWindows
// rejects windows.
func NewMemoryLimiter(windows []Window) *MemoryLimiter {
	ml, mp := span(windows)
	return &MemoryLimiter{
		windows: slices.Clone(windows), maxLimit: ml, maxPeriod: mp, maxKeys: DefaultMaxKeys,
		keys: make(map[string][]int64),
	}
}

// Blocked implements Limiter. It never fails.
func (l *MemoryLimiter) Blocked(_ context.Context, key string, now time.Time) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return blocked(l.windows, l.keys[key], now.UnixNano()), nil
}

// blocked reports whether the failure times ts (ascending) reach the limit
// of any window ending at t. Failures later than t (another instance's
// clock) count too.
func blocked(ws []Window, ts []int64, t int64) bool {
	for _, w := range ws {
		from := t - int64(w.Period)
		i, _ := slices.BinarySearch(ts, from+1) // first failure > from
		if len(ts)-i >= w.Limit {
			return true
		}
	}
	return false
}

// Failure implements Limiter. It never fails.
func (l *MemoryLimiter) Failure(_ context.Context, key string, now time.Time) error {
	t := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	ts, ok := l.keys[key]
	if !ok && len(l.keys) >= l.maxKeys {
		l.makeRoom(t)
	}
	i, _ := slices.BinarySearch(ts, t+1)
	ts = slices.Insert(ts, i, t)
	// Drop what no window can see: failures older than the longest period,
	// and all but the newest maxLimit.
	old, _ := slices.BinarySearch(ts, t-int64(l.maxPeriod)+1)
	old = max(old, len(ts)-l.maxLimit)
	if old > 0 {
		ts = slices.Delete(ts, 0, old)
	}
	l.keys[key] = ts
	return nil
}

func (l *MemoryLimiter) makeRoom(t int64) {
	for k, ts := range l.keys {
		if len(ts) == 0 || ts[len(ts)-1] <= t-int64(l.maxPeriod) {
			delete(l.keys, k)
		}
	}
	target := l.maxKeys - l.maxKeys/8
	for k := range l.keys {
		if len(l.keys) < target {
			return
		}
		delete(l.keys, k)
	}
}
