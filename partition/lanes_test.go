package partition

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// keyOf is the key of a test value: its letters ("enwiki3" -> "enwiki").
func keyOf(v string) string { return strings.TrimRight(v, "0123456789") }

// parseLimits reads "2 a=1 b=0": the default, then overrides.
func parseLimits(t *testing.T, f []string) Limits {
	t.Helper()
	l := Limits{Overrides: map[string]int{}}
	for i, s := range f {
		k, v, isOverride := strings.Cut(s, "=")
		if !isOverride {
			v = k
		}
		n, err := strconv.Atoi(v)
		if err != nil || (i == 0) == isOverride {
			t.Fatalf("bad limits %q", f)
		}
		if isOverride {
			l.Overrides[k] = n
		} else {
			l.Default = n
		}
	}
	return l
}

// run plays a script against Lanes. Steps:
//
//	push a1 b1      push values (key = the letters)
//	next a1         Next must return a1; "next -" means nothing may start
//	done a          Done("a")
//	limits 2 a=1    SetLimits(default 2, override a=1)
//	drain a2 b1     Drain must return exactly these, in order ("drain" alone: none)
//	waiting 3       Waiting() == 3
//	inflight a 2    InFlight("a") == 2
func run(t *testing.T, l *Lanes[string], script []string) {
	t.Helper()
	for i, step := range script {
		f := strings.Fields(step)
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("step %d %q: %s", i, step, fmt.Sprintf(format, args...))
		}
		switch f[0] {
		case "push":
			for _, v := range f[1:] {
				l.Push(keyOf(v), v)
			}
		case "next":
			k, v, ok := l.Next()
			switch {
			case f[1] == "-" && ok:
				fail("Next = %s, want nothing", v)
			case f[1] != "-" && (!ok || v != f[1] || k != keyOf(f[1])):
				fail("Next = %q %q %v", k, v, ok)
			}
		case "done":
			l.Done(f[1])
		case "limits":
			l.SetLimits(parseLimits(t, f[1:]))
		case "drain":
			if got := l.Drain(); !slices.Equal(got, f[1:]) {
				fail("Drain = %v", got)
			}
		case "waiting":
			if got := l.Waiting(); strconv.Itoa(got) != f[1] {
				fail("Waiting = %d", got)
			}
		case "inflight":
			if got := l.InFlight(f[1]); strconv.Itoa(got) != f[2] {
				fail("InFlight = %d", got)
			}
		default:
			t.Fatalf("bad step %q", step)
		}
	}
}

func TestLanes(t *testing.T) {
	tests := []struct {
		name    string
		limits  string // as for "limits"
		ordered bool
		script  []string
	}{
		{"unlimited by default", "0", false, []string{
			"push a1 a2 b1 a3", "next a1", "next a2", "next b1", "next a3", "next -",
			"inflight a 3", "inflight b 1", "waiting 0",
		}},
		{"per-key limit", "1", false, []string{
			"push a1 a2 b1 b2", "next a1", "next b1", "next -", "waiting 2",
			"done a", "next a2", "next -", "done b", "next b2", "next -",
		}},
		{"oldest startable first across keys", "1", false, []string{
			"push a1 b1 a2 c1 b2 d1", "next a1", "next b1", "next c1", "next d1", "next -",
			"done b", "done a", "next a2", "next b2",
		}},
		{"overrides", "1 enwiki=2 dewiki=0", false, []string{
			"push enwiki1 enwiki2 enwiki3 frwiki1 frwiki2 dewiki1 dewiki2 dewiki3",
			"next enwiki1", "next enwiki2", "next frwiki1", "next dewiki1", "next dewiki2", "next dewiki3", "next -",
			"done enwiki", "next enwiki3", "inflight enwiki 2", "inflight dewiki 3",
		}},
		{"ordered runs a key one at a time in push order", "5", true, []string{
			"push a1 a2 b1 a3 b2", "next a1", "next b1", "next -",
			"done b", "next b2", "done a", "next a2", "next -", "done a", "next a3",
		}},
		{"ordered with unlimited default", "0", true, []string{
			"push a1 a2 b1", "next a1", "next b1", "next -", "done a", "next a2",
		}},
		{"raising a limit lets more start", "1", false, []string{
			"push a1 a2 a3 b1", "next a1", "next b1", "next -",
			"limits 1 a=3", "next a2", "next a3", "inflight a 3",
		}},
		{"lowering a limit stops nothing that runs", "3", false, []string{
			"push a1 a2 a3 a4", "next a1", "next a2", "limits 1", "inflight a 2", "next -",
			"done a", "next -", "done a", "next a3", "next -", "limits 0", "next a4",
		}},
		{"removing an override falls back to the default", "1 a=2", false, []string{
			"push a1 a2 a3", "next a1", "next a2", "done a", "done a", "limits 1", "next a3", "next -",
		}},
		{"drain returns the waiting in push order", "1", false, []string{
			"push a1 b1 a2 c1 b2", "next a1", "drain b1 a2 c1 b2", "waiting 0", "next -",
			"inflight a 1", "done a", "push a3", "next a3", "drain",
		}},
		{"keys come and go", "1", false, []string{
			"push a1", "next a1", "done a", "inflight a 0", "push a2 b1", "next a2", "next b1",
			"done a", "done b", "push b2", "next b2",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLanes[string](parseLimits(t, strings.Fields(tt.limits)), tt.ordered)
			run(t, l, tt.script)
		})
	}
}

func TestLanesDoneWithoutInFlightPanics(t *testing.T) {
	l := NewLanes[int](Limits{}, false)
	l.Push("a", 1)
	defer func() {
		if recover() == nil {
			t.Fatal("Done of a key with nothing in flight did not panic")
		}
	}()
	l.Done("a")
}

func TestLimitsFor(t *testing.T) {
	l := Limits{Default: 4, Overrides: map[string]int{"enwiki": 10, "bad": -1}}
	for key, want := range map[string]int{"enwiki": 10, "dewiki": 4, "bad": 0} {
		if got := l.For(key); got != want {
			t.Errorf("For(%q) = %d, want %d", key, got, want)
		}
	}
	if got := (Limits{}).For("x"); got != 0 {
		t.Errorf("zero Limits: %d, want 0 (unlimited)", got)
	}
}

// model is the obvious, slow Lanes: one list in push order; Next scans it.
type model struct {
	limits   Limits
	ordered  bool
	waiting  []string
	inflight map[string]int
}

func (m *model) cap(key string) int {
	if m.ordered {
		return 1
	}
	return m.limits.For(key)
}

func (m *model) next() (string, bool) {
	for i, v := range m.waiting {
		k := keyOf(v)
		if c := m.cap(k); c == 0 || m.inflight[k] < c {
			m.waiting = slices.Delete(m.waiting, i, i+1)
			m.inflight[k]++
			return v, true
		}
	}
	return "", false
}

func TestLanesAgainstModel(t *testing.T) {
	keys := []string{"a", "b", "c", "d", "e", "f"}
	randLimits := func(r *rand.Rand) Limits {
		l := Limits{Default: r.IntN(4), Overrides: map[string]int{}}
		for _, k := range keys {
			if r.IntN(3) == 0 {
				l.Overrides[k] = r.IntN(5)
			}
		}
		return l
	}
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 7))
		ordered := seed%3 == 0
		m := &model{limits: randLimits(r), ordered: ordered, inflight: map[string]int{}}
		l := NewLanes[string](m.limits, ordered)
		n := 0
		for step := range 2000 {
			switch op := r.IntN(100); {
			case op < 40:
				n++
				v := keys[r.IntN(len(keys))] + strconv.Itoa(n)
				m.waiting = append(m.waiting, v)
				l.Push(keyOf(v), v)
			case op < 75:
				want, wantOK := m.next()
				k, got, ok := l.Next()
				if ok != wantOK || got != want || (ok && k != keyOf(want)) {
					t.Fatalf("seed %d step %d: Next = %q %q %v, model %q %v", seed, step, k, got, ok, want, wantOK)
				}
			case op < 97:
				var running []string
				for _, k := range keys {
					if m.inflight[k] > 0 {
						running = append(running, k)
					}
				}
				if len(running) > 0 {
					k := running[r.IntN(len(running))]
					m.inflight[k]--
					l.Done(k)
				}
			case op < 99:
				m.limits = randLimits(r)
				l.SetLimits(m.limits)
			default:
				if got := l.Drain(); !slices.Equal(got, m.waiting) && len(got)+len(m.waiting) > 0 {
					t.Fatalf("seed %d step %d: Drain = %v, model %v", seed, step, got, m.waiting)
				}
				m.waiting = nil
			}
			if l.Waiting() != len(m.waiting) {
				t.Fatalf("seed %d step %d: Waiting = %d, model %d", seed, step, l.Waiting(), len(m.waiting))
			}
			total := 0
			for _, k := range keys {
				total += m.inflight[k]
				if l.InFlight(k) != m.inflight[k] {
					t.Fatalf("seed %d step %d: InFlight(%s) = %d, model %d", seed, step, k, l.InFlight(k), m.inflight[k])
				}
			}
			if l.Running() != total {
				t.Fatalf("seed %d step %d: Running = %d, model %d", seed, step, l.Running(), total)
			}
		}
	}
}

func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "wiki" + strconv.Itoa(i)
	}
	return keys
}

// Steady state: 2000 keys at a limit of 2, 4000 waiting; push, start, finish.
func BenchmarkLanesSteady(b *testing.B) {
	keys := benchKeys(2000)
	l := NewLanes[int](Limits{Default: 2}, false)
	for i := range 2 * len(keys) {
		l.Push(keys[i%len(keys)], i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Push(keys[i%len(keys)], i)
		k, _, ok := l.Next()
		if !ok {
			b.Fatal("nothing to start")
		}
		l.Done(k)
		i++
	}
}

// One hot key (enwiki) at its limit with 1000 waiting, while a thousand
// other keys flow: Next must not look at enwiki's queue.
func BenchmarkLanesHotBlockedKey(b *testing.B) {
	for _, waiting := range []int{1000, 100000} {
		b.Run(strconv.Itoa(waiting), func(b *testing.B) {
			keys := benchKeys(1000)
			l := NewLanes[int](Limits{Default: 4, Overrides: map[string]int{"enwiki": 1}}, false)
			l.Push("enwiki", 0)
			l.Next() // enwiki is at its limit from here on
			for i := range waiting {
				l.Push("enwiki", i)
			}
			for i := range keys {
				l.Push(keys[i], i)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				l.Push(keys[i%len(keys)], i)
				k, _, ok := l.Next()
				if !ok || k == "enwiki" {
					b.Fatalf("Next = %q %v", k, ok)
				}
				l.Done(k)
				i++
			}
		})
	}
}

func BenchmarkLanesOrdered(b *testing.B) {
	keys := benchKeys(100)
	l := NewLanes[int](Limits{}, true)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Push(keys[i%len(keys)], i)
		k, _, ok := l.Next()
		if !ok {
			b.Fatal("nothing to start")
		}
		l.Done(k)
		i++
	}
}
