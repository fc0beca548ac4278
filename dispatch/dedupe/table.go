package dedupe

// table is the Memory store's hash table: open addressing with linear
// probing over slots keyed by the entry's 128-bit hash, which is already
// uniform, so its words pick the place directly. A lookup, and a read
// then update of the same entry, touch one or two neighbouring cache
// lines; a Go map of this size took a directory, a control word and a
// slot, each a cache miss in a store of hundreds of thousands of entries.
//
// The table is split into tableSegments segments by the top bits of the
// key's second word, each a linear-probing table of its own that doubles
// when more than half full: a growth copies one segment, a 1/256 of the
// entries. A table that doubled whole held the store's lock long enough
// to stall every worker: the slowest job of BenchmarkClaimConfirm/
// memory-fill took 40.5-43.5 ms, 0.85-1.17 ms with segments, 0.74-1.31
// ms with Go maps. Within a segment the first
// word gives the home slot. The zero key marks an empty slot (Memory.key
// never returns it). Deletion shifts the entries after it back, so there
// are no tombstones and a lookup ends at the first empty slot. Segments
// never shrink, like a Go map.
//
// Half full, not more: a full store evicts batch by batch round each
// segment (dropBatch), so the slots the next batch reaches have filled
// longest. Measured on one table before it had segments: at 3/4 on
// average those slots were nearly full, with runs of 300 to 3,000
// occupied slots for a lookup or a delete to walk, and the Claim and
// Confirm of a job in a full store took 1.96 µs, against 0.91 at 1/2
// and 1.37 with Go maps.
type table struct {
	segs [tableSegments]segment
	n    int
	// next is the segment the next eviction batch is taken from.
	next int
}

// tableSegments is the number of segments of a table: a power of two.
const tableSegments = 256

// segment is one linear-probing table of a table.
type segment struct {
	slots []slot
	n     int
	// cursor is where the next eviction batch in it starts looking.
	cursor int
}

// slot is one entry: for ids, exp and a claim's sequence number (0: a
// done mark); for sha1s and roots, exp and the time held.
type slot struct {
	k   key
	exp int64
	v   int64
}

// ref is a slot's place: valid until the table's next insert or delete.
type ref struct {
	s *segment
	i int
}

// minSegmentSlots is a new segment's size.
const minSegmentSlots = 16

func (t *table) len() int { return t.n }

// find returns the place of k's slot, or of the empty slot where k would
// go and false.
func (t *table) find(k key) (ref, bool) {
	s := &t.segs[k[1]>>56]
	if len(s.slots) == 0 {
		s.slots = make([]slot, minSegmentSlots)
	}
	mask := len(s.slots) - 1
	for i := int(k[0]) & mask; ; i = (i + 1) & mask {
		switch s.slots[i].k {
		case k:
			return ref{s, i}, true
		case key{}:
			return ref{s, i}, false
		}
	}
}

// slot returns the slot at r.
func (r ref) slot() *slot { return &r.s.slots[r.i] }

// get returns k's entry.
func (t *table) get(k key) (slot, ref, bool) {
	r, ok := t.find(k)
	return *r.slot(), r, ok
}

// insertAt fills the empty slot r that find returned for k. It may move
// every entry of the segment: places from before it are stale.
func (t *table) insertAt(r ref, k key, exp, v int64) {
	s := r.s
	s.slots[r.i] = slot{k: k, exp: exp, v: v}
	s.n++
	t.n++
	if s.n > len(s.slots)/2 {
		s.grow()
	}
}

// put stores k's entry, replacing the one it has.
func (t *table) put(k key, exp, v int64) {
	r, ok := t.find(k)
	if ok {
		e := r.slot()
		e.exp, e.v = exp, v
		return
	}
	t.insertAt(r, k, exp, v)
}

func (s *segment) grow() {
	old := s.slots
	s.slots = make([]slot, 2*len(old))
	mask := len(s.slots) - 1
	for _, e := range old {
		if e.k == (key{}) {
			continue
		}
		i := int(e.k[0]) & mask
		for s.slots[i].k != (key{}) {
			i = (i + 1) & mask
		}
		s.slots[i] = e
	}
	s.cursor = 0
}

// deleteAt empties the slot at r and moves back the entries after it
// that could not otherwise be found from their home slot.
func (t *table) deleteAt(r ref) {
	s, i := r.s, r.i
	mask := len(s.slots) - 1
	for j := i; ; {
		j = (j + 1) & mask
		e := s.slots[j]
		if e.k == (key{}) {
			break
		}
		// e stays at j if its home h lies cyclically in (i, j].
		h := int(e.k[0]) & mask
		if (i < j && i < h && h <= j) || (j < i && (i < h || h <= j)) {
			continue
		}
		s.slots[i] = e
		i = j
	}
	s.slots[i] = slot{}
	s.n--
	t.n--
}

// delete drops k's entry if it has one.
func (t *table) delete(k key) {
	if r, ok := t.find(k); ok {
		t.deleteAt(r)
	}
}

// dropBatch deletes k (at most evictBatch) entries, taken from the
// segments in turn: the expired ones among the first 2k entries it looks
// at, then the others seen, those that last reports (claims, of which
// there are at most the jobs in flight) after all the rest. It looks in
// a segment from its cursor, and goes on to the next segment only when
// this one has not given it that many; it looks further than 2k entries
// only until it has k that last does not report. A segment's next look
// starts where this one stopped, so that batches go round it.
func (t *table) dropBatch(k int, now int64, last func(slot) bool) {
	var expired, first, later [evictBatch]key
	ne, nf, nl, seen := 0, 0, 0, 0
	k = min(k, evictBatch, t.n)
	if k == 0 {
		return
	}
	enough := func() bool { return ne >= k || (seen >= 2*k && ne+nf >= k) }
	for range tableSegments {
		s := &t.segs[t.next]
		if s.n == 0 {
			t.next = (t.next + 1) % tableSegments
			continue
		}
		mask := len(s.slots) - 1
		i, inSeg := s.cursor&mask, 0
		for ; inSeg < s.n && !enough(); i = (i + 1) & mask {
			e := &s.slots[i]
			if e.k == (key{}) {
				continue
			}
			seen++
			inSeg++
			switch {
			case e.exp <= now:
				expired[ne] = e.k
				ne++
			case last != nil && last(*e):
				if nl < k {
					later[nl] = e.k
					nl++
				}
			case nf < k:
				first[nf] = e.k
				nf++
			}
		}
		s.cursor = i
		if enough() {
			break
		}
		t.next = (t.next + 1) % tableSegments
	}
	// The next batch takes the next segment, even when this one had more.
	t.next = (t.next + 1) % tableSegments
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
