package dedupe

import (
	"context"
	"runtime"
	"testing"
	"time"
	"unsafe"
	"weak"
)

// TestMemoryKeepsNoEventBytes: the marks of a job hold nothing of the
// event the job's strings came from (decoded strings share one copy of
// the whole event), yet still recognise its duplicates.
func TestMemoryKeepsNoEventBytes(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	m := NewMemory()
	claim := func(ev *[4096]byte) Result {
		s := unsafe.String(&ev[0], len(ev))
		j := Job{Namespace: "refreshLinks", Domain: s[0:16], ID: s[17:53], SHA1: s[54:94], RootSignature: s[95:135],
			DT: now, RootDT: now, ClaimTTL: time.Minute}
		res, c, err := m.Claim(ctx, j, now)
		if err != nil {
			t.Fatal(err)
		}
		if c != nil {
			if err := m.Confirm(ctx, c, now.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		return res
	}
	event := func() *[4096]byte {
		ev := new([4096]byte)
		copy(ev[:], "en.wikipedia.org 0f5c6a3e-8d1b-4c7a-9e2f-3b4d5c6e7f80 "+
			"da39a3ee5e6b4b0d3255bfef95601890afd80709 5ba93c9db0cff93f52b521d7420e43f6eda2784f")
		return ev
	}
	ev := event()
	if res := claim(ev); res != Fresh {
		t.Fatalf("first claim = %v, want Fresh", res)
	}
	held := weak.Make(ev)
	ev = nil
	runtime.GC()
	runtime.GC()
	if held.Value() != nil {
		t.Error("the store keeps the event's bytes alive")
	}
	if res := claim(event()); res != DuplicateID {
		t.Errorf("claim of the same job again = %v, want DuplicateID", res)
	}
}

// BenchmarkMemoryKey is the hash of one dedupe entry of the Memory store.
func BenchmarkMemoryKey(b *testing.B) {
	m := NewMemory()
	b.ReportAllocs()
	for b.Loop() {
		m.key("refreshLinks", "en.wikipedia.org", "0f5c6a3e-8d1b-4c7a-9e2f-3b4d5c6e7f80")
	}
}
