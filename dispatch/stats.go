package dispatch

import "sync/atomic"

// Stats counts what one rule did. Fields are updated by the rule's goroutines
// and may be read at any time.
type Stats struct {
	Consumed  atomic.Int64 // messages read from Kafka
	Done      atomic.Int64 // events whose requests all succeeded
	Ignored   atomic.Int64 // failures that the rule's ignore condition turned into success
	Failed    atomic.Int64 // events that ended in a failure
	Unmatched atomic.Int64 // events that matched no case of the rule
	Abandoned atomic.Int64 // events given up at shutdown or revoke; they will be read again
	InFlight  atomic.Int64 // events being handled now
	Lag       atomic.Int64 // messages behind the end of the assigned partitions, at the last commit
}

// Finished is the number of events that will not be handled again.
func (s *Stats) Finished() int64 {
	return s.Done.Load() + s.Ignored.Load() + s.Failed.Load() + s.Unmatched.Load()
}
