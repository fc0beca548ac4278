package dedupe

import (
	"math/rand/v2"
	"testing"
)

// TestTableAgainstMap runs random puts, lookups and deletes against a
// table and a Go map. Keys are drawn from a small set whose first words
// share few home slots, so that probe chains are long, wrap round the
// end of the table and are cut in the middle by deletes.
func TestTableAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var tab table
	want := map[key]slot{}
	keyOf := func() key {
		// Homes 0-7 or the last slots of the table; the second word tells
		// the keys apart.
		home := uint64(rng.IntN(8))
		if rng.IntN(2) == 0 {
			home = ^uint64(0) - home
		}
		return key{home, uint64(rng.IntN(300)) + 1}
	}
	for op := range 50_000 {
		k := keyOf()
		switch rng.IntN(4) {
		case 0, 1:
			exp, v := rng.Int64(), rng.Int64()
			tab.put(k, exp, v)
			want[k] = slot{k: k, exp: exp, v: v}
		case 2:
			tab.delete(k)
			delete(want, k)
		case 3:
			got, _, ok := tab.get(k)
			w, wok := want[k]
			if ok != wok || (ok && got != w) {
				t.Fatalf("op %d: get(%v) = %v, %v; want %v, %v", op, k, got, ok, w, wok)
			}
		}
		if tab.len() != len(want) {
			t.Fatalf("op %d: len %d, want %d", op, tab.len(), len(want))
		}
	}
	for k, w := range want {
		if got, _, ok := tab.get(k); !ok || got != w {
			t.Fatalf("get(%v) = %v, %v at the end; want %v", k, got, ok, w)
		}
	}
	seg := &tab.segs[0] // every key's second word is under 2^56
	n := 0
	tab.each(func(slot) { n++ })
	if n != len(want) || seg.n != n || len(seg.slots) < 2*n {
		t.Fatalf("%d slots in use, %d counted, of %d; want %d at most half full", n, seg.n, len(seg.slots), len(want))
	}
}

// each calls f with every entry of t.
func (t *table) each(f func(slot)) {
	for i := range t.segs {
		for _, s := range t.segs[i].slots {
			if s.k != (key{}) {
				f(s)
			}
		}
	}
}

// TestTableDropBatch: a batch drops the expired entries it sees before
// live ones, and the entries last reports after all others, looking in
// other segments before it drops those.
func TestTableDropBatch(t *testing.T) {
	var tab table
	for i := range 15 {
		var exp, v int64 = 100, 0 // live done marks
		switch i % 3 {
		case 0:
			exp = 1 // expired
		case 1:
			v = 1 // a claim
		}
		// Claims in segment 0, the others anywhere.
		second := uint64(i) + 1
		if v == 0 {
			second |= uint64(rand.IntN(tableSegments)) << 56
		}
		tab.put(key{rand.Uint64(), second}, exp, v)
	}
	count := func(f func(slot) bool) (n int) {
		tab.each(func(s slot) {
			if f(s) {
				n++
			}
		})
		return n
	}
	expired := func(s slot) bool { return s.exp <= 50 }
	claim := func(s slot) bool { return s.v != 0 }
	// A batch of 8 looks at 15 entries, all of them.
	tab.dropBatch(8, 50, claim)
	if e, c, n := count(expired), count(claim), tab.len(); e != 0 || c != 5 || n != 7 {
		t.Fatalf("after a batch of 8: %d expired, %d claims, %d entries; want 0, 5, 7", e, c, n)
	}
	tab.dropBatch(4, 50, claim)
	if c, n := count(claim), tab.len(); c != 3 || n != 3 {
		t.Fatalf("after a batch of 4: %d claims, %d entries; want the 3 claims", c, n)
	}
	tab.dropBatch(evictBatch, 50, claim) // more than there are
	if tab.len() != 0 {
		t.Fatalf("%d entries left", tab.len())
	}
	tab.dropBatch(evictBatch, 50, claim) // empty: returns
}
