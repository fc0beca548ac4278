package partition

// Limits is per-key in-flight caps. A cap of 0 (or less) means unlimited.
type Limits struct {
	Default   int            // cap of keys not in Overrides; 0 = unlimited
	Overrides map[string]int // key -> cap
}

// For returns key's in-flight cap; 0 means unlimited.
func (l Limits) For(key string) int {
	if n, ok := l.Overrides[key]; ok {
		return max(n, 0)
	}
	return max(l.Default, 0)
}

// Lanes holds events waiting for a slot, by key, and hands out the next one
// that may start: the oldest waiting event whose key is under its limit
// (FIFO across keys, FIFO within a key), with at most Limits.For(key) in
// flight per key. With ordered set, a key runs one event at a time in push
// order, whatever its limit.
//
// A Lanes belongs to one goroutine (the partition's poll loop): it has no
// lock. Next and Done cost O(log k) for k keys that could start now, however
// many events wait behind a key at its limit, and allocate nothing once
// their queues have grown.
type Lanes[T any] struct {
	limits  Limits
	ordered bool
	seq     uint64              // push order
	lanes   map[string]*lane[T] // keys with events waiting or in flight
	ready   []ready[T]          // min-heap by head seq: lanes that may start their head now
	free    []*lane[T]          // recycled lanes
	waiting int
	running int
}

// ready is a heap entry: a lane and the seq of its head, kept here so that
// comparisons read the heap's own memory.
type ready[T any] struct {
	seq uint64
	ln  *lane[T]
}

// lane is one key's queue and in-flight count.
type lane[T any] struct {
	key      string
	limit    int // effective cap: 0 unlimited; 1 when ordered
	inflight int
	heapIdx  int // index in ready, -1 when not there
	q        ring[T]
}

// NewLanes returns empty Lanes with limits; see Lanes for ordered. Lanes
// reads limits.Overrides from then on: do not change the map afterwards
// (build a new one and call SetLimits).
func NewLanes[T any](limits Limits, ordered bool) *Lanes[T] {
	return &Lanes[T]{limits: limits, ordered: ordered, lanes: make(map[string]*lane[T])}
}

func (l *Lanes[T]) limitFor(key string) int {
	if l.ordered {
		return 1
	}
	return l.limits.For(key)
}

// canStart reports whether ln's head may start now.
func (ln *lane[T]) canStart() bool {
	return ln.q.n > 0 && (ln.limit == 0 || ln.inflight < ln.limit)
}

// Push queues v for key, after everything pushed before it.
func (l *Lanes[T]) Push(key string, v T) {
	ln := l.lanes[key]
	if ln == nil {
		ln = l.newLane(key)
	}
	l.seq++
	ln.q.push(item[T]{seq: l.seq, v: v})
	l.waiting++
	if ln.q.n == 1 && ln.canStart() {
		l.heapPush(ln)
	}
}

func (l *Lanes[T]) newLane(key string) *lane[T] {
	var ln *lane[T]
	if n := len(l.free); n > 0 {
		ln = l.free[n-1]
		l.free[n-1] = nil
		l.free = l.free[:n-1]
	} else {
		ln = &lane[T]{}
	}
	ln.key, ln.limit, ln.inflight, ln.heapIdx = key, l.limitFor(key), 0, -1
	l.lanes[key] = ln
	return ln
}

// release recycles ln if it has nothing waiting or in flight.
func (l *Lanes[T]) release(ln *lane[T]) {
	if ln.q.n > 0 || ln.inflight > 0 {
		return
	}
	delete(l.lanes, ln.key)
	ln.key = ""
	if cap(ln.q.buf) > 64 { // a burst's big queue is not kept forever
		ln.q = ring[T]{}
	}
	l.free = append(l.free, ln)
}

// Next returns the next event that may start and marks it in flight for its
// key; ok is false when nothing may start now (nothing waits, or every key
// that has events waiting is at its limit).
func (l *Lanes[T]) Next() (key string, v T, ok bool) {
	if len(l.ready) == 0 {
		return "", v, false
	}
	ln := l.ready[0].ln
	it := ln.q.pop()
	ln.inflight++
	l.waiting--
	l.running++
	if ln.canStart() {
		l.ready[0].seq = ln.q.head().seq
		l.heapFix(0)
	} else {
		l.heapRemove(0)
	}
	return ln.key, it.v, true
}

// Done records that one in-flight event of key finished. It panics if key
// has nothing in flight.
func (l *Lanes[T]) Done(key string) {
	ln := l.lanes[key]
	if ln == nil || ln.inflight == 0 {
		panic("partition: Lanes.Done for a key with nothing in flight: " + key)
	}
	ln.inflight--
	l.running--
	if ln.heapIdx < 0 && ln.canStart() {
		l.heapPush(ln)
	}
	l.release(ln)
}

// Waiting returns how many events are queued and not started.
func (l *Lanes[T]) Waiting() int { return l.waiting }

// Running returns how many events are in flight, over all keys.
func (l *Lanes[T]) Running() int { return l.running }

// InFlight returns how many events of key are in flight.
func (l *Lanes[T]) InFlight(key string) int {
	if ln := l.lanes[key]; ln != nil {
		return ln.inflight
	}
	return 0
}

// SetLimits replaces the limits. It takes effect for the next Next and
// never stops what runs: a key above its new cap starts nothing until it is
// below it. O(keys).
func (l *Lanes[T]) SetLimits(limits Limits) {
	l.limits = limits
	for key, ln := range l.lanes {
		ln.limit = l.limitFor(key)
		switch can := ln.canStart(); {
		case can && ln.heapIdx < 0:
			l.heapPush(ln)
		case !can && ln.heapIdx >= 0:
			l.heapRemove(ln.heapIdx)
		}
	}
}

// Drain removes every waiting event and returns them in push order (for a
// revoked partition or shutdown). In-flight counts stay: call Done for those
// as they finish.
func (l *Lanes[T]) Drain() []T {
	items := make([]item[T], 0, l.waiting)
	for _, ln := range l.lanes {
		for ln.q.n > 0 {
			items = append(items, ln.q.pop())
		}
	}
	for i := range l.ready {
		l.ready[i].ln.heapIdx = -1
		l.ready[i] = ready[T]{}
	}
	l.ready = l.ready[:0]
	for _, ln := range l.lanes {
		l.release(ln)
	}
	l.waiting = 0
	sortBySeq(items)
	out := make([]T, len(items))
	for i, it := range items {
		out[i] = it.v
	}
	return out
}

// The ready heap, ordered by the seq of each lane's head.

func (l *Lanes[T]) less(i, j int) bool { return l.ready[i].seq < l.ready[j].seq }

func (l *Lanes[T]) swap(i, j int) {
	l.ready[i], l.ready[j] = l.ready[j], l.ready[i]
	l.ready[i].ln.heapIdx = i
	l.ready[j].ln.heapIdx = j
}

// heapPush adds ln, which must have a head that may start.
func (l *Lanes[T]) heapPush(ln *lane[T]) {
	ln.heapIdx = len(l.ready)
	l.ready = append(l.ready, ready[T]{ln.q.head().seq, ln})
	l.up(ln.heapIdx)
}

func (l *Lanes[T]) heapRemove(i int) {
	n := len(l.ready) - 1
	if i != n {
		l.swap(i, n)
	}
	l.ready[n].ln.heapIdx = -1
	l.ready[n] = ready[T]{}
	l.ready = l.ready[:n]
	if i != n {
		l.heapFix(i)
	}
}

func (l *Lanes[T]) heapFix(i int) {
	if !l.down(i) {
		l.up(i)
	}
}

func (l *Lanes[T]) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !l.less(j, i) {
			break
		}
		l.swap(i, j)
		j = i
	}
}

func (l *Lanes[T]) down(i0 int) bool {
	i, n := i0, len(l.ready)
	for {
		j := 2*i + 1
		if j >= n {
			break
		}
		if r := j + 1; r < n && l.less(r, j) {
			j = r
		}
		if !l.less(j, i) {
			break
		}
		l.swap(i, j)
		i = j
	}
	return i > i0
}
