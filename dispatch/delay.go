package dispatch

import (
	"container/heap"
	"time"
)

// delayQueue holds jobs that wait for a time (retries not yet due, delayed
// jobs) without holding a concurrency slot. Owned by the poll goroutine.
type delayQueue struct{ h jobHeap }

func (q *delayQueue) push(j *job) { heap.Push(&q.h, j) }

func (q *delayQueue) len() int { return len(q.h) }

// next is the earliest due time, ok false when empty.
func (q *delayQueue) next() (time.Time, bool) {
	if len(q.h) == 0 {
		return time.Time{}, false
	}
	return q.h[0].due, true
}

// popDue removes and returns a job due at now, or nil.
func (q *delayQueue) popDue(now time.Time) *job {
	if len(q.h) == 0 || q.h[0].due.After(now) {
		return nil
	}
	return heap.Pop(&q.h).(*job)
}

type jobHeap []*job

func (h jobHeap) Len() int           { return len(h) }
func (h jobHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h jobHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *jobHeap) Push(x any)        { *h = append(*h, x.(*job)) }
func (h *jobHeap) Pop() any {
	old := *h
	j := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return j
}
