package rules

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// TestStopsWord: the eight-byte test says yes for every word holding a
// byte that stops a string scan, at every position, and no for a word of
// bytes that do not (its false positives only cost a closer look).
func TestStopsWord(t *testing.T) {
	word := func(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }
	for c := range 256 {
		for pos := range 8 {
			b := []byte("aaaaaaaa")
			b[pos] = byte(c)
			if got, want := stopsWord(word(b)), stopsString[c]; got != want {
				t.Fatalf("byte %#x at %d: stopsWord = %v, want %v", c, pos, got, want)
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		var b [8]byte
		stops := false
		for i := range b {
			b[i] = byte(r.IntN(256))
			stops = stops || stopsString[b[i]]
		}
		if stops && !stopsWord(word(b[:])) {
			t.Fatalf("%q: stopsWord says no", b)
		}
	}
}
