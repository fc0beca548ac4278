package partition

import (
	"strconv"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type reserve struct {
	key  string
	at   time.Duration // after t0
	want time.Duration
}

func TestLimitersReserveAt(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name  string
		spec  RateSpec
		steps []reserve
	}{
		{"unlimited", RateSpec{}, []reserve{{"a", 0, 0}, {"a", 0, 0}, {"a", 0, 0}}},
		{"negative rate is unlimited", RateSpec{Rate: -1, Burst: 1}, []reserve{{"a", 0, 0}, {"a", 0, 0}}},
		{"burst, then one every 100ms", RateSpec{Rate: 10, Burst: 2}, []reserve{
			{"a", 0, 0}, {"a", 0, 0}, {"a", 0, 100 * ms}, {"a", 0, 200 * ms},
			{"a", 50 * ms, 250 * ms}, // the bucket is in debt; each token waits its turn
		}},
		{"keys are independent", RateSpec{Rate: 1, Burst: 1}, []reserve{
			{"enwiki", 0, 0}, {"dewiki", 0, 0}, {"enwiki", 0, time.Second}, {"dewiki", 0, time.Second},
		}},
		{"refills up to burst only", RateSpec{Rate: 10, Burst: 2}, []reserve{
			{"a", 0, 0}, {"a", 0, 0}, {"a", 0, 100 * ms},
			{"a", time.Hour, 0}, {"a", time.Hour, 0}, {"a", time.Hour, 100 * ms},
		}},
		{"burst 0 means ceil(rate)", RateSpec{Rate: 2.5}, []reserve{
			{"a", 0, 0}, {"a", 0, 0}, {"a", 0, 0}, {"a", 0, 400 * ms},
		}},
		{"slow rate, burst defaults to 1", RateSpec{Rate: 0.5}, []reserve{
			{"a", 0, 0}, {"a", 0, 2 * time.Second}, {"a", time.Second, 3 * time.Second},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLimiters(tt.spec)
			for i, s := range tt.steps {
				if got := l.ReserveAt(s.key, t0.Add(s.at)); got != s.want {
					t.Fatalf("step %d: ReserveAt(%q, t0+%v) = %v, want %v", i, s.key, s.at, got, s.want)
				}
			}
		})
	}
}

func TestLimitersSetSpec(t *testing.T) {
	l := NewLimiters(RateSpec{Rate: 1, Burst: 1})
	step := func(key string, at, want time.Duration) {
		t.Helper()
		if got := l.ReserveAt(key, t0.Add(at)); got != want {
			t.Fatalf("ReserveAt(%q, t0+%v) = %v, want %v", key, at, got, want)
		}
	}
	step("a", 0, 0)
	step("a", 0, time.Second) // a owes one token

	l.SetSpec(RateSpec{Rate: 10, Burst: 1}) // faster: the debt is paid at the new rate
	step("a", 0, 200*time.Millisecond)
	step("b", 0, 0)
	step("b", 0, 100*time.Millisecond)

	l.SetSpec(RateSpec{Rate: 10, Burst: 5}) // a bigger bucket fills at the rate, not at once
	step("c", time.Second, 0)               // new keys start full
	step("b", time.Second, 0)
	step("b", time.Second+100*time.Millisecond, 0)
	step("b", time.Second+100*time.Millisecond, 100*time.Millisecond)

	l.SetSpec(RateSpec{}) // unlimited: buckets dropped
	step("a", time.Second, 0)
	step("a", time.Second, 0)
	if n := l.len(); n != 0 {
		t.Fatalf("unlimited keeps %d buckets", n)
	}

	l.SetSpec(RateSpec{Rate: 1, Burst: 1}) // limited again: fresh buckets
	step("a", time.Second, 0)
	step("a", time.Second, time.Second)
}

func TestLimitersDropFullBuckets(t *testing.T) {
	l := NewLimiters(RateSpec{Rate: 10, Burst: 2})
	for _, k := range []string{"a", "b", "c"} {
		l.ReserveAt(k, t0)
	}
	l.ReserveAt("d", t0.Add(30*time.Second))
	if n := l.len(); n != 4 {
		t.Fatalf("before a minute: %d buckets, want 4", n)
	}
	for range 20 { // hot key: stays in debt, so it stays
		l.ReserveAt("hot", t0.Add(time.Minute))
	}
	l.ReserveAt("x", t0.Add(time.Minute+time.Millisecond)) // sweeps: a, b, c, d are full again
	if n := l.len(); n != 2 {
		t.Fatalf("after a minute: %d buckets, want 2 (hot and x)", n)
	}
	if got := l.ReserveAt("hot", t0.Add(time.Minute+time.Millisecond)); got < time.Second {
		t.Fatalf("hot key lost its debt: wait %v", got)
	}
}

func TestLimitersConcurrent(t *testing.T) {
	l := NewLimiters(RateSpec{Rate: 1000, Burst: 10})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				l.ReserveAt("k"+strconv.Itoa((g+i)%5), now)
				if i%500 == 0 {
					l.SetSpec(RateSpec{Rate: float64(500 + i), Burst: 10})
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkLimitersReserveAt(b *testing.B) {
	keys := benchKeys(1000)
	l := NewLimiters(RateSpec{Rate: 1e6, Burst: 100})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.ReserveAt(keys[i%len(keys)], t0.Add(time.Duration(i)*time.Microsecond))
		i++
	}
}
