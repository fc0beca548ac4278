package breaker

import "time"

const buckets = 10

// window counts finished requests in a rolling window of ten buckets, by the
// time each finished. The zero value is empty; width must be set.
type window struct {
	width time.Duration // one bucket
	b     [buckets]struct {
		epoch     int64 // which bucket-width slot of time this bucket holds
		ok, fails int
	}
}

func (w *window) epoch(now time.Time) int64 { return now.UnixNano() / int64(w.width) }

// add records one finished request at now.
func (w *window) add(now time.Time, failure bool) {
	e := w.epoch(now)
	b := &w.b[uint64(e)%buckets]
	if b.epoch != e {
		b.epoch, b.ok, b.fails = e, 0, 0
	}
	if failure {
		b.fails++
	} else {
		b.ok++
	}
}

// sum returns the successes and failures of the window ending at now.
func (w *window) sum(now time.Time) (ok, fails int) {
	e := w.epoch(now)
	for i := range w.b {
		if b := &w.b[i]; b.epoch > e-buckets && b.epoch <= e {
			ok += b.ok
			fails += b.fails
		}
	}
	return ok, fails
}

func (w *window) reset() {
	for i := range w.b {
		w.b[i].epoch, w.b[i].ok, w.b[i].fails = 0, 0, 0
	}
}
