// Package dedupe decides whether a job event is a duplicate, and counts the
// failures of the blacklist limiter, either in Redis (shared by every
// instance) or in this process (Memory, MemoryLimiter).
//
// It does not parse events or configuration (the caller hands it a Job and
// the limiter's windows), does not decide retries, and neither logs nor
// counts metrics: it returns errors, and its Results have metric-ready
// names.
//
// # Deduplication
//
// Claim checks the rules of rules.md in order, in the job's namespace (the
// rule name, or "<rule>-<stream>" for multi-topic rules):
//
//  1. meta.domain + meta.id done within IDTTL (1h): DuplicateID;
//  2. a job with the same sha1 processed (claimed, then done) later than
//     this event's root_event.dt, else meta.dt, less SHA1Slack (1s):
//     DuplicateSHA1; a sha1's processing time is kept SHA1TTL (1h);
//  3. a newer root_event.dt done for the same root_event.signature:
//     DuplicateRoot; kept RootTTL (1 day).
//
// A mark is final only once the job is done. Claim places a short-lived
// claim on the event id (Job.ClaimTTL, else the store's default); Confirm
// turns it into the three marks; Release (job failed) drops it so that a
// redelivered copy runs again. A copy that finds a live claim gets Busy:
// the event is running elsewhere, or its process died with the claim
// still alive. Busy is never "done": the caller claims again later, and
// then gets DuplicateID (the other copy finished), or Fresh (it failed, or
// the dead process's claim expired). So a crash mid-job never turns the
// redelivered copy into a duplicate; it only delays it by at most the
// claim TTL.
//
// Retries are not deduplicated: the caller does not call Claim for events
// read from a retry topic. Each call takes the time it acts at (now), so
// that tests move time without sleeping; expiry is decided against it.
//
// When Redis is unreachable or slower than RedisOptions.Timeout (200ms by
// default), Claim returns Fresh, a nil Claim and an error wrapping
// ErrUnavailable: the caller runs the job, logs and counts the error.
// Confirm and Release of a nil Claim do nothing. go-redis reconnects by
// itself, so the store recovers without help. The package returns errors;
// it never logs.
//
// # Blacklist limiter
//
// A Limiter counts failures per key (the rule's `limiters.blacklist`
// template, e.g. 'html:{message.meta.uri}') in sliding windows, e.g.
// {10, time.Hour} and {100, 7 * 24 * time.Hour}: a key with Limit failures
// within any window's Period is blocked. RedisLimiter shares the counts
// through Redis, MemoryLimiter keeps them in this process. On an outage
// Blocked returns false with ErrUnavailable (fail open).
//
// # Redis keys
//
//	<prefix>:<namespace>:id:<meta.domain>:<meta.id>
//	<prefix>:<namespace>:sha1:<sha1>
//	<prefix>:<namespace>:root:<root_event.signature>
//	<prefix>:blacklist:<limiter key>
//
// with prefix from redis.prefix ("CPJQ" by default). Redis Cluster is not
// supported: a job's three keys are read in one script.
//
// # Usage
//
//	client := redis.NewClient(&redis.Options{Addr: cfg.Redis.Addr})
//	store := dedupe.NewRedis(client, cfg.Redis.Prefix, dedupe.RedisOptions{})
//	res, claim, err := store.Claim(ctx, dedupe.Job{
//		Namespace: "refreshLinks", Domain: meta.Domain, ID: meta.ID, DT: meta.DT,
//		SHA1: ev.SHA1, RootSignature: root.Signature, RootDT: root.DT,
//		ClaimTTL: ruleTimeout,
//	}, time.Now())
//	if err != nil {
//		log.Warn().Err(err).Msg("dedupe unavailable") // res is Fresh: run the job
//	}
//	switch {
//	case res.Duplicate():
//		return done // commit without running
//	case res == dedupe.Busy:
//		return later // claim again after a delay; do not commit
//	}
//	if runErr := run(ctx); runErr != nil {
//		_ = store.Release(ctx, claim)
//		return runErr
//	}
//	_ = store.Confirm(ctx, claim, time.Now())
package dedupe
