package dedupe_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"changeprop/dispatch/dedupe"
)

// downStore fails every call, counting them.
type downStore struct{ calls int }

func (d *downStore) Claim(context.Context, dedupe.Job, time.Time) (dedupe.Result, *dedupe.Claim, error) {
	d.calls++
	return dedupe.Fresh, nil, dedupe.ErrUnavailable
}
func (d *downStore) Confirm(context.Context, *dedupe.Claim, time.Time) error { return nil }
func (d *downStore) Release(context.Context, *dedupe.Claim) error            { return nil }

func TestFailFast(t *testing.T) {
	down := &downStore{}
	f := dedupe.NewFailFast(down, time.Second)
	t0 := time.Unix(1000, 0)
	job := dedupe.Job{Namespace: "r", Domain: "d", ID: "1"}
	for i, at := range []time.Duration{0, 10 * time.Millisecond, 999 * time.Millisecond, time.Second, 1500 * time.Millisecond, 2 * time.Second} {
		r, c, err := f.Claim(context.Background(), job, t0.Add(at))
		if r != dedupe.Fresh || c != nil || !errors.Is(err, dedupe.ErrUnavailable) {
			t.Fatalf("call %d: %v %v %v, want Fresh, no claim, ErrUnavailable", i, r, c, err)
		}
	}
	// Through to the store at 0, 1s (cooldown over) and 2s only.
	if down.calls != 3 {
		t.Errorf("store called %d times, want 3", down.calls)
	}
	// A store that answers is always asked.
	m := dedupe.NewFailFast(dedupe.NewMemory(), time.Second)
	if r, c, err := m.Claim(context.Background(), job, t0); r != dedupe.Fresh || c == nil || err != nil {
		t.Fatalf("healthy store: %v %v %v", r, c, err)
	}
	if err := m.Confirm(context.Background(), claimOf(t, m, dedupe.Job{Namespace: "r", Domain: "d", ID: "2"}, t0), t0); err != nil {
		t.Fatal(err)
	}
	if r, _, _ := m.Claim(context.Background(), dedupe.Job{Namespace: "r", Domain: "d", ID: "2"}, t0); !r.Duplicate() {
		t.Errorf("after confirm: %v, want a duplicate", r)
	}
}

func claimOf(t *testing.T, s dedupe.Store, j dedupe.Job, now time.Time) *dedupe.Claim {
	t.Helper()
	_, c, err := s.Claim(context.Background(), j, now)
	if err != nil || c == nil {
		t.Fatalf("claim: %v %v", c, err)
	}
	return c
}
