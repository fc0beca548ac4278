package breaker

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var testSettings = Settings{
	FailureRatio:     0.5,
	MinRequests:      4,
	Interval:         10 * time.Second,
	OpenTimeout:      30 * time.Second,
	HalfOpenRequests: 2,
	IdleTTL:          time.Minute,
}

const dest = "http://jobrunner:80"

// advance moves the bubble's fake clock on by d (all goroutines are idle).
func advance(d time.Duration) { <-time.After(d) }

// request makes one request to dest that finishes at once.
func request(t *testing.T, s *Set, failure bool) {
	t.Helper()
	done, err := s.Allow(dest)
	if err != nil {
		t.Fatalf("Allow: %v", err)
	}
	done(failure)
}

// trip opens dest's breaker.
func trip(t *testing.T, s *Set) {
	t.Helper()
	for range testSettings.MinRequests {
		request(t, s, true)
	}
	if got := s.State(dest); got != Open {
		t.Fatalf("state after %d failures = %v, want open", testSettings.MinRequests, got)
	}
}

func TestClosedToOpen(t *testing.T) {
	// Each step: 'S' success, 'F' failure, a digit n: n seconds pass.
	tests := []struct {
		name  string
		steps string
		want  State
	}{
		{"fewer than MinRequests", "FFF", Closed},
		{"ratio and MinRequests reached", "SSFF", Open},
		{"ratio not reached", "SSSFF", Closed},
		{"all fail", "FFFF", Open},
		{"ratio reached at MinRequests only", "FFFS", Closed}, // opens only on a failure
		{"...and the next failure opens", "FFFSF", Open},
		{"old failures leave the window", "FFF9S3F", Closed},
		{"within the window they count", "FF5FS3F", Open},
		{"successes leave the window too", "SSSS9S3FFF", Open},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := NewSet(testSettings)
				for _, c := range tt.steps {
					switch c {
					case 'S', 'F':
						if s.State(dest) != Closed {
							t.Fatalf("opened before the last step")
						}
						request(t, s, c == 'F')
					default:
						advance(time.Duration(c-'0') * time.Second)
					}
				}
				if got := s.State(dest); got != tt.want {
					t.Errorf("state = %v, want %v", got, tt.want)
				}
			})
		})
	}
}

// A request slower than the window (a timeout) still counts when it ends.
func TestSlowFailuresCount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewSet(testSettings)
		var dones []func(bool)
		for range 4 {
			done, err := s.Allow(dest)
			if err != nil {
				t.Fatal(err)
			}
			dones = append(dones, done)
		}
		advance(time.Minute) // the runner hangs; our client times out
		for _, done := range dones {
			done(IsFailure(0, errTimeout))
		}
		if got := s.State(dest); got != Open {
			t.Fatalf("state = %v, want open", got)
		}
	})
}

var errTimeout = fmt.Errorf("Post: %w", timeoutErr{})

func TestOpenToHalfOpenToClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewSet(testSettings)
		trip(t, s)
		openedAt := time.Now()

		if _, err := s.Allow(dest); !errors.Is(err, ErrOpen) {
			t.Fatalf("Allow while open: err = %v, want ErrOpen", err)
		}
		until := s.WaitUntil(dest)
		if want := openedAt.Add(testSettings.OpenTimeout + time.Nanosecond); !until.Equal(want) {
			t.Fatalf("WaitUntil = %v, want %v", until, want)
		}
		advance(until.Sub(time.Now()) - time.Nanosecond)
		if _, err := s.Allow(dest); !errors.Is(err, ErrOpen) {
			t.Fatalf("Allow 1ns before WaitUntil: err = %v, want ErrOpen", err)
		}
		advance(time.Nanosecond)

		// Exactly at WaitUntil the trials begin.
		d1, err := s.Allow(dest)
		if err != nil {
			t.Fatalf("Allow at WaitUntil: %v", err)
		}
		if got := s.State(dest); got != HalfOpen {
			t.Fatalf("state = %v, want half-open", got)
		}
		if !s.WaitUntil(dest).IsZero() {
			t.Fatalf("WaitUntil of a half-open breaker = %v, want zero", s.WaitUntil(dest))
		}
		d2, err := s.Allow(dest)
		if err != nil {
			t.Fatalf("second trial: %v", err)
		}
		if _, err := s.Allow(dest); !errors.Is(err, ErrOpen) {
			t.Fatalf("third trial: err = %v, want ErrOpen (slots used up)", err)
		}
		d1(false)
		if got := s.State(dest); got != HalfOpen {
			t.Fatalf("after one success: %v, want half-open", got)
		}
		d2(false)
		if got := s.State(dest); got != Closed {
			t.Fatalf("after %d successes: %v, want closed", testSettings.HalfOpenRequests, got)
		}
		// Closed starts from a clean window.
		request(t, s, true)
		request(t, s, true)
		request(t, s, true)
		if got := s.State(dest); got != Closed {
			t.Fatalf("3 failures after closing: %v, want closed", got)
		}
	})
}

func TestHalfOpenFailureReopens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewSet(testSettings)
		trip(t, s)
		advance(s.WaitUntil(dest).Sub(time.Now()))
		d1, err := s.Allow(dest)
		if err != nil {
			t.Fatal(err)
		}
		d2, err := s.Allow(dest)
		if err != nil {
			t.Fatal(err)
		}
		d1(false)
		d2(true)
		if got := s.State(dest); got != Open {
			t.Fatalf("state = %v, want open", got)
		}
		if want := time.Now().Add(testSettings.OpenTimeout + time.Nanosecond); !s.WaitUntil(dest).Equal(want) {
			t.Fatalf("WaitUntil = %v, want %v (a fresh open period)", s.WaitUntil(dest), want)
		}
	})
}

// A result from before a state change does not count after it.
func TestStaleResultsIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewSet(testSettings)
		var stale []func(bool)
		for range 4 {
			d, _ := s.Allow(dest)
			stale = append(stale, d)
		}
		trip(t, s)
		advance(s.WaitUntil(dest).Sub(time.Now()))
		request(t, s, false)
		request(t, s, false)
		if got := s.State(dest); got != Closed {
			t.Fatalf("state = %v, want closed", got)
		}
		for _, d := range stale {
			d(true)
			d(true) // a second call is ignored
		}
		if got := s.State(dest); got != Closed {
			t.Fatalf("stale failures reopened the breaker: %v", got)
		}
	})
}

func TestIdleEviction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewSet(testSettings)
		request(t, s, false)                 // closed, idle soon
		busy, _ := s.Allow("http://busy:80") // closed, in flight
		for range 4 {                        // open
			d, _ := s.Allow("http://down:80")
			d(true)
		}
		s.Backoff("http://told:80", time.Now().Add(5*time.Minute))

		advance(testSettings.IdleTTL + testSettings.IdleTTL/4)
		got := s.Snapshot()
		want := map[string]State{"http://busy:80": Closed, "http://down:80": HalfOpen, "http://told:80": Closed}
		if !mapsEqual(got, want) {
			t.Fatalf("after IdleTTL: %v, want %v", got, want)
		}

		busy(false)
		advance(10 * time.Minute)
		got = s.Snapshot()
		want = map[string]State{"http://down:80": HalfOpen}
		if !mapsEqual(got, want) {
			t.Fatalf("after 10m more: %v, want %v (half-open is never evicted)", got, want)
		}
		// An evicted destination comes back fresh.
		if got := s.State(dest); got != Closed {
			t.Fatalf("evicted destination: %v", got)
		}
	})
}

func TestIdleEvictionNeverEvictsOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewSet(Settings{MinRequests: 1, OpenTimeout: time.Hour, IdleTTL: time.Minute})
		request(t, s, true)
		for range 50 {
			advance(time.Minute)
			if got := s.Snapshot()[dest]; got != Open {
				t.Fatalf("at %v: state %v, want open", time.Now(), got)
			}
		}
	})
}

func mapsEqual(a, b map[string]State) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewSet(testSettings)
		until, ok := ParseRetryAfter("5", time.Now())
		if !ok {
			t.Fatal("ParseRetryAfter")
		}
		s.Backoff(dest, until)
		s.Backoff(dest, time.Now().Add(time.Second)) // does not shorten
		if _, err := s.Allow(dest); !errors.Is(err, ErrBackoff) {
			t.Fatalf("Allow: err = %v, want ErrBackoff", err)
		}
		if got := s.WaitUntil(dest); !got.Equal(until) {
			t.Fatalf("WaitUntil = %v, want %v", got, until)
		}
		if got := s.BackoffUntil(dest); !got.Equal(until) {
			t.Fatalf("BackoffUntil = %v, want %v", got, until)
		}
		if got := s.State(dest); got != Closed {
			t.Fatalf("a backoff is not a breaker state: %v", got)
		}
		advance(5 * time.Second)
		request(t, s, false)
		if !s.WaitUntil(dest).IsZero() || !s.BackoffUntil(dest).IsZero() {
			t.Fatalf("after the backoff: WaitUntil %v, BackoffUntil %v", s.WaitUntil(dest), s.BackoffUntil(dest))
		}

		// Capped at MaxBackoff (default 5m).
		s.Backoff(dest, time.Now().Add(24*time.Hour))
		if got, want := s.BackoffUntil(dest), time.Now().Add(5*time.Minute); !got.Equal(want) {
			t.Fatalf("capped BackoffUntil = %v, want %v", got, want)
		}

		// Open and backing off: the later of the two.
		s2 := NewSet(testSettings)
		trip(t, s2)
		s2.Backoff(dest, time.Now().Add(time.Minute))
		if got, want := s2.WaitUntil(dest), time.Now().Add(time.Minute); !got.Equal(want) {
			t.Fatalf("WaitUntil = %v, want %v", got, want)
		}
		s2.Backoff("http://other:80", time.Now().Add(time.Second))
		if got, want := s2.WaitUntil(dest), time.Now().Add(time.Minute); !got.Equal(want) {
			t.Fatalf("other destination's backoff leaked: %v", got)
		}
	})
}

func TestOnStateChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got []string
		var s *Set
		s = NewSet(testSettings, OnStateChange(func(d string, from, to State) {
			// Calling back into the Set must not deadlock.
			got = append(got, fmt.Sprintf("%s %v->%v now %v", d, from, to, s.State(d)))
		}))
		trip(t, s)
		advance(s.WaitUntil(dest).Sub(time.Now()))
		request(t, s, false)
		request(t, s, false)
		want := []string{
			dest + " closed->open now open",
			dest + " open->half-open now half-open",
			dest + " half-open->closed now closed",
		}
		if !slices.Equal(got, want) {
			t.Fatalf("transitions:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}

func TestCollector(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewSet(testSettings)
		trip(t, s)
		s.withDest(t, "http://ok:80")
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(s.Collector())
		want := `
# HELP changeprop_breaker_state Circuit breaker state per destination: 0 closed, 1 half-open, 2 open.
# TYPE changeprop_breaker_state gauge
changeprop_breaker_state{destination="http://jobrunner:80"} 2
changeprop_breaker_state{destination="http://ok:80"} 0
# HELP changeprop_breaker_transitions_total Circuit breaker state changes per destination, by the state reached.
# TYPE changeprop_breaker_transitions_total counter
changeprop_breaker_transitions_total{destination="http://jobrunner:80",to="closed"} 0
changeprop_breaker_transitions_total{destination="http://jobrunner:80",to="half-open"} 0
changeprop_breaker_transitions_total{destination="http://jobrunner:80",to="open"} 1
changeprop_breaker_transitions_total{destination="http://ok:80",to="closed"} 0
changeprop_breaker_transitions_total{destination="http://ok:80",to="half-open"} 0
changeprop_breaker_transitions_total{destination="http://ok:80",to="open"} 0
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
			t.Fatal(err)
		}

		// A scrape sees open -> half-open when it is due, without a request.
		advance(testSettings.OpenTimeout + time.Second)
		want = `
# HELP changeprop_breaker_state Circuit breaker state per destination: 0 closed, 1 half-open, 2 open.
# TYPE changeprop_breaker_state gauge
changeprop_breaker_state{destination="http://jobrunner:80"} 1
changeprop_breaker_state{destination="http://ok:80"} 0
# HELP changeprop_breaker_transitions_total Circuit breaker state changes per destination, by the state reached.
# TYPE changeprop_breaker_transitions_total counter
changeprop_breaker_transitions_total{destination="http://jobrunner:80",to="closed"} 0
changeprop_breaker_transitions_total{destination="http://jobrunner:80",to="half-open"} 1
changeprop_breaker_transitions_total{destination="http://jobrunner:80",to="open"} 1
changeprop_breaker_transitions_total{destination="http://ok:80",to="closed"} 0
changeprop_breaker_transitions_total{destination="http://ok:80",to="half-open"} 0
changeprop_breaker_transitions_total{destination="http://ok:80",to="open"} 0
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
			t.Fatal(err)
		}
		if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
			t.Fatalf("lint: %v %v", problems, err)
		}
	})
}

// withDest makes one request to d so it appears in s; it returns s.
func (s *Set) withDest(t *testing.T, d string) *Set {
	t.Helper()
	done, err := s.Allow(d)
	if err != nil {
		t.Fatal(err)
	}
	done(false)
	return s
}

// Many goroutines using many destinations at once; run with -race.
func TestConcurrent(t *testing.T) {
	s := NewSet(Settings{MinRequests: 5, OpenTimeout: time.Millisecond, IdleTTL: time.Millisecond},
		OnStateChange(func(string, State, State) {}))
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collector())
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 1000 {
				d := fmt.Sprintf("http://h%d:80", r.IntN(8))
				switch r.IntN(100) {
				case 0, 1, 2, 3, 4:
					s.Backoff(d, time.Now().Add(time.Microsecond))
				case 5, 6, 7, 8, 9:
					s.Snapshot()
					s.WaitUntil(d)
				case 10:
					if _, err := reg.Gather(); err != nil {
						t.Error(err)
					}
				default:
					if done, err := s.Allow(d); err == nil {
						done(r.IntN(3) == 0)
					} else if !errors.Is(err, ErrOpen) && !errors.Is(err, ErrBackoff) {
						t.Errorf("Allow: %v", err)
					}
				}
			}
		})
	}
	wg.Wait()
}

func TestSettingsDefaults(t *testing.T) {
	got := Settings{}.withDefaults()
	want := Settings{FailureRatio: 0.5, MinRequests: 20, Interval: 10 * time.Second,
		OpenTimeout: 30 * time.Second, HalfOpenRequests: 5, IdleTTL: 10 * time.Minute, MaxBackoff: 5 * time.Minute}
	if got != want {
		t.Fatalf("defaults = %+v, want %+v", got, want)
	}
	if got := testSettings.withDefaults(); got.MinRequests != 4 || got.HalfOpenRequests != 2 {
		t.Fatalf("explicit settings overridden: %+v", got)
	}
}

func BenchmarkAllow(b *testing.B) {
	s := NewSet(Settings{})
	b.ReportAllocs()
	for b.Loop() {
		done, err := s.Allow(dest)
		if err != nil {
			b.Fatal(err)
		}
		done(false)
	}
}

func BenchmarkAllowParallel(b *testing.B) {
	s := NewSet(Settings{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			done, err := s.Allow(dest)
			if err != nil {
				b.Fatal(err)
			}
			done(false)
		}
	})
}
