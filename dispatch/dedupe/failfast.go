package dedupe

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// FailFast wraps a Store so that an outage costs one timeout, not one per
// job: after a call fails with ErrUnavailable, Claim answers Fresh with
// ErrUnavailable at once for cooldown, and then lets one call through to
// see whether the store is back. Confirm and Release of claims taken
// before the outage still go to the store.
type FailFast struct {
	store    Store
	cooldown time.Duration
	until    atomic.Int64 // unix nanoseconds until which calls are skipped
}

// NewFailFast wraps s; cooldown 0 means one second.
func NewFailFast(s Store, cooldown time.Duration) *FailFast {
	if cooldown <= 0 {
		cooldown = time.Second
	}
	return &FailFast{store: s, cooldown: cooldown}
}

// errSkipped is returned while the store is considered down.
var errSkipped = errors.New("skipped after a recent failure")

// Claim implements Store.
func (f *FailFast) Claim(ctx context.Context, j Job, now time.Time) (Result, *Claim, error) {
	if until := f.until.Load(); now.UnixNano() < until {
		return Fresh, nil, errors.Join(ErrUnavailable, errSkipped)
	}
	r, c, err := f.store.Claim(ctx, j, now)
	f.note(err, now)
	return r, c, err
}

// Confirm implements Store.
func (f *FailFast) Confirm(ctx context.Context, c *Claim, now time.Time) error {
	err := f.store.Confirm(ctx, c, now)
	f.note(err, now)
	return err
}

// Release implements Store.
func (f *FailFast) Release(ctx context.Context, c *Claim) error {
	return f.store.Release(ctx, c)
}

func (f *FailFast) note(err error, now time.Time) {
	if errors.Is(err, ErrUnavailable) {
		f.until.Store(now.Add(f.cooldown).UnixNano())
	}
}
