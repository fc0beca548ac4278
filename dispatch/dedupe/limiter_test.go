package dedupe_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"changeprop/dispatch/dedupe"
)

const week = 7 * 24 * time.Hour

// limiterWindows is what the suite runs with: 3 per hour, 5 per week.
var limiterWindows = []dedupe.Window{{Limit: 3, Period: time.Hour}, {Limit: 5, Period: week}}

// lop is one step of a limiter case: record a failure of key, or check
// that key is (not) blocked.
type lop struct {
	fail    bool
	key     string
	at      time.Duration
	blocked bool
}

func fail(key string, at time.Duration) lop { return lop{fail: true, key: key, at: at} }
func check(key string, at time.Duration, blocked bool) lop {
	return lop{key: key, at: at, blocked: blocked}
}

var limiterCases = []struct {
	name string
	ops  []lop
}{
	{
		name: "hourly window: blocked at the limit until the oldest failure leaves",
		ops: []lop{
			check("k", 0, false),
			fail("k", 0),
			fail("k", 10*time.Minute),
			check("k", 15*time.Minute, false),
			fail("k", 20*time.Minute),
			check("k", 20*time.Minute, true),
			check("k", time.Hour-time.Millisecond, true),
			check("k", time.Hour, false),
			check("k", time.Hour+10*time.Minute, false),
		},
	},
	{
		name: "weekly window blocks what the hourly one lets through",
		ops: []lop{
			fail("k", 0),
			fail("k", 2*time.Hour),
			fail("k", 4*time.Hour),
			fail("k", 6*time.Hour),
			check("k", 7*time.Hour, false),
			fail("k", 8*time.Hour),
			check("k", 9*time.Hour, true),
			check("k", week-time.Millisecond, true),
			check("k", week, false),
		},
	},
	{
		name: "keys are independent",
		ops: []lop{
			fail("a", 0), fail("a", 0), fail("a", 0),
			check("a", time.Second, true),
			check("b", time.Second, false),
			check("html:a", time.Second, false),
		},
	},
	{
		name: "many failures are trimmed but still block, then age out",
		ops: append(repeat(50, func(i int) lop { return fail("k", time.Duration(i)*time.Minute) }),
			check("k", 50*time.Minute, true),
			check("k", 45*time.Minute+week-time.Millisecond, true), // the newest 5: 45m..49m
			check("k", 45*time.Minute+week, false),
		),
	},
	{
		name: "failures later than now (another instance's clock) count",
		ops: []lop{
			fail("k", time.Minute), fail("k", time.Minute), fail("k", time.Minute),
			check("k", 0, true),
		},
	},
}

func repeat(n int, f func(int) lop) []lop {
	ops := make([]lop, n)
	for i := range ops {
		ops[i] = f(i)
	}
	return ops
}

// testLimiter is the conformance suite of Limiter. newLimiter returns an
// empty limiter with the given windows for each case.
func testLimiter(t *testing.T, newLimiter func(t *testing.T, ws []dedupe.Window) dedupe.Limiter) {
	ctx := context.Background()
	for _, tc := range limiterCases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimiter(t, limiterWindows)
			for i, o := range tc.ops {
				now := t0.Add(o.at)
				if o.fail {
					if err := l.Failure(ctx, o.key, now); err != nil {
						t.Fatalf("op %d: failure %s: %v", i, o.key, err)
					}
					continue
				}
				got, err := l.Blocked(ctx, o.key, now)
				if err != nil {
					t.Fatalf("op %d: blocked %s: %v", i, o.key, err)
				}
				if got != o.blocked {
					t.Fatalf("op %d: blocked(%s, +%v) = %v, want %v", i, o.key, o.at, got, o.blocked)
				}
			}
		})
	}
}

func TestMemoryLimiter(t *testing.T) {
	testLimiter(t, func(_ *testing.T, ws []dedupe.Window) dedupe.Limiter { return dedupe.NewMemoryLimiter(ws) })
}

func TestValidateWindows(t *testing.T) {
	tests := []struct {
		name string
		ws   []dedupe.Window
		want []string // substrings of the error; none means valid
	}{
		{"valid", limiterWindows, nil},
		{"empty", nil, []string{"no windows"}},
		{"bad", []dedupe.Window{{Limit: 0, Period: time.Hour}, {Limit: 1, Period: -time.Second}},
			[]string{"windows[0].limit: 0", "windows[1].period: -1s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := dedupe.ValidateWindows(tt.ws)
			if (err != nil) != (len(tt.want) > 0) {
				t.Fatalf("ValidateWindows = %v, want errors %q", err, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
