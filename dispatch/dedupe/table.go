package dedupe

// table is the Memory store's hash table: open addressing with linear
// probing over slots keyed by the entry's 128-bit hash, which is already
// uniform, so its first word is the home slot. A lookup, and a read then
// update of the same entry, touch one or two neighbouring cache lines;
// a Go map of this size took a directory, a control word and a slot,
// each a cache miss in a store of hundreds of thousands of entries.
//
// The zero key marks an empty slot (Memory.key never returns it).
// Deletion shifts the entries after it back, so there are no tombstones
// and a lookup ends at the first empty slot. The table doubles when more
// than half full and never shrinks, like a Go map. Half, not more: a full
// store evicts batch by batch round the table (dropBatch), so the slots
// the next batch reaches have filled longest; at 3/4 on average they
// were nearly full, with runs of 300 to 3,000 occupied slots for a
// lookup or a delete to walk (the Claim and Confirm of a job in a full
// store took 1.96 µs, against 0.91 at 1/2 and 1.37 with Go maps).
type table struct {
	slots []slot
	n     int
	// cursor is where the next eviction batch starts looking.
	cursor int
}

// slot is one entry: for ids, exp and a claim's sequence number (0: a
// done mark); for sha1s and roots, exp and the time held.
type slot struct {
	k   key
	exp int64
	v   int64
}

// minTableSlots is a new table's size.
const minTableSlots = 64

func (t *table) len() int { return t.n }

// find returns the index of k's slot, or of the empty slot where k would
// go and false.
func (t *table) find(k key) (int, bool) {
	if len(t.slots) == 0 {
		t.slots = make([]slot, minTableSlots)
	}
	mask := len(t.slots) - 1
	for i := int(k[0]) & mask; ; i = (i + 1) & mask {
		switch t.slots[i].k {
		case k:
			return i, true
		case key{}:
			return i, false
		}
	}
}

// get returns k's entry.
func (t *table) get(k key) (slot, int, bool) {
	i, ok := t.find(k)
	return t.slots[i], i, ok
}

// insertAt fills the empty slot i that find returned for k. It may move
// every entry: indexes from before it are stale.
func (t *table) insertAt(i int, k key, exp, v int64) {
	t.slots[i] = slot{k: k, exp: exp, v: v}
	t.n++
	if t.n > len(t.slots)/2 {
		t.grow()
	}
}

// put stores k's entry, replacing the one it has.
func (t *table) put(k key, exp, v int64) {
	i, ok := t.find(k)
	if ok {
		t.slots[i].exp, t.slots[i].v = exp, v
		return
	}
	t.insertAt(i, k, exp, v)
}

func (t *table) grow() {
	old := t.slots
	t.slots = make([]slot, 2*len(old))
	mask := len(t.slots) - 1
	for _, s := range old {
		if s.k == (key{}) {
			continue
		}
		i := int(s.k[0]) & mask
		for t.slots[i].k != (key{}) {
			i = (i + 1) & mask
		}
		t.slots[i] = s
	}
	t.cursor = 0
}

// deleteAt empties slot i and moves back the entries after it that could
// not otherwise be found from their home slot.
func (t *table) deleteAt(i int) {
	mask := len(t.slots) - 1
	for j := i; ; {
		j = (j + 1) & mask
		s := t.slots[j]
		if s.k == (key{}) {
			break
		}
		// s stays at j if its home h lies cyclically in (i, j].
		h := int(s.k[0]) & mask
		if (i < j && i < h && h <= j) || (j < i && (i < h || h <= j)) {
			continue
		}
		t.slots[i] = s
		i = j
	}
	t.slots[i] = slot{}
	t.n--
}

// delete drops k's entry if it has one.
func (t *table) delete(k key) {
	if i, ok := t.find(k); ok {
		t.deleteAt(i)
	}
}

// dropBatch deletes k (at most evictBatch) entries: the expired ones among
// the first 2k entries from the cursor, then the others seen, those that
// last reports (claims, of which there are at most the jobs in flight)
// after all the rest; it looks further than 2k entries only until it has
// k that last does not report. The next batch starts where this one
// stopped looking, so that batches go round the table.
func (t *table) dropBatch(k int, now int64, last func(slot) bool) {
	var expired, first, later [evictBatch]key
	ne, nf, nl, seen := 0, 0, 0, 0
	k = min(k, evictBatch, t.n)
	if k == 0 {
		return
	}
	mask := len(t.slots) - 1
	i := t.cursor & mask
	for ; seen < t.n; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.k == (key{}) {
			continue
		}
		seen++
		switch {
		case s.exp <= now:
			expired[ne] = s.k
			ne++
		case last != nil && last(*s):
			if nl < k {
				later[nl] = s.k
				nl++
			}
		case nf < k:
			first[nf] = s.k
			nf++
		}
		if ne >= k || (seen >= 2*k && ne+nf >= k) {
			i = (i + 1) & mask
			break
		}
	}
	t.cursor = i
	dropped := 0
	for _, keys := range [3][]key{expired[:ne], first[:nf], later[:nl]} {
		for _, key := range keys {
			if dropped >= k {
				return
			}
			t.delete(key)
			dropped++
		}
	}
}
