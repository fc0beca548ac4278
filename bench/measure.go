package main

import (
	"slices"
	"time"
)

// sample is one observation while a changeprop (or bare) process drains.
type sample struct {
	at   time.Time
	jobs int64 // jobs the runner answered since the drain started
	cpu  time.Duration
	rss  int64 // kB
	// CPU of the other processes, for the machine's budget.
	clusterCPU, simCPU time.Duration
}

// drain is the result of watching one process work through a backlog.
type drain struct {
	total   int64         // jobs answered by the end
	jobs    int64         // jobs within the measured window
	wall    time.Duration // the window: from 5% to 95% of total
	cpu     time.Duration // CPU of the measured process in the window
	others  time.Duration // CPU of cluster + job runner in the window
	maxRSS  int64         // kB, whole drain
	samples []sample
}

func (d drain) jobsPerSec() float64 { return float64(d.jobs) / d.wall.Seconds() }

// cpuPer1000 is CPU-seconds per 1,000 jobs.
func (d drain) cpuPer1000() float64 { return d.cpu.Seconds() / float64(d.jobs) * 1000 }

// jobsPerCPUSec is jobs per CPU-second of the measured process.
func (d drain) jobsPerCPUSec() float64 { return float64(d.jobs) / d.cpu.Seconds() }

// watch samples pid every 200ms until the runner has answered expect jobs
// more than base, answers stop arriving for stall, the process exits or
// limit passes. during, if set, is called with every sample.
func (h *harness) watch(p *proc, base, expect int64, stall, limit time.Duration, during func(sample)) drain {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	var d drain
	lastChange := time.Now()
	var last int64
	for {
		select {
		case <-tick.C:
		case <-deadline.C:
			h.logf("%s: still draining after %v", p.name, limit)
			return d.window()
		case <-p.done:
			h.logf("%s exited during the drain: %v", p.name, p.err)
			return d.window()
		}
		s := sample{at: time.Now(), jobs: h.sim().Total - base, cpu: cpuTime(p.pid()), rss: rssKB(p.pid()),
			clusterCPU: cpuTime(h.cluster.pid()), simCPU: cpuTime(h.simProc.pid())}
		d.samples = append(d.samples, s)
		d.maxRSS = max(d.maxRSS, s.rss)
		if during != nil {
			during(s)
		}
		if s.jobs != last {
			last, lastChange = s.jobs, s.at
		}
		if expect > 0 && s.jobs >= expect {
			return d.window()
		}
		if last > 0 && s.at.Sub(lastChange) > stall {
			h.logf("%s: no job answered for %v; stopping at %d of %d", p.name, stall, last, expect)
			return d.window()
		}
	}
}

// window picks the steady part of a drain: from the first sample at 5%
// of the total to the first at 95%, leaving out start-up (group join) and
// the tail.
func (d drain) window() drain {
	if len(d.samples) == 0 {
		return d
	}
	d.total = d.samples[len(d.samples)-1].jobs
	lo := slices.IndexFunc(d.samples, func(s sample) bool { return s.jobs >= d.total/20 })
	hi := slices.IndexFunc(d.samples, func(s sample) bool { return s.jobs >= d.total*19/20 })
	if lo < 0 || hi <= lo {
		lo, hi = 0, len(d.samples)-1
	}
	a, b := d.samples[lo], d.samples[hi]
	d.jobs, d.wall, d.cpu = b.jobs-a.jobs, b.at.Sub(a.at), b.cpu-a.cpu
	d.others = (b.clusterCPU - a.clusterCPU) + (b.simCPU - a.simCPU)
	return d
}

// median returns the median of f over ds (the lower middle for an even
// count), with the lowest and highest.
func median(ds []drain, f func(drain) float64) (med, lo, hi float64) {
	v := make([]float64, len(ds))
	for i, d := range ds {
		v[i] = f(d)
	}
	return medianOf(v)
}

// medianOf is median of plain values (v non-empty; sorted in place).
func medianOf(v []float64) (med, lo, hi float64) {
	slices.Sort(v)
	return v[(len(v)-1)/2], v[0], v[len(v)-1]
}

// pairRatios are cp[i]'s jobs per CPU-second over bare[i]'s: each run
// against the bare loop measured just before it.
func pairRatios(cp, bare []drain) []float64 {
	out := make([]float64, 0, min(len(cp), len(bare)))
	for i := range min(len(cp), len(bare)) {
		out = append(out, cp[i].jobsPerCPUSec()/bare[i].jobsPerCPUSec())
	}
	return out
}

// waitFor polls cond every 200ms for up to limit.
func waitFor(limit time.Duration, cond func() bool) bool {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			return cond()
		}
	}
	return true
}

// idle waits d without polling anything.
func idle(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	<-t.C
}
