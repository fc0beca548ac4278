// Package jobgen makes realistic mediawiki.job.<type> events: a seeded Gen
// with a skewed mix of job types and wikis (Wikimedia production's shape),
// 0.5–4 KB bodies, sha1 and root_event where the job type has them,
// delay_until on a share, and an EventBus-style signature that
// VerifySignature checks and Restamp renews with a new meta.dt.
//
// It imports only the standard library, so that the tests of rules and
// dispatch (and their fuzz builds, which instrument every dependency) do not
// compile the Kafka-protocol cluster of package testkit. `changeprop loadgen`,
// `changeprop dev`, bench and the integration tests use it.
package jobgen
