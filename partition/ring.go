package partition

import "slices"

// item is one waiting event and its push order.
type item[T any] struct {
	seq uint64
	v   T
}

// ring is a FIFO queue in a circular buffer that doubles when full.
type ring[T any] struct {
	buf   []item[T]
	start int // index of the oldest item
	n     int
}

func (r *ring[T]) push(it item[T]) {
	if r.n == len(r.buf) {
		buf := make([]item[T], max(8, 2*len(r.buf)))
		k := copy(buf, r.buf[r.start:])
		copy(buf[k:], r.buf[:r.start])
		r.buf, r.start = buf, 0
	}
	r.buf[(r.start+r.n)%len(r.buf)] = it
	r.n++
}

// head returns the oldest item; the ring must not be empty.
func (r *ring[T]) head() *item[T] { return &r.buf[r.start] }

// pop removes and returns the oldest item; the ring must not be empty.
func (r *ring[T]) pop() item[T] {
	it := r.buf[r.start]
	r.buf[r.start] = item[T]{} // let v be collected
	r.start = (r.start + 1) % len(r.buf)
	r.n--
	return it
}

func sortBySeq[T any](items []item[T]) {
	slices.SortFunc(items, func(a, b item[T]) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
}
