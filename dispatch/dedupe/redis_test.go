package dedupe_test

import (
	"changeprop/internal/testkit"

	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"changeprop/dispatch/dedupe"
)

// prefixes gives each store of a test its own key space on one server.
var prefixes atomic.Int64

func newPrefix() string { return fmt.Sprintf("T%d", prefixes.Add(1)) }

func TestRedisStore(t *testing.T) {
	srv := testkit.StartRedis(t)
	client := srv.Client()
	testStore(t, func(*testing.T) dedupe.Store {
		return dedupe.NewRedis(client, newPrefix(), dedupe.RedisOptions{Timeout: 5 * time.Second})
	})
}

func TestRedisLimiter(t *testing.T) {
	srv := testkit.StartRedis(t)
	client := srv.Client()
	testLimiter(t, func(_ *testing.T, ws []dedupe.Window) dedupe.Limiter {
		return dedupe.NewRedisLimiter(client, newPrefix(), ws)
	})
}

// TestRedisKeys pins the key names and what they hold, and that Redis
// expires them too.
func TestRedisKeys(t *testing.T) {
	ctx := context.Background()
	srv := testkit.StartRedis(t)
	client := srv.Client()
	s := dedupe.NewRedis(client, "", dedupe.RedisOptions{})
	j := withRoot(withSHA1(job("4f1c", 0), "ab12"), "sig", -time.Minute)
	if got, want := s.IDKey(j), "CPJQ:rule:id:en.wikipedia.org:4f1c"; got != want {
		t.Errorf("IDKey = %q, want %q", got, want)
	}
	if got, want := s.SHA1Key(j), "CPJQ:rule:sha1:ab12"; got != want {
		t.Errorf("SHA1Key = %q, want %q", got, want)
	}
	if got, want := s.RootKey(j), "CPJQ:rule:root:sig"; got != want {
		t.Errorf("RootKey = %q, want %q", got, want)
	}
	if got := s.SHA1Key(job("x", 0)) + s.RootKey(job("x", 0)); got != "" {
		t.Errorf("keys of a job without sha1 and root = %q, want none", got)
	}
	now := time.Now()
	_, c, err := s.Claim(ctx, j, now)
	if err != nil {
		t.Fatal(err)
	}
	v := client.Get(ctx, s.IDKey(j)).Val()
	if want := fmt.Sprintf("c|%d|", now.Add(dedupe.DefaultClaimTTL).UnixMilli()); !strings.HasPrefix(v, want) {
		t.Errorf("claim value %q, want prefix %q", v, want)
	}
	if err := s.Confirm(ctx, c, now); err != nil {
		t.Fatal(err)
	}
	ms := now.UnixMilli()
	tests := []struct {
		key, value string
		ttl        time.Duration
	}{
		{s.IDKey(j), fmt.Sprintf("d|%d|", ms+time.Hour.Milliseconds()), time.Hour},
		{s.SHA1Key(j), fmt.Sprintf("d|%d|%d", ms+time.Hour.Milliseconds(), ms), time.Hour},
		{s.RootKey(j), fmt.Sprintf("d|%d|%d", ms+24*time.Hour.Milliseconds(), j.RootDT.UnixMilli()), 24 * time.Hour},
	}
	for _, tt := range tests {
		if v := client.Get(ctx, tt.key).Val(); v != tt.value {
			t.Errorf("%s = %q, want %q", tt.key, v, tt.value)
		}
		if ttl := client.PTTL(ctx, tt.key).Val(); ttl <= tt.ttl-time.Minute || ttl > tt.ttl {
			t.Errorf("%s expires in %v, want about %v", tt.key, ttl, tt.ttl)
		}
	}

	l := dedupe.NewRedisLimiter(client, "", limiterWindows)
	if got, want := l.Key("html:x"), "CPJQ:blacklist:html:x"; got != want {
		t.Errorf("limiter Key = %q, want %q", got, want)
	}
	if err := l.Failure(ctx, "html:x", now); err != nil {
		t.Fatal(err)
	}
	if ttl := client.PTTL(ctx, l.Key("html:x")).Val(); ttl <= week-time.Minute || ttl > week {
		t.Errorf("limiter key expires in %v, want about a week", ttl)
	}
}

// TestRedisSharedInstances: two stores and two limiters over one Redis,
// each with its own client, as two service instances.
func TestRedisSharedInstances(t *testing.T) {
	ctx := context.Background()
	srv := testkit.StartRedis(t)
	a := dedupe.NewRedis(srv.Client(), "", dedupe.RedisOptions{Timeout: 5 * time.Second})
	b := dedupe.NewRedis(srv.Client(), "", dedupe.RedisOptions{Timeout: 5 * time.Second})

	j := withSHA1(job("a", 0), "s")
	r, c, err := a.Claim(ctx, j, t0)
	if err != nil || r != dedupe.Fresh {
		t.Fatalf("a claims: %v, %v", r, err)
	}
	if r, _, _ := b.Claim(ctx, j, t0); r != dedupe.Busy {
		t.Fatalf("b claims while a runs: %v, want busy", r)
	}
	if err := a.Confirm(ctx, c, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if r, _, _ := b.Claim(ctx, j, t0.Add(2*time.Second)); r != dedupe.DuplicateID {
		t.Fatalf("b claims after a confirmed: %v, want duplicate_id", r)
	}
	if r, _, _ := b.Claim(ctx, withSHA1(job("b", -time.Minute), "s"), t0.Add(2*time.Second)); r != dedupe.DuplicateSHA1 {
		t.Fatalf("b claims an older job with a's sha1: %v, want duplicate_sha1", r)
	}

	// Concurrent copies on both instances: exactly one runs.
	var fresh atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			r, _, err := s.Claim(ctx, job("c", 0), t0)
			if err != nil {
				t.Error(err)
			}
			if r == dedupe.Fresh {
				fresh.Add(1)
			}
		})
	}
	wg.Wait()
	if n := fresh.Load(); n != 1 {
		t.Errorf("%d fresh copies across instances, want 1", n)
	}

	la := dedupe.NewRedisLimiter(srv.Client(), "", limiterWindows)
	lb := dedupe.NewRedisLimiter(srv.Client(), "", limiterWindows)
	for i := range 3 {
		l := la
		if i == 1 {
			l = lb
		}
		if err := l.Failure(ctx, "k", t0); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []*dedupe.RedisLimiter{la, lb} {
		if blocked, err := l.Blocked(ctx, "k", t0); err != nil || !blocked {
			t.Errorf("Blocked after 3 failures on two instances = %v, %v; want true", blocked, err)
		}
	}
}

// TestRedisOutage: with Redis killed, Claim says "not a duplicate" with
// ErrUnavailable within the timeout, and so do the limiter and Confirm;
// once Redis is back on the same port the store works again by itself.
func TestRedisOutage(t *testing.T) {
	ctx := context.Background()
	srv := testkit.StartRedis(t)
	const timeout = 200 * time.Millisecond
	s := dedupe.NewRedis(srv.Client(), "", dedupe.RedisOptions{Timeout: timeout})
	l := dedupe.NewRedisLimiter(srv.Client(), "", limiterWindows)

	_, before, err := s.Claim(ctx, job("before", 0), t0)
	if err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	for _, id := range []string{"down1", "down2", "before"} {
		start := time.Now()
		r, c, err := s.Claim(ctx, job(id, 0), t0)
		wantUnavailable(t, "Claim "+id, err, start, timeout)
		if r != dedupe.Fresh || c != nil {
			t.Errorf("Claim %s during outage = %v, %v; want fresh, no claim", id, r, c)
		}
		if err := s.Confirm(ctx, c, t0); err != nil { // what a caller does next
			t.Errorf("Confirm(nil) = %v", err)
		}
	}
	start := time.Now()
	wantUnavailable(t, "Confirm", s.Confirm(ctx, before, t0), start, timeout)
	start = time.Now()
	wantUnavailable(t, "Release", s.Release(ctx, before), start, timeout)
	start = time.Now()
	blocked, err := l.Blocked(ctx, "k", t0)
	wantUnavailable(t, "Blocked", err, start, timeout)
	if blocked {
		t.Error("Blocked during outage = true, want false (fail open)")
	}
	start = time.Now()
	wantUnavailable(t, "Failure", l.Failure(ctx, "k", t0), start, timeout)

	srv.Start() // empty: no persistence
	// go-redis fails fast after repeated dial errors and probes the server
	// once a second on its own, so recovery takes up to about a second.
	var c *dedupe.Claim
	recovered := eventually(t, 5*time.Second, func() error {
		var r dedupe.Result
		r, c, err = s.Claim(ctx, job("after", 0), t0)
		if err == nil && (r != dedupe.Fresh || c == nil) {
			t.Fatalf("Claim after restart = %v, %v; want fresh with a claim", r, c)
		}
		return err
	})
	t.Logf("recovered %v after the restart", recovered)
	if err := s.Confirm(ctx, c, t0); err != nil {
		t.Fatalf("Confirm after restart: %v", err)
	}
	if r, _, err := s.Claim(ctx, job("after", 0), t0); err != nil || r != dedupe.DuplicateID {
		t.Fatalf("dedupe after restart: %v, %v; want duplicate_id", r, err)
	}
	if err := l.Failure(ctx, "k", t0); err != nil {
		t.Fatalf("limiter after restart: %v", err)
	}
}

// TestRedisSlow: a Redis that accepts but does not answer (SIGSTOP) costs
// no more than the timeout, even with go-redis's default 3s read timeout.
func TestRedisSlow(t *testing.T) {
	ctx := context.Background()
	srv := testkit.StartRedis(t)
	const timeout = 200 * time.Millisecond
	client := srv.Client()
	s := dedupe.NewRedis(client, "", dedupe.RedisOptions{Timeout: timeout})
	// Connect and load the script with time to spare: a loaded machine may
	// take more than 200ms for the first call.
	warm := dedupe.NewRedis(client, "", dedupe.RedisOptions{Timeout: 5 * time.Second})
	if _, _, err := warm.Claim(ctx, job("warm", 0), t0); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	start := time.Now()
	r, c, err := s.Claim(ctx, job("a", 0), t0)
	wantUnavailable(t, "Claim", err, start, timeout)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Claim error %v does not say it timed out", err)
	}
	if r != dedupe.Fresh || c != nil {
		t.Errorf("Claim while paused = %v, %v; want fresh, no claim", r, c)
	}
	srv.Resume()
	if r, _, err := s.Claim(ctx, job("b", 0), t0); err != nil || r != dedupe.Fresh {
		t.Fatalf("Claim after resume = %v, %v", r, err)
	}
}

func wantUnavailable(t *testing.T, what string, err error, start time.Time, timeout time.Duration) {
	t.Helper()
	if took := time.Since(start); took > timeout+time.Second {
		t.Errorf("%s took %v, timeout %v", what, took, timeout)
	}
	if !errors.Is(err, dedupe.ErrUnavailable) {
		t.Errorf("%s error = %v, want ErrUnavailable", what, err)
	}
}

// eventually calls f every 50ms until it returns nil, and fails t if that
// takes longer than within. It is for waiting on a real server's own
// clock (go-redis's redial loop), which a test cannot move; it returns how
// long it took.
func eventually(t *testing.T, within time.Duration, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return time.Since(start)
		}
		select {
		case <-deadline.C:
			t.Fatalf("still failing after %v: %v", within, err)
		case <-tick.C:
		}
	}
}
