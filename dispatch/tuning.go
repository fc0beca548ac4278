package dispatch

import (
	"changeprop/partition"
	"changeprop/rules"
)

// Tuning is what an operator may change in a running rule without a
// restart or a rebalance: its caps and rate limit.
type Tuning struct {
	Concurrency          int              // rule-wide in-flight cap
	PartitionConcurrency int              // per-partition in-flight cap; 0 = Concurrency
	KeyLimits            partition.Limits // per concurrency key (per wiki) in-flight caps
	Rate                 partition.RateSpec
}

// TuningOf reads a rule's tunable settings.
func TuningOf(r *rules.Rule) Tuning {
	t := Tuning{Concurrency: r.Concurrency, PartitionConcurrency: r.PartitionConcurrency}
	if k := r.KeyConcurrency; k != nil {
		t.KeyLimits = partition.Limits{Default: k.Default, Overrides: k.Overrides}
	}
	if rl := r.RateLimit; rl != nil {
		t.Rate = partition.RateSpec{Rate: rl.Rate, Burst: rl.Burst}
	}
	return t
}

// caps returns the rule-wide and per-partition in-flight caps.
func (t Tuning) caps() (limit, partLimit int) {
	limit = max(t.Concurrency, 1)
	partLimit = t.PartitionConcurrency
	if partLimit <= 0 || partLimit > limit {
		partLimit = limit
	}
	return limit, partLimit
}

// Retune applies new settings to a running rule. It is safe to call from
// any goroutine; the poll goroutine applies the latest settings at its next
// turn. Events in flight are not affected; lowered caps hold back new ones
// until enough have finished.
func (r *Runner) Retune(t Tuning) {
	select {
	case <-r.retune:
	default:
	}
	r.retune <- t
}

// applyTuning runs on the poll goroutine.
func (r *Runner) applyTuning(t Tuning) {
	r.limit, r.partLimit = t.caps()
	r.lanes.SetLimits(t.KeyLimits)
	if r.limiters != nil {
		r.limiters.SetSpec(t.Rate)
	}
	r.cfg.Log.Info().Int("concurrency", r.limit).Int("partition_concurrency", r.partLimit).
		Int("key_concurrency_default", t.KeyLimits.Default).Int("key_concurrency_overrides", len(t.KeyLimits.Overrides)).
		Float64("rate", t.Rate.Rate).Msg("retuned")
	for _, p := range r.order {
		r.admit(p)
	}
	r.start()
}
