package dispatch

import "sync/atomic"

// Stats counts what one rule did. Fields are updated by the rule's goroutines
// and may be read at any time.
type Stats struct {
	Consumed   atomic.Int64 // messages read from Kafka
	Done       atomic.Int64 // events whose requests all succeeded
	Ignored    atomic.Int64 // failures that the rule's ignore condition turned into success
	Retried    atomic.Int64 // failures handed to the retry topic
	Failed     atomic.Int64 // events handed to the error topic
	Unmatched  atomic.Int64 // events the rule does not act on (no case matched, canary, another rule's retry)
	SampledOut atomic.Int64 // events the rule's sample left out
	Abandoned  atomic.Int64 // events older than claim_ttl / root_claim_ttl
	Delayed    atomic.Int64 // passes that ended waiting for a time (retry not due, delayed job)
	Reenqueued atomic.Int64 // delayed jobs produced again to their topic
	Deduped    atomic.Int64 // duplicates of jobs already done
	// DedupeUnavailable counts jobs run without a dedupe check because the
	// store did not answer.
	DedupeUnavailable atomic.Int64
	Cancelled         atomic.Int64 // passes cut short at shutdown; the events will be read again
	InFlight          atomic.Int64 // events being handled now
	Lag               atomic.Int64 // messages behind the end of the assigned partitions, at the last commit
}

// Finished is the number of events that will not be handled again by this
// rule.
func (s *Stats) Finished() int64 {
	return s.Done.Load() + s.Ignored.Load() + s.Retried.Load() + s.Failed.Load() + s.Unmatched.Load() +
		s.SampledOut.Load() + s.Abandoned.Load() + s.Reenqueued.Load() + s.Deduped.Load()
}

func (s *Stats) count(o outcome) {
	switch o {
	case outcomeDone:
		s.Done.Add(1)
	case outcomeIgnored:
		s.Ignored.Add(1)
	case outcomeRetry:
		s.Retried.Add(1)
	case outcomeError:
		s.Failed.Add(1)
	case outcomeUnmatched:
		s.Unmatched.Add(1)
	case outcomeSampledOut:
		s.SampledOut.Add(1)
	case outcomeAbandoned:
		s.Abandoned.Add(1)
	case outcomeDelayed:
		s.Delayed.Add(1)
	case outcomeReenqueued:
		s.Reenqueued.Add(1)
	case outcomeDedupe:
		s.Deduped.Add(1)
	case outcomeCancelled:
		s.Cancelled.Add(1)
	}
}
