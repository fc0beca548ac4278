package dedupe_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"changeprop/dispatch/dedupe"
)

// t0 is the suite's origin of time; steps say how long after it they act.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// op is one step of a conformance case.
type op struct {
	do   string // "claim", "confirm" or "release"
	job  string // key into the case's jobs
	at   time.Duration
	want dedupe.Result // for claim
	as   string        // name of the claim made or used; the job's name when empty
}

func claim(job string, at time.Duration, want dedupe.Result) op {
	return op{do: "claim", job: job, at: at, want: want}
}
func claimAs(as, job string, at time.Duration, want dedupe.Result) op {
	return op{do: "claim", job: job, at: at, want: want, as: as}
}
func confirm(as string, at time.Duration) op { return op{do: "confirm", as: as, at: at} }
func release(as string) op                   { return op{do: "release", as: as} }

// job returns a job of namespace "rule" with the given id, made at t0+dt.
func job(id string, dt time.Duration) dedupe.Job {
	return dedupe.Job{Namespace: "rule", Domain: "en.wikipedia.org", ID: id, DT: t0.Add(dt)}
}

func withSHA1(j dedupe.Job, sha1 string) dedupe.Job { j.SHA1 = sha1; return j }
func withRoot(j dedupe.Job, sig string, dt time.Duration) dedupe.Job {
	j.RootSignature, j.RootDT = sig, t0.Add(dt)
	return j
}
func withTTL(j dedupe.Job, ttl time.Duration) dedupe.Job { j.ClaimTTL = ttl; return j }
func inNS(j dedupe.Job, ns string) dedupe.Job            { j.Namespace = ns; return j }

var storeCases = []struct {
	name string
	jobs map[string]dedupe.Job
	ops  []op
}{
	{
		name: "same event twice: busy while claimed, duplicate only after confirm, for one hour",
		jobs: map[string]dedupe.Job{"a": job("a", 0)},
		ops: []op{
			claim("a", 0, dedupe.Fresh),
			claimAs("copy", "a", time.Second, dedupe.Busy),
			confirm("a", 2*time.Second),
			claim("a", 3*time.Second, dedupe.DuplicateID),
			claim("a", 2*time.Second+time.Hour-time.Millisecond, dedupe.DuplicateID),
			claim("a", 2*time.Second+time.Hour, dedupe.Fresh),
		},
	},
	{
		name: "release: the next copy runs again",
		jobs: map[string]dedupe.Job{"a": job("a", 0)},
		ops: []op{
			claim("a", 0, dedupe.Fresh),
			release("a"),
			claim("a", time.Second, dedupe.Fresh),
			confirm("a", 2*time.Second),
			claim("a", 3*time.Second, dedupe.DuplicateID),
		},
	},
	{
		name: "crash: the dead claim makes copies busy until it expires, then fresh",
		jobs: map[string]dedupe.Job{"a": withTTL(job("a", 0), 30*time.Second)},
		ops: []op{
			claimAs("dead", "a", 0, dedupe.Fresh),
			claimAs("redelivered", "a", 29*time.Second, dedupe.Busy),
			claimAs("redelivered", "a", 30*time.Second, dedupe.Fresh),
			release("dead"), // a late release of the dead claim leaves the new one alone
			claimAs("third", "a", 31*time.Second, dedupe.Busy),
			confirm("redelivered", 40*time.Second),
			claim("a", 41*time.Second, dedupe.DuplicateID),
		},
	},
	{
		name: "claim without a TTL of its own lives the store's default",
		jobs: map[string]dedupe.Job{"a": job("a", 0)},
		ops: []op{
			claimAs("dead", "a", 0, dedupe.Fresh),
			claimAs("copy", "a", dedupe.DefaultClaimTTL-time.Millisecond, dedupe.Busy),
			claimAs("copy", "a", dedupe.DefaultClaimTTL, dedupe.Fresh),
		},
	},
	{
		name: "sha1: processed after the event's dt less 1s is a duplicate, for one hour",
		jobs: map[string]dedupe.Job{
			"a":     withSHA1(job("a", 0), "s"),
			"older": withSHA1(job("older", 5*time.Second), "s"),
			"edge":  withSHA1(job("edge", 11*time.Second-time.Millisecond), "s"),
			"newer": withSHA1(job("newer", 11*time.Second), "s"),
			"other": withSHA1(job("other", 0), "t"),
		},
		ops: []op{
			claim("a", 10*time.Second, dedupe.Fresh), // processing time: 10s
			claim("older", 15*time.Second, dedupe.Fresh),
			release("older"), // the sha1 counts only once done
			confirm("a", 20*time.Second),
			claim("older", 21*time.Second, dedupe.DuplicateSHA1),
			claim("edge", 21*time.Second, dedupe.DuplicateSHA1),
			claim("newer", 21*time.Second, dedupe.Fresh),
			claim("other", 21*time.Second, dedupe.Fresh),
			claimAs("older2", "older", 20*time.Second+time.Hour-time.Millisecond, dedupe.DuplicateSHA1),
			claimAs("older3", "older", 20*time.Second+time.Hour, dedupe.Fresh),
		},
	},
	{
		name: "sha1: compared with root_event.dt when the event has one",
		jobs: map[string]dedupe.Job{
			"a":       withSHA1(job("a", 0), "s"),
			"late":    withSHA1(withRoot(job("late", 30*time.Second), "", 5*time.Second), "s"),
			"lateNew": withSHA1(withRoot(job("lateNew", 30*time.Second), "", 20*time.Second), "s"),
		},
		ops: []op{
			claim("a", 10*time.Second, dedupe.Fresh),
			confirm("a", 12*time.Second),
			claim("late", 40*time.Second, dedupe.DuplicateSHA1),
			claim("lateNew", 40*time.Second, dedupe.Fresh),
		},
	},
	{
		name: "sha1: an older processing time never replaces a newer one",
		jobs: map[string]dedupe.Job{
			"slow":  withSHA1(job("slow", 0), "s"),
			"quick": withSHA1(job("quick", 0), "s"),
			"b":     withSHA1(job("b", 15*time.Second), "s"),
		},
		ops: []op{
			claim("slow", time.Second, dedupe.Fresh),     // processing time 1s
			claim("quick", 20*time.Second, dedupe.Fresh), // processing time 20s
			confirm("quick", 21*time.Second),
			confirm("slow", 22*time.Second),
			claim("b", 23*time.Second, dedupe.DuplicateSHA1), // 20s > 15s-1s
		},
	},
	{
		name: "root: a newer root_event.dt done makes older ones duplicates, for one day",
		jobs: map[string]dedupe.Job{
			"a":     withRoot(job("a", 0), "R", 10*time.Second),
			"older": withRoot(job("older", 0), "R", 5*time.Second),
			"same":  withRoot(job("same", 0), "R", 10*time.Second),
			"newer": withRoot(job("newer", 0), "R", 20*time.Second),
			"mid":   withRoot(job("mid", 0), "R", 15*time.Second),
			"other": withRoot(job("other", 0), "Q", 0),
		},
		ops: []op{
			claim("a", time.Minute, dedupe.Fresh),
			claim("older", time.Minute, dedupe.Fresh), // not done yet: runs too
			confirm("a", 2*time.Minute),
			confirm("older", 2*time.Minute), // does not lower the signature's time
			claim("mid", 3*time.Minute, dedupe.Fresh),
			release("mid"),
			claim("same", 3*time.Minute, dedupe.Fresh), // equal is not newer
			claim("other", 3*time.Minute, dedupe.Fresh),
			claim("newer", 3*time.Minute, dedupe.Fresh),
			confirm("newer", 4*time.Minute),
			claim("mid", 5*time.Minute, dedupe.DuplicateRoot),
			claimAs("mid2", "mid", 4*time.Minute+24*time.Hour-time.Millisecond, dedupe.DuplicateRoot),
			claimAs("mid3", "mid", 4*time.Minute+24*time.Hour, dedupe.Fresh),
		},
	},
	{
		name: "rules apply in order: id before sha1 before root",
		jobs: map[string]dedupe.Job{
			"a":    withRoot(withSHA1(job("a", 0), "s"), "R", 10*time.Second),
			"b":    withRoot(withSHA1(job("b", 0), "s"), "R", 5*time.Second),
			"c":    withRoot(withSHA1(job("c", 0), "t"), "R", 5*time.Second),
			"busy": withRoot(withSHA1(job("busy", 0), "s"), "R", 5*time.Second),
		},
		ops: []op{
			claim("busy", 0, dedupe.Fresh),
			claim("a", 30*time.Second, dedupe.Fresh),
			confirm("a", 31*time.Second),
			claim("a", 32*time.Second, dedupe.DuplicateID),
			claimAs("busy2", "busy", 32*time.Second, dedupe.Busy),
			claim("b", 32*time.Second, dedupe.DuplicateSHA1),
			claim("c", 32*time.Second, dedupe.DuplicateRoot),
		},
	},
	{
		name: "namespaces isolate every rule",
		jobs: map[string]dedupe.Job{
			"a":  withRoot(withSHA1(job("a", 0), "s"), "R", 10*time.Second),
			"a2": inNS(withRoot(withSHA1(job("a", 0), "s"), "R", 5*time.Second), "rule-stream2"),
			"b2": inNS(withRoot(withSHA1(job("b", 0), "s"), "R", 5*time.Second), "rule-stream2"),
		},
		ops: []op{
			claim("a", 30*time.Second, dedupe.Fresh),
			confirm("a", 31*time.Second),
			claim("a2", 32*time.Second, dedupe.Fresh),
			claim("b2", 32*time.Second, dedupe.Fresh),
		},
	},
}

// testStore is the conformance suite of Store. newStore returns an empty
// store for each case.
func testStore(t *testing.T, newStore func(t *testing.T) dedupe.Store) {
	ctx := context.Background()
	for _, tc := range storeCases {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			claims := map[string]*dedupe.Claim{}
			for i, o := range tc.ops {
				name := o.as
				if name == "" {
					name = o.job
				}
				now := t0.Add(o.at)
				switch o.do {
				case "claim":
					got, c, err := s.Claim(ctx, tc.jobs[o.job], now)
					if err != nil {
						t.Fatalf("op %d: claim %s: %v", i, o.job, err)
					}
					if got != o.want {
						t.Fatalf("op %d: claim %s at +%v = %v, want %v", i, o.job, o.at, got, o.want)
					}
					if (c != nil) != (got == dedupe.Fresh) {
						t.Fatalf("op %d: claim %s: result %v with claim %v", i, o.job, got, c)
					}
					claims[name] = c
				case "confirm":
					if err := s.Confirm(ctx, mustClaim(t, claims, name), now); err != nil {
						t.Fatalf("op %d: confirm %s: %v", i, name, err)
					}
				case "release":
					if err := s.Release(ctx, mustClaim(t, claims, name)); err != nil {
						t.Fatalf("op %d: release %s: %v", i, name, err)
					}
				}
			}
		})
	}

	t.Run("nil claims are no-ops", func(t *testing.T) {
		s := newStore(t)
		if err := s.Confirm(ctx, nil, t0); err != nil {
			t.Errorf("Confirm(nil) = %v", err)
		}
		if err := s.Release(ctx, nil); err != nil {
			t.Errorf("Release(nil) = %v", err)
		}
	})

	t.Run("concurrent copies: exactly one is fresh", func(t *testing.T) {
		s := newStore(t)
		const copies = 16
		var wg sync.WaitGroup
		results := make(chan dedupe.Result, copies)
		for range copies {
			wg.Go(func() {
				r, _, err := s.Claim(ctx, job("a", 0), t0)
				if err != nil {
					t.Error(err)
				}
				results <- r
			})
		}
		wg.Wait()
		close(results)
		fresh := 0
		for r := range results {
			switch r {
			case dedupe.Fresh:
				fresh++
			case dedupe.Busy:
			default:
				t.Errorf("result %v, want fresh or busy", r)
			}
		}
		if fresh != 1 {
			t.Errorf("%d fresh copies, want 1", fresh)
		}
	})
}

func mustClaim(t *testing.T, claims map[string]*dedupe.Claim, name string) *dedupe.Claim {
	t.Helper()
	c, ok := claims[name]
	if !ok || c == nil {
		t.Fatalf("no claim %q", name)
	}
	return c
}

func TestMemoryStore(t *testing.T) {
	testStore(t, func(*testing.T) dedupe.Store { return dedupe.NewMemory() })
}

func TestMemoryBounded(t *testing.T) {
	ctx := context.Background()
	m := dedupe.NewMemoryWith(dedupe.MemoryOptions{MaxEntries: 100})
	for i := range 1000 {
		j := withRoot(withSHA1(job(string(rune('a'+i%26))+itoa(i), 0), itoa(i)), itoa(i), 0)
		r, c, err := m.Claim(ctx, j, t0)
		if err != nil || r != dedupe.Fresh {
			t.Fatalf("claim %d = %v, %v", i, r, err)
		}
		if err := m.Confirm(ctx, c, t0); err != nil {
			t.Fatal(err)
		}
		if n := m.Len(); n > 100 {
			t.Fatalf("after %d jobs: %d entries, bound 100", i+1, n)
		}
	}
}

// TestMemoryEvictsExpiredFirst: a full store makes room with its expired
// entries before live ones.
func TestMemoryEvictsExpiredFirst(t *testing.T) {
	ctx := context.Background()
	m := dedupe.NewMemoryWith(dedupe.MemoryOptions{MaxEntries: 1000})
	run := func(id string, at time.Time) {
		t.Helper()
		r, c, err := m.Claim(ctx, job(id, 0), at)
		if err != nil || r != dedupe.Fresh {
			t.Fatalf("claim %s = %v, %v", id, r, err)
		}
		if err := m.Confirm(ctx, c, at); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 900 {
		run("old"+itoa(i), t0)
	}
	t1 := t0.Add(dedupe.IDTTL + time.Second) // every "old" mark has expired
	for i := range 300 {
		run("new"+itoa(i), t1)
	}
	if n := m.Len(); n > 1000 {
		t.Fatalf("%d entries, bound 1000", n)
	}
	for i := range 300 {
		if r, _, _ := m.Claim(ctx, job("new"+itoa(i), 0), t1); r != dedupe.DuplicateID {
			t.Fatalf("new%d again = %v, want a duplicate: a live mark went before expired ones", i, r)
		}
	}
}

// TestMemoryEvictsClaimsLast: a store full of done marks keeps the claims
// of jobs in flight.
func TestMemoryEvictsClaimsLast(t *testing.T) {
	ctx := context.Background()
	m := dedupe.NewMemoryWith(dedupe.MemoryOptions{MaxEntries: 100})
	for i := range 10 {
		if r, _, err := m.Claim(ctx, job("inflight"+itoa(i), 0), t0); err != nil || r != dedupe.Fresh {
			t.Fatalf("claim = %v, %v", r, err)
		}
	}
	for i := range 2000 {
		j := withRoot(withSHA1(job("done"+itoa(i), 0), "s"+itoa(i)), "R"+itoa(i), 0)
		_, c, _ := m.Claim(ctx, j, t0)
		if err := m.Confirm(ctx, c, t0); err != nil {
			t.Fatal(err)
		}
		if n := m.Len(); n > 100 {
			t.Fatalf("after %d jobs: %d entries, bound 100", i+1, n)
		}
	}
	for i := range 10 {
		if r, _, _ := m.Claim(ctx, job("inflight"+itoa(i), 0), t0); r != dedupe.Busy {
			t.Fatalf("inflight%d = %v, want busy: its claim was dropped", i, r)
		}
	}
}

func TestMemoryExpiresLazily(t *testing.T) {
	ctx := context.Background()
	m := dedupe.NewMemory()
	_, c, _ := m.Claim(ctx, withRoot(withSHA1(job("a", 0), "s"), "R", 0), t0)
	_ = m.Confirm(ctx, c, t0)
	if n := m.Len(); n != 3 {
		t.Fatalf("%d entries, want 3 (id, sha1, root)", n)
	}
	// A day later every mark has expired; claiming the job looks at and
	// drops all three, and places a new claim.
	r, _, _ := m.Claim(ctx, withRoot(withSHA1(job("a", 0), "s"), "R", 0), t0.Add(dedupe.RootTTL))
	if r != dedupe.Fresh {
		t.Fatalf("claim = %v, want fresh", r)
	}
	if n := m.Len(); n != 1 {
		t.Fatalf("%d entries, want 1 (the new claim)", n)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestResult(t *testing.T) {
	tests := []struct {
		r    dedupe.Result
		dup  bool
		name string
	}{
		{dedupe.Fresh, false, "fresh"},
		{dedupe.Busy, false, "busy"},
		{dedupe.DuplicateID, true, "duplicate_id"},
		{dedupe.DuplicateSHA1, true, "duplicate_sha1"},
		{dedupe.DuplicateRoot, true, "duplicate_root"},
		{dedupe.Result(99), false, "unknown"},
	}
	for _, tt := range tests {
		if tt.r.Duplicate() != tt.dup || tt.r.String() != tt.name {
			t.Errorf("%d: Duplicate() = %v, String() = %q; want %v, %q", tt.r, tt.r.Duplicate(), tt.r.String(), tt.dup, tt.name)
		}
	}
}
