package dispatch

import "sort"

// offsetTracker follows the offsets of one partition in the order they were
// read and answers which offset may be committed: the end of the run of
// finished events that starts at the last commit. Offsets need not be
// numerically contiguous (transaction markers and compaction leave gaps);
// what counts is read order, which is increasing.
//
// It is owned by the poll goroutine and needs no lock.
type offsetTracker struct {
	pending []trackedOffset // unfinished, or finished behind an unfinished one; increasing offsets
	head    int             // pending[head:] is live
	last    int64           // highest offset added, -1 before the first
}

type trackedOffset struct {
	offset int64
	done   bool
}

func newOffsetTracker() *offsetTracker { return &offsetTracker{last: -1} }

// add records that offset was read and is now in flight. Offsets must be
// added in increasing order.
func (t *offsetTracker) add(offset int64) {
	if t.head > 0 && t.head >= len(t.pending)/2 {
		n := copy(t.pending, t.pending[t.head:])
		t.pending = t.pending[:n]
		t.head = 0
	}
	t.pending = append(t.pending, trackedOffset{offset: offset})
	t.last = offset
}

// done records that offset is finished. It reports false for an offset that
// is not in flight.
func (t *offsetTracker) done(offset int64) bool {
	live := t.pending[t.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].offset >= offset })
	if i == len(live) || live[i].offset != offset || live[i].done {
		return false
	}
	live[i].done = true
	for t.head < len(t.pending) && t.pending[t.head].done {
		t.head++
	}
	return true
}

// committable is the offset to commit (the next one to read after
// everything finished in order), or -1 when nothing was read yet.
func (t *offsetTracker) committable() int64 {
	if t.head < len(t.pending) {
		return t.pending[t.head].offset
	}
	if t.last < 0 {
		return -1
	}
	return t.last + 1
}

// inFlight is the number of offsets added and not yet done.
func (t *offsetTracker) inFlight() int {
	n := 0
	for _, p := range t.pending[t.head:] {
		if !p.done {
			n++
		}
	}
	return n
}
