// Package dispatch is changeprop's pipeline for one rule: the poll loop,
// per-event handling, offset tracking and the HTTP sender.
//
// A Runner reads a rule's topics (and its retry topics) from a Source (a
// consumer-group member), classifies each event on its poll goroutine,
// runs the event's requests on a worker goroutine within the rule's
// concurrency, partition_concurrency and per-key limits, turns failures
// into retry or error events, and commits for each partition the end of
// the run of finished events: never past an event still in flight or
// waiting. Events that wait (retries not yet due, delayed jobs, rate
// limits, open breakers) sit in a delay queue and hold no slot. When the
// rule is busy it stops taking messages but keeps polling, so the group
// never sees it as stuck. Besides HTTP requests, a rule's action may
// produce events (an exec kafka:///<stream>) or expand an event into the
// events of the pages depending on it, one Action API page per pass, with
// a continuation event the rule reads back for the next page (fanout.go);
// either way the source event is finished only once what it wrote is
// acknowledged. A Repartitioner forwards a partitioner rule's events
// exactly once, in Kafka transactions.
//
// It does not know librdkafka (package dispatch/kafka adapts it to Source)
// and does not parse configuration (package rules compiles it).
//
// # Goroutines and ownership
//
//   - Run's goroutine owns the Source, the partition table, the offset
//     trackers, the backlogs, the lanes, the delay queue and every
//     in-flight counter. The Source calls the RebalanceListener (Assigned,
//     Revoked) from inside Poll, on this same goroutine. None of this state
//     has a lock. Retune and Pause/Resume reach it through one-slot
//     channels.
//   - Worker goroutines, at least one per in-flight job, take jobs from
//     Runner.work1, run a pass (handler.handle) and send exactly one
//     completion back on Runner.completions; both channels hold at least
//     the rule's concurrency. Run's goroutine starts a worker when jobs in
//     flight outnumber them and, at each commit, retires (hands nil to)
//     those the busiest moment since the last commit did not need.
//   - Stats are atomics, written by both and read by anyone; the partition
//     snapshot (metrics, /v1/rules) is an atomic pointer replaced at each
//     commit.
//   - The breaker set, the rate limiters and the dedupe store are shared
//     by the workers and lock internally (or live in Redis).
//
// There is no lock order to keep: no code holds two locks at once.
//
//	r := dispatch.NewRunner(dispatch.RunnerConfig{
//		Rule: cfg.Rules[0], Topics: []string{"mediawiki.job.refreshLinks"},
//		Source: consumer, Sender: dispatch.NewHTTPSender(dispatch.HTTPOptions{}),
//		UserAgent: cfg.UserAgent, Log: log,
//	})
//	err := r.Run(ctx) // returns after ctx ends and in-flight events drained
package dispatch
