// Package dispatch is changeprop's pipeline for one rule: the poll loop,
// per-event handling, offset tracking and the HTTP sender.
//
// A Runner reads a rule's topics from a Source (a consumer-group member),
// runs each event's requests on a goroutine of its own, up to the rule's
// concurrency and partition_concurrency, and commits for each partition the
// end of the run of finished events: never past an event still in flight.
// When the rule is full it pauses partitions and keeps polling, so the
// group never sees it as stuck.
//
// It does not know librdkafka (package dispatch/kafka adapts it to Source)
// and does not parse configuration (package rules compiles it).
//
// # Goroutines and ownership
//
//   - Run's goroutine owns the Source, the partition table, the offset
//     trackers, the queues of events waiting for a slot and every in-flight
//     counter. The Source calls the RebalanceListener (Assigned, Revoked)
//     from inside Poll, on this same goroutine. None of this state has a
//     lock.
//   - One worker goroutine per in-flight event runs handler.handle and sends
//     exactly one completion back on Runner.completions. The channel's
//     capacity equals the rule's concurrency, which bounds the in-flight
//     events, so a worker never blocks on it.
//   - Stats are atomics, written by both and read by anyone.
//
// There is no lock to order: the only shared mutable state is the
// completions channel and the Stats atomics.
//
//	r := dispatch.NewRunner(dispatch.RunnerConfig{
//		Rule: cfg.Rules[0], Topics: []string{"mediawiki.job.refreshLinks"},
//		Source: consumer, Sender: dispatch.NewHTTPSender(dispatch.HTTPOptions{}),
//		UserAgent: cfg.UserAgent, Log: log,
//	})
//	err := r.Run(ctx) // returns after ctx ends and in-flight events drained
package dispatch
