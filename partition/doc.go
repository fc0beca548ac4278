// Package partition holds the per-partition pieces of the data path that
// choose what runs next: the repartitioner's key -> partition mapping
// (ForKey), per-key concurrency lanes (Lanes: key_concurrency and ordered)
// and per-key token buckets (Limiters: rate_limit).
//
// It does not consume, send, time or log: the caller (package dispatch)
// owns the goroutines, timers and metrics. A Lanes belongs to one goroutine
// and has no lock; Limiters is safe for concurrent use. Neither ever
// sleeps: Limiters.ReserveAt says how long to wait, and the caller waits
// with a timer. It imports nothing from changeprop and builds without cgo.
//
//	p := partition.ForKey([]byte("enwiki"), 8) // stable across processes and restarts
//
//	lanes := partition.NewLanes[*Event](partition.Limits{
//		Default:   4,
//		Overrides: map[string]int{"enwiki": 16},
//	}, rule.Ordered)
//	lanes.Push(ev.Key, ev)               // in offset order
//	for running < partitionConcurrency { // the partition's own cap is the caller's
//		key, ev, ok := lanes.Next()
//		if !ok {
//			break // every waiting key is at its limit
//		}
//		running++
//		go send(ev) // on completion, the owner calls lanes.Done(key)
//	}
//	lanes.SetLimits(newLimits) // SIGHUP: applies from the next Next, stops nothing
//
//	limiters := partition.NewLimiters(partition.RateSpec{Rate: 50, Burst: 10})
//	if wait := limiters.ReserveAt(key, time.Now()); wait > 0 {
//		timer.Reset(wait) // act when it fires
//	}
package partition
