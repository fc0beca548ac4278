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
// an entry is a 32-byte slot of a table whose segments are at most half
// full (64 to 128 bytes; a full default store holds about 50 MB) whatever
// the ids' length, and holds no reference into the event it came from
// (whose decoded strings share one copy of the whole event). Two different ids collide with a probability
// of about n²/2¹²⁹ for n entries, 10⁻²⁷ at the default bound.
type Memory struct {
	claimTTL time.Duration
	max      int
	seeds    [2]maphash.Seed

	mu sync.Mutex
	// seq numbers the claims: an ids entry with v == 0 is a done mark,
	// otherwise the claim of that number. sha1s and roots hold a time
	// (the sha1's processing time, the signature's newest root_event.dt).
	seq               uint64
	ids, sha1s, roots table
}

// key identifies an entry: the hash of its namespace and strings.
type key [2]uint64

// key hashes a namespace and one or two strings. It is never the zero
// key, which marks an empty slot of a table.
func (m *Memory) key(ns, a, b string) key {
	v := struct{ ns, a, b string }{ns, a, b}
	k := key{maphash.Comparable(m.seeds[0], v), maphash.Comparable(m.seeds[1], v)}
	if k == (key{}) {
		k[1] = 1
	}
	return k
}

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
	}
}

// Len returns the number of entries held, expired ones included.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.len()
}

func (m *Memory) len() int { return m.ids.len() + m.sha1s.len() + m.roots.len() }

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
	if e, i, ok := m.ids.get(keys[0]); ok {
		switch {
		case e.exp <= t:
			m.ids.deleteAt(i)
		case e.v == 0:
			return DuplicateID, nil, nil
		default:
			return Busy, nil, nil
		}
	}
	if j.hasSHA1() {
		if p, ok := live(&m.sha1s, keys[1], t); ok && p > j.sha1Ref().Add(-SHA1Slack).UnixNano() {
			return DuplicateSHA1, nil, nil
		}
	}
	if j.hasRoot() {
		if r, ok := live(&m.roots, keys[2], t); ok && r > j.RootDT.UnixNano() {
			return DuplicateRoot, nil, nil
		}
	}
	m.makeRoom(t, 1)
	m.seq++
	m.ids.put(keys[0], now.Add(claimTTL(&j, m.claimTTL)).UnixNano(), int64(m.seq))
	return Fresh, &Claim{job: j, at: now, seq: m.seq, keys: keys}, nil
}

// live returns the time held under k unless it has expired (and then
// drops it).
func live(tab *table, k key, t int64) (int64, bool) {
	e, i, ok := tab.get(k)
	if !ok {
		return 0, false
	}
	if e.exp <= t {
		tab.deleteAt(i)
		return 0, false
	}
	return e.v, true
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
	m.ids.put(c.keys[0], now.Add(IDTTL).UnixNano(), 0)
	if j.hasSHA1() {
		raise(&m.sha1s, c.keys[1], c.at.UnixNano(), now.Add(SHA1TTL).UnixNano(), t)
	}
	if j.hasRoot() {
		raise(&m.roots, c.keys[2], j.RootDT.UnixNano(), now.Add(RootTTL).UnixNano(), t)
	}
	return nil
}

// raise stores v under k unless a live mark holds a later time: one
// lookup, then the entry updated in place or inserted where the lookup
// ended.
func raise(tab *table, k key, v, exp, t int64) {
	r, ok := tab.find(k)
	if !ok {
		tab.insertAt(r, k, exp, v)
		return
	}
	if s := r.slot(); s.exp <= t || s.v <= v {
		s.exp, s.v = exp, v
	}
}

// Release implements Store. It never fails.
func (m *Memory) Release(_ context.Context, c *Claim) error {
	if c == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, i, ok := m.ids.get(c.keys[0]); ok && uint64(e.v) == c.seq {
		m.ids.deleteAt(i)
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
		// was (tables do not shrink), and finding its few entries would
		// mean walking all its empty slots.
		switch ids, sha1s, roots := m.ids.len(), m.sha1s.len(), m.roots.len(); {
		case sha1s >= ids && sha1s >= roots && sha1s > 0:
			m.sha1s.dropBatch(k, t, nil)
		case roots >= ids && roots > 0:
			m.roots.dropBatch(k, t, nil)
		case ids > 0:
			m.ids.dropBatch(k, t, func(e slot) bool { return e.v != 0 })
		default:
			return
		}
	}
}

// evictBatch is how many entries makeRoom drops at a time.
const evictBatch = 128
