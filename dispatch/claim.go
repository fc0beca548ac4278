package dispatch

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"changeprop/dispatch/dedupe"
)

// claim asks the dedupe store whether job d of j may run. ok is false when
// it may not: out is then outcomeDedupe (a duplicate of work done) or
// outcomeDelayed (another copy holds a live claim; j.due is set to ask
// again later, without holding a slot: it ends as a duplicate or, if that
// copy failed or died, runs). A store that does not answer lets the job
// run without a claim.
func (h *handler) claim(ctx context.Context, j *job, d dedupe.Job, now time.Time) (c *dedupe.Claim, out outcome, ok bool) {
	res, c, err := h.dedupe.Claim(ctx, d, now)
	if err != nil {
		h.stats.DedupeUnavailable.Add(1)
		h.logJob(zerolog.WarnLevel, j).Err(err).Msg("dedupe store unavailable: running the job")
	}
	switch {
	case res.Duplicate():
		return nil, outcomeDedupe, false
	case res == dedupe.Busy:
		j.due = now.Add(busyRecheck)
		return nil, outcomeDelayed, false
	}
	return c, 0, true
}

// settle makes a claim (nil: none) a final mark when the job is done, and
// releases it otherwise, so that a copy read again runs.
func (h *handler) settle(ctx context.Context, j *job, c *dedupe.Claim, out outcome) {
	if c == nil {
		return
	}
	var err error
	// Not the job's context: a shutdown must not leave a done job
	// unmarked (the store bounds the call).
	if out == outcomeDone || out == outcomeIgnored {
		err = h.dedupe.Confirm(context.WithoutCancel(ctx), c, h.now())
	} else {
		err = h.dedupe.Release(context.WithoutCancel(ctx), c)
	}
	if err != nil {
		h.logJob(zerolog.WarnLevel, j).Err(err).Msg("dedupe store: mark not written")
	}
}
