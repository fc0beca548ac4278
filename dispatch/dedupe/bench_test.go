package dedupe_test

import (
	"changeprop/internal/testkit"

	"context"
	"strconv"
	"testing"
	"time"

	"changeprop/dispatch/dedupe"
)

// benchClaimConfirm runs the hot path of one job: Claim, then Confirm.
func benchClaimConfirm(b *testing.B, s dedupe.Store) {
	j := withRoot(withSHA1(job("", 0), ""), "sig", 0)
	now := t0
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		now = now.Add(time.Millisecond)
		runJob(b, s, &j, i, now, false)
	}
}

// runJob claims and confirms job number i at now, a fresh one: its id and
// sha1 are its own, its root_event.dt is now, and with ownRoot its root
// signature is its own too (one more entry in the store).
func runJob(b *testing.B, s dedupe.Store, j *dedupe.Job, i int, now time.Time, ownRoot bool) {
	ctx := context.Background()
	j.ID = strconv.Itoa(i)
	j.SHA1 = j.ID // a sha1 of its own: the same one would be a duplicate
	if ownRoot {
		j.RootSignature = j.ID
	}
	j.RootDT = now
	r, c, err := s.Claim(ctx, *j, now)
	if err != nil || r != dedupe.Fresh {
		b.Fatalf("claim %d = %v, %v", i, r, err)
	}
	if err := s.Confirm(ctx, c, now); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkClaimConfirm(b *testing.B) {
	b.Run("memory", func(b *testing.B) { benchClaimConfirm(b, dedupe.NewMemory()) })
	b.Run("memory-full", benchFullMemory)
	b.Run("memory-fill", benchFillMemory)
	b.Run("redis", func(b *testing.B) {
		srv := testkit.StartRedis(b)
		benchClaimConfirm(b, dedupe.NewRedis(srv.Client(), newPrefix(), dedupe.RedisOptions{Timeout: 5 * time.Second}))
	})
}

// benchLimiter checks then fails a key, as a failing job does.
func benchLimiter(b *testing.B, l dedupe.Limiter) {
	ctx := context.Background()
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Minute) // 60 per hour: never blocked
		if blocked, err := l.Blocked(ctx, "html:k", now); err != nil || blocked {
			b.Fatalf("blocked = %v, %v", blocked, err)
		}
		if err := l.Failure(ctx, "html:k", now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLimiter(b *testing.B) {
	ws := []dedupe.Window{{Limit: 100, Period: time.Hour}}
	b.Run("memory", func(b *testing.B) { benchLimiter(b, dedupe.NewMemoryLimiter(ws)) })
	b.Run("redis", func(b *testing.B) {
		srv := testkit.StartRedis(b)
		benchLimiter(b, dedupe.NewRedisLimiter(srv.Client(), newPrefix(), ws))
	})
}

// benchFullMemory runs Claim and Confirm on a default store filled to its
// bound, where every job makes room for its three entries, and reports
// the slowest single job: the lock is held that long for every worker.
func benchFullMemory(b *testing.B) {
	s := dedupe.NewMemory()
	j := withRoot(withSHA1(job("", 0), ""), "", 0)
	now := t0
	i := 0
	next := func() time.Duration {
		i++
		now = now.Add(time.Millisecond)
		start := time.Now()
		runJob(b, s, &j, i, now, true)
		return time.Since(start)
	}
	for s.Len() < dedupe.DefaultMaxEntries-3 {
		next()
	}
	var worst time.Duration
	b.ReportAllocs()
	for b.Loop() {
		worst = max(worst, next())
	}
	b.ReportMetric(float64(worst.Microseconds()), "worst-µs")
}

// benchFillMemory fills a new default store to its bound, one job (three
// entries) at a time, and reports the slowest single job: while the store
// grows, that is the longest its lock is held for every worker.
func benchFillMemory(b *testing.B) {
	var worst time.Duration
	jobs := 0
	b.ReportAllocs()
	for b.Loop() {
		s := dedupe.NewMemory()
		j := withRoot(withSHA1(job("", 0), ""), "", 0)
		now := t0
		for i := range dedupe.DefaultMaxEntries / 3 {
			now = now.Add(time.Millisecond)
			start := time.Now()
			runJob(b, s, &j, i, now, true)
			worst = max(worst, time.Since(start))
		}
		jobs += dedupe.DefaultMaxEntries / 3
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(jobs), "ns/job")
	b.ReportMetric(float64(worst.Microseconds()), "worst-µs")
}
