package dedupe

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// DefaultMaxEntries bounds a Memory store made by NewMemory.
const DefaultMaxEntries = 1 << 19

// MemoryOptions configures a Memory store. Zero values mean the defaults.
type MemoryOptions struct {
	// ClaimTTL is the claim lifetime of jobs that set none (DefaultClaimTTL).
	ClaimTTL time.Duration
	// MaxEntries bounds the ids, sha1s and root signatures held together
	// (DefaultMaxEntries). When full, an insert makes room a batch at a
	// time: expired entries among those it looks at first, claims last;
	// a lost mark only lets a duplicate run once more.
	MaxEntries int
}

// Memory is an in-process Store for a service without Redis. It is safe
// for concurrent use; entries expire lazily against the now of each call.
//
// Entries are keyed by a 128-bit hash of their strings, not the strings:
// an entry costs about 40 bytes whatever the ids' length, and holds no
// reference into the event it came from (whose decoded strings share one
// copy of the whole event). Two different ids collide with a probability
// of about n²/2¹²⁹ for n entries, 10⁻²⁷ at the default bound.
type Memory struct {
	claimTTL time.Duration
	max      int
	seeds    [2]maphash.Seed

	mu    sync.Mutex
	seq   uint64
	ids   map[key]idEntry
	sha1s map[key]mark
	roots map[key]mark
}

// key identifies an entry: the hash of its namespace and strings.
type key [2]uint64

// key hashes a namespace and one or two strings.
func (m *Memory) key(ns, a, b string) key {
	v := struct{ ns, a, b string }{ns, a, b}
	return key{maphash.Comparable(m.seeds[0], v), maphash.Comparable(m.seeds[1], v)}
}

// idEntry is a claim (seq != 0) or a done mark (seq == 0).
type idEntry struct {
	exp int64 // unix ns
	seq uint64
}

// mark holds a time (the sha1's processing time, the signature's newest
// root_event.dt) until exp.
type mark struct{ exp, t int64 }

// NewMemory returns an empty Memory store with the default options.
func NewMemory() *Memory { return NewMemoryWith(MemoryOptions{}) }

// NewMemoryWith returns an empty Memory store.
func NewMemoryWith(o MemoryOptions) *Memory {
	if o.ClaimTTL <= 0 {
		o.ClaimTTL = DefaultClaimTTL
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	return &Memory{
		claimTTL: o.ClaimTTL,
		max:      o.MaxEntries,
		seeds:    [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		ids:      make(map[key]idEntry),
		sha1s:    make(map[key]mark),
		roots:    make(map[key]mark),
	}
}

// Len returns the number of entries held, expired ones included.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.len()
}

func (m *Memory) len() int { return len(m.ids) + len(m.sha1s) + len(m.roots) }

// Claim implements Store. It never fails.
func (m *Memory) Claim(_ context.Context, j Job, now time.Time) (Result, *Claim, error) {
	t := now.UnixNano()
	var keys [3]key
	keys[0] = m.key(j.Namespace, j.Domain, j.ID)
	if j.hasSHA1() {
		keys[1] = m.key(j.Namespace, j.SHA1, "")
	}
	if j.hasRoot() {
		keys[2] = m.key(j.Namespace, j.RootSignature, "")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.ids[keys[0]]; ok {
		switch {
		case e.exp <= t:
			delete(m.ids, keys[0])
		case e.seq == 0:
			return DuplicateID, nil, nil
		default:
			return Busy, nil, nil
		}
	}
	if j.hasSHA1() {
		if p, ok := m.live(m.sha1s, keys[1], t); ok && p > j.sha1Ref().Add(-SHA1Slack).UnixNano() {
			return DuplicateSHA1, nil, nil
		}
	}
	if j.hasRoot() {
		if r, ok := m.live(m.roots, keys[2], t); ok && r > j.RootDT.UnixNano() {
			return DuplicateRoot, nil, nil
		}
	}
	m.makeRoom(t, 1)
	m.seq++
	m.ids[keys[0]] = idEntry{exp: now.Add(claimTTL(&j, m.claimTTL)).UnixNano(), seq: m.seq}
	return Fresh, &Claim{job: j, at: now, seq: m.seq, keys: keys}, nil
}

// live returns the time held under k unless it has expired (and then
// drops it).
func (m *Memory) live(tab map[key]mark, k key, t int64) (int64, bool) {
	e, ok := tab[k]
	if !ok {
		return 0, false
	}
	if e.exp <= t {
		delete(tab, k)
		return 0, false
	}
	return e.t, true
}

// Confirm implements Store. It never fails.
func (m *Memory) Confirm(_ context.Context, c *Claim, now time.Time) error {
	if c == nil {
		return nil
	}
	j := &c.job
	t := now.UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.makeRoom(t, 3) // the done mark (its claim may have been dropped), sha1, root
	m.ids[c.keys[0]] = idEntry{exp: now.Add(IDTTL).UnixNano()}
	if j.hasSHA1() {
		m.raise(m.sha1s, c.keys[1], c.at.UnixNano(), now.Add(SHA1TTL).UnixNano(), t)
	}
	if j.hasRoot() {
		m.raise(m.roots, c.keys[2], j.RootDT.UnixNano(), now.Add(RootTTL).UnixNano(), t)
	}
	return nil
}

// raise stores v under k unless a live mark holds a later time.
func (m *Memory) raise(tab map[key]mark, k key, v, exp, t int64) {
	if old, ok := m.live(tab, k, t); ok && old > v {
		return
	}
	tab[k] = mark{exp: exp, t: v}
}

// Release implements Store. It never fails.
func (m *Memory) Release(_ context.Context, c *Claim) error {
	if c == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.ids[c.keys[0]]; ok && e.seq == c.seq {
		delete(m.ids, c.keys[0])
	}
	return nil
}

// makeRoom keeps the store under its bound before up to n inserts: while
// it is full it drops a batch of entries of the largest table, the expired
// ones among those it looks at first (of the ids, done marks before
// claims). The work per call is bounded: a full sweep of the 524,288
// entries of a full default store held the lock for 20 ms, for every
// worker; a batch takes microseconds, once per batch/3 jobs.
func (m *Memory) makeRoom(t int64, n int) {
	for m.len()+n > m.max {
		k := max(n, min(evictBatch, m.max/16))
		// From the largest table: a drained one would stay as large as it
		// was (maps do not shrink), and finding its few entries would
		// mean walking all its empty slots.
		switch ids, sha1s, roots := len(m.ids), len(m.sha1s), len(m.roots); {
		case sha1s >= ids && sha1s >= roots && sha1s > 0:
			dropBatch(m.sha1s, k, func(e mark) bool { return e.exp <= t }, nil)
		case roots >= ids && roots > 0:
			dropBatch(m.roots, k, func(e mark) bool { return e.exp <= t }, nil)
		case ids > 0:
			dropBatch(m.ids, k, func(e idEntry) bool { return e.exp <= t }, func(e idEntry) bool { return e.seq != 0 })
		default:
			return
		}
	}
}

// evictBatch is how many entries makeRoom drops at a time.
const evictBatch = 128

// dropBatch deletes k (at most evictBatch) entries of tab: the expired
// ones among the first 2k of its iteration (which starts at a random
// place), then the others seen, those that last reports (claims, of which
// there are at most the jobs in flight) after all the rest.
func dropBatch[V any](tab map[key]V, k int, expired, last func(V) bool) {
	var first, later [evictBatch]key
	nf, nl, dropped, seen := 0, 0, 0, 0
	k = min(k, evictBatch)
	for key, e := range tab {
		switch {
		case expired(e):
			delete(tab, key)
			dropped++
		case last != nil && last(e):
			if nl < k {
				later[nl] = key
				nl++
			}
		case nf < k:
			first[nf] = key
			nf++
		}
		if seen++; dropped >= k || (seen >= 2*k && nf+dropped >= k) {
			break
		}
	}
	for _, keys := range [2][]key{first[:nf], later[:nl]} {
		for _, key := range keys {
			if dropped >= k {
				return
			}
			delete(tab, key)
			dropped++
		}
	}
}
