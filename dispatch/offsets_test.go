package dispatch

import (
	"math/rand/v2"
	"testing"
)

func TestOffsetTracker(t *testing.T) {
	tests := []struct {
		name  string
		add   []int64
		done  []int64
		want  int64
		inFly int
	}{
		{name: "nothing read", want: -1},
		{name: "read, nothing done", add: []int64{5, 6, 7}, want: 5, inFly: 3},
		{name: "head done", add: []int64{5, 6, 7}, done: []int64{5}, want: 6, inFly: 2},
		{name: "tail done, head not", add: []int64{5, 6, 7}, done: []int64{6, 7}, want: 5, inFly: 1},
		{name: "all done", add: []int64{5, 6, 7}, done: []int64{7, 5, 6}, want: 8},
		{name: "gaps in offsets", add: []int64{10, 12, 20}, done: []int64{10, 12}, want: 20, inFly: 1},
		{name: "unknown offset ignored", add: []int64{1, 2}, done: []int64{9}, want: 1, inFly: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newOffsetTracker()
			for _, o := range tt.add {
				tr.add(o)
			}
			for _, o := range tt.done {
				tr.done(o)
			}
			if got := tr.committable(); got != tt.want {
				t.Errorf("committable = %d, want %d", got, tt.want)
			}
			if got := tr.inFlight(); got != tt.inFly {
				t.Errorf("inFlight = %d, want %d", got, tt.inFly)
			}
		})
	}
}

func TestOffsetTrackerDoneTwice(t *testing.T) {
	tr := newOffsetTracker()
	tr.add(1)
	tr.add(2)
	if !tr.done(2) {
		t.Fatal("first done(2) = false")
	}
	if tr.done(2) {
		t.Fatal("second done(2) = true")
	}
}

// TestOffsetTrackerNeverPassesUnfinished finishes offsets in random order and
// checks after every step that the committable offset never passes an
// unfinished one and always reaches the end of the finished run.
func TestOffsetTrackerNeverPassesUnfinished(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	tr := newOffsetTracker()
	const n = 5000
	done := make([]bool, n)
	next := 0
	order := r.Perm(n)
	for _, o := range order {
		// read ahead of the completions, as the poll loop does
		for next < n && next <= o+50 {
			tr.add(int64(next))
			next++
		}
		for next <= o {
			tr.add(int64(next))
			next++
		}
		tr.done(int64(o))
		done[o] = true
		want := 0
		for want < next && done[want] {
			want++
		}
		if got := tr.committable(); got != int64(want) {
			t.Fatalf("after done(%d): committable = %d, want %d", o, got, want)
		}
	}
	if got := tr.committable(); got != n {
		t.Fatalf("final committable = %d, want %d", got, n)
	}
}

func BenchmarkOffsetTracker(b *testing.B) {
	b.ReportAllocs()
	tr := newOffsetTracker()
	const window = 64
	for i := 0; i < b.N; i++ {
		tr.add(int64(i))
		if i >= window {
			tr.done(int64(i - window))
		}
	}
}
