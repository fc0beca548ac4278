package dedupe

import (
	"context"
	"errors"
	"time"
)

// How long each kind of mark lives (rules.md, "Deduplication").
const (
	// IDTTL is how long a done event id stays a duplicate.
	IDTTL = time.Hour
	// SHA1TTL is how long the processing time of a sha1 is kept.
	SHA1TTL = time.Hour
	// RootTTL is how long the newest root_event.dt of a signature is kept.
	RootTTL = 24 * time.Hour
	// SHA1Slack is subtracted from the event's time before it is compared
	// with the sha1's processing time.
	SHA1Slack = time.Second
	// DefaultClaimTTL is the claim lifetime when neither the store nor the
	// Job sets one. It outlives the default rule timeout (7m).
	DefaultClaimTTL = 10 * time.Minute
	// DefaultPrefix is the Redis key prefix when none is given (redis.prefix).
	DefaultPrefix = "CPJQ"
	// DefaultTimeout bounds every Redis call of a Redis store or limiter.
	DefaultTimeout = 200 * time.Millisecond
)

// ErrUnavailable wraps every error caused by the store being unreachable or
// too slow. Claim then also returns Fresh: the caller runs the job, logs the
// error and counts it. Callers branch on it with errors.Is.
var ErrUnavailable = errors.New("dedupe store unavailable")

// Job is what dedupe needs of an event. The caller extracts it from the
// parsed event; zero values mean "absent".
type Job struct {
	// Namespace is the rule name, or "<rule>-<stream>" for multi-topic rules.
	Namespace string
	// Domain and ID are meta.domain and meta.id.
	Domain, ID string
	// DT is meta.dt.
	DT time.Time
	// SHA1 is the job's sha1 field; empty disables the sha1 rule.
	SHA1 string
	// RootSignature and RootDT are root_event.signature and root_event.dt;
	// the root rule applies only when both are set.
	RootSignature string
	RootDT        time.Time
	// ClaimTTL is how long this job's claim holds off other copies; set it
	// to the most the job can take (its requests' timeouts). Zero means the
	// store's default.
	ClaimTTL time.Duration
}

// sha1Ref is the time the sha1 rule compares against: root_event.dt when
// the event has one (work done after the root change covers it), else
// meta.dt. Zero disables the rule.
func (j *Job) sha1Ref() time.Time {
	if !j.RootDT.IsZero() {
		return j.RootDT
	}
	return j.DT
}

func (j *Job) hasSHA1() bool { return j.SHA1 != "" && !j.sha1Ref().IsZero() }
func (j *Job) hasRoot() bool { return j.RootSignature != "" && !j.RootDT.IsZero() }

// Result is the verdict of Claim.
type Result int

const (
	// Fresh: not a duplicate; run the job (a Claim is returned unless the
	// store was unavailable).
	Fresh Result = iota
	// Busy: another copy of this event holds a live claim (it is running
	// elsewhere, or its process died and the claim has not expired yet).
	// Do not run it and do not drop it: claim it again later. By then the
	// other copy has confirmed (Duplicate), released or expired (Fresh).
	Busy
	// DuplicateID: the same meta.domain + meta.id was done within IDTTL.
	DuplicateID
	// DuplicateSHA1: a job with the same sha1 was processed after this
	// event's time (root_event.dt, else meta.dt) less SHA1Slack.
	DuplicateSHA1
	// DuplicateRoot: a newer root_event.dt was done for the same signature.
	DuplicateRoot
)

// Duplicate reports whether the event can be dropped as done.
func (r Result) Duplicate() bool { return r >= DuplicateID && r <= DuplicateRoot }

// String returns a short name fit for a metric label.
func (r Result) String() string {
	switch r {
	case Fresh:
		return "fresh"
	case Busy:
		return "busy"
	case DuplicateID:
		return "duplicate_id"
	case DuplicateSHA1:
		return "duplicate_sha1"
	case DuplicateRoot:
		return "duplicate_root"
	}
	return "unknown"
}

// Claim is a job's hold on its event id, from Claim until Confirm or
// Release. It belongs to the store that made it.
type Claim struct {
	job Job
	at  time.Time // when it was claimed: the job's processing time
	seq uint64    // tells this claim apart from later claims of the same id
	// keys are a Memory store's hashes of the id, the sha1 and the root
	// signature, made once by Claim for Confirm and Release.
	keys [3]key
}

// Job returns the job the claim was made for.
func (c *Claim) Job() Job { return c.job }

// Store is a dedupe store. Memory and Redis implement it and pass one
// conformance suite.
type Store interface {
	// Claim checks the rules of rules.md in order: the event id (done
	// within IDTTL, or claimed: Busy), the sha1, the root signature. When
	// none applies it places a claim that lives the job's ClaimTTL and
	// returns Fresh with it. On a store error it returns Fresh, a nil
	// Claim and an error wrapping ErrUnavailable.
	Claim(ctx context.Context, j Job, now time.Time) (Result, *Claim, error)
	// Confirm makes the claim final once the job is done: the id is a
	// duplicate for IDTTL, the sha1 records the claim's time, the root
	// signature its root_event.dt. A nil claim is a no-op.
	Confirm(ctx context.Context, c *Claim, now time.Time) error
	// Release drops the claim of a job that failed, so that a redelivered
	// copy runs again. It leaves a claim made since by another copy alone.
	// A nil claim is a no-op.
	Release(ctx context.Context, c *Claim) error
}

func claimTTL(j *Job, def time.Duration) time.Duration {
	if j.ClaimTTL > 0 {
		return j.ClaimTTL
	}
	return def
}
