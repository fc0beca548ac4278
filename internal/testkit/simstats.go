package testkit

import "time"

// SimLatency is the added_latency object of `changeprop jobrunner-sim`'s
// GET /_sim/stats: percentiles of receipt time - meta.dt, written by the
// simulator and read by bench. The window figures tell a tail spread over
// the run from one made in a few bursts: the p99 of each window of receipt
// times (the simulator's latencyWindow, when it holds minWindowSamples
// jobs or more), their median and the worst of them.
type SimLatency struct {
	Count           int           `json:"count"`
	P50             time.Duration `json:"p50_ns"`
	P90             time.Duration `json:"p90_ns"`
	P99             time.Duration `json:"p99_ns"`
	Max             time.Duration `json:"max_ns"`
	Windows         int           `json:"windows"`
	WindowP99Median time.Duration `json:"window_p99_median_ns"`
	WindowP99Max    time.Duration `json:"window_p99_max_ns"`
}
