package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"changeprop/internal/testkit"
)

// results is everything the report shows.
type results struct {
	machine     [][2]string
	elapsed     time.Duration
	bare, cp1   []drain
	cp30        []drain
	bare30      []drain // the bare loop on the backlog of each cp30 run, just before it
	sideCP      []drain // changeprop (30 rules) in each side-by-side drain's window
	sideBare    []drain // the bare loop in the same window
	side1CP     []drain // the same with one rule, on the one-rule backlog
	side1Bare   []drain
	preload1    string
	preload30   string
	latency     []latencyRun
	idleRSS     int64 // kB, 30 rules, started, no events
	idleCPU     float64
	idleStderr  float64 // idle CPU with kafka.client_logs: stderr
	afterRSS    int64   // kB, 30 rules, 10s after a drain
	backlog     backlogRun
	profiles    []profile
	goBench     string
	goBenchErr  error
	goBenchTime time.Duration
}

type latencyRun struct {
	who                string
	rate               int
	produced, answered int64
	p50, p90, p99, max time.Duration
	// p99 of each 250 ms window of receipts (the runner's): the median
	// window's and the worst; a tail made in bursts shows as a worst far
	// above the median.
	windowP99Median, windowP99Max time.Duration
	cpuPer1000                    float64
	machineBusy                   float64 // share of both cores busy (every process) over the run
	steal                         float64 // share of both cores taken by the hypervisor over the run
	othersPer1000                 float64 // CPU-s per 1,000 jobs of every other process
	// changeprop's go_sched_latencies_seconds over the run (none for the
	// bare loop): how long its goroutines were runnable before they ran.
	sched schedWaits
}

type backlogRun struct {
	preload     string
	d           drain
	watched     time.Duration
	clusterRSS  int64
	rssAt       []int64 // kB every 10s
	loadgenTime time.Duration
}

// jobqueueYAML is the production-shaped config the runs are made of
// (-rules-config replaces it, for comparing).
const jobqueueYAML = "rules/testdata/jobqueue.yaml"

// rulesConfig is the path of the config the runs are made of.
func (h *harness) rulesConfig() string {
	p := cmp.Or(h.rulesFile, jobqueueYAML)
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(h.root, p)
}

// config turns the production-shaped jobqueue.yaml into one for this
// cluster and job runner: brokers and job runner substituted, consumers
// start at the earliest offset (the backlog was written before they
// joined), the operations listener on a free port, rate_limit removed
// (cdnPurge's 500/s would otherwise set the throughput) and the redis
// section removed (dedupe in the process). With oneRule, the
// rules are replaced by a single job rule for topic.
func (h *harness) config(service string, oneRule bool, topic string) (string, error) {
	b, err := os.ReadFile(h.rulesConfig())
	if err != nil {
		return "", err
	}
	s := string(b)
	simHost := strings.TrimPrefix(h.simURL, "http://")
	for _, r := range []struct{ old, new string }{
		{"service_name: cpjobqueue", "service_name: " + service},
		{"brokers: 127.0.0.1:9092", "brokers: " + h.addr},
		{"  consumer:\n", "  consumer:\n    auto.offset.reset: earliest\n"},
		{"jobrunner.svc:9005", simHost},
		{"listen: 127.0.0.1:7200", "listen: 127.0.0.1:0"},
	} {
		if !strings.Contains(s, r.old) {
			return "", fmt.Errorf("%s no longer contains %q: update bench/phases.go", h.rulesConfig(), r.old)
		}
		s = strings.ReplaceAll(s, r.old, r.new)
	}
	s = regexp.MustCompile(`(?m)^\s+rate_limit:.*\n`).ReplaceAllString(s, "")
	// No Redis runs here: dedupe and limiters stay in the process.
	s = regexp.MustCompile(`(?m)^redis:\n(\s+.*\n)*`).ReplaceAllString(s, "")
	if oneRule {
		i := strings.Index(s, "\nrules:\n")
		if i < 0 {
			return "", fmt.Errorf("%s has no rules: section", h.rulesConfig())
		}
		s = s[:i] + "\nrules:\n  job:\n    topic: " + topic + "\n    concurrency: 100\n"
	}
	return s, nil
}

// configTopics are the plain topics of jobqueue.yaml: the partitioned
// ones get 8 partitions (partition_map goes up to 7), the others 4.
func (h *harness) configTopics() ([]string, error) {
	b, err := os.ReadFile(h.rulesConfig())
	if err != nil {
		return nil, err
	}
	var out []string
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+topic: ([A-Za-z0-9_.-]+)\s*$`).FindAllStringSubmatch(string(b), -1) {
		t := m[1]
		if seen[t] {
			continue
		}
		seen[t] = true
		if strings.HasPrefix(t, "cpjobqueue.partitioned.") {
			t += ":8"
		}
		out = append(out, t)
	}
	return out, nil
}

var producedRe = regexp.MustCompile(`produced (\d+) events`)

func produced(summary string) int64 {
	m := producedRe.FindStringSubmatch(summary)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

// throughput drains the same one-topic backlog with bare and with
// changeprop (one rule), alternating, in fresh consumer groups.
func (h *harness) throughput() error {
	if err := h.startCluster("cluster-1rule", []string{"mediawiki.job.refreshLinks",
		"mediawiki.job.htmlCacheUpdate", "mediawiki.job.cirrusSearchLinksUpdate"}); err != nil {
		return err
	}
	n := strconv.FormatInt(h.events, 10)
	sum, err := h.loadgen("preload-1rule", 5*time.Minute, "-rate", "0", "-n", n, "-topics", "refreshLinks", "-delay-rate", "0", "-unique")
	if err != nil {
		return err
	}
	h.res.preload1 = sum
	runs := h.reps
	if h.perf {
		runs++ // the last changeprop run is profiled, not counted
	}
	for i := range runs {
		profile := h.perf && i == runs-1
		if !profile {
			d, err := h.drainBare(fmt.Sprintf("bare-%d", i), "mediawiki.job.refreshLinks", h.events)
			if err != nil {
				return err
			}
			h.res.bare = append(h.res.bare, d)
		}
		name := fmt.Sprintf("cp1-%d", i)
		if profile {
			name = "cp1-profile"
		}
		cfg, err := h.config("cpbench1-"+strconv.Itoa(i), true, "mediawiki.job.refreshLinks")
		if err != nil {
			return err
		}
		base := h.sim().Total
		p, err := h.changeprop(name, cfg, profile)
		if err != nil {
			return err
		}
		d := h.watch(p, base, h.events, 5*time.Second, 3*time.Minute, nil)
		p.stop()
		if profile {
			h.res.profiles = append(h.res.profiles, h.perfReport(name, "one rule, 0.5-4 KB refreshLinks events", d))
			continue
		}
		h.res.cp1 = append(h.res.cp1, d)
		h.logf("changeprop 1 rule %d: %d jobs in window, %.0f jobs/s, %.3f CPU-s per 1000 jobs", i, d.jobs, d.jobsPerSec(), d.cpuPer1000())
	}
	for i := range h.sideReps {
		suffix := "side1-" + strconv.Itoa(i)
		cfg, err := h.config("cpbench1-"+suffix, true, "mediawiki.job.refreshLinks")
		if err != nil {
			return err
		}
		c, b, err := h.together(suffix, cfg, "mediawiki.job.refreshLinks", h.events)
		if err != nil {
			return err
		}
		if c.jobs > 0 {
			h.res.side1CP = append(h.res.side1CP, c)
			h.res.side1Bare = append(h.res.side1Bare, b)
		}
	}
	return nil
}

// latency runs changeprop (one rule), then bare, at half of changeprop's
// measured capacity, and reads the added latency from the job runner.
func (h *harness) latency() error {
	rates := h.latencyRates
	if h.cluster == nil {
		if err := h.startCluster("cluster-latency", []string{"mediawiki.job.htmlCacheUpdate",
			"mediawiki.job.cirrusSearchLinksUpdate"}); err != nil {
			return err
		}
	}
	if len(rates) == 0 {
		capacity, _, _ := median(h.res.cp1, drain.jobsPerSec)
		// Half of the capacity is the target's rate; a quarter shows
		// the latency where the two cores are not saturated by the
		// generator, the cluster and the runner besides.
		rates = []int{max(int(capacity/2), 1), max(int(capacity/4), 1)}
	}
	for _, rate := range rates {
		if err := h.latencyAt(rate); err != nil {
			return err
		}
	}
	return nil
}

// latencyWarmup is the start of a latency run whose samples are dropped.
const latencyWarmup = time.Second

// latencyLinger is the load generator's linger.ms in the latency runs: at
// most half a millisecond added to every measured latency, where 0 sent a
// request per event or two and the cluster then took 0.36 of a core at
// 16,000 events/s instead of 0.17.
const latencyLinger = "0.5"

// afterRunStarts calls f d after the load generator name has made its
// events and begun sending them (its log says "before the run"), unless
// the returned stop is called first.
func (h *harness) afterRunStarts(name string, d time.Duration, f func()) (stop func()) {
	log := filepath.Join(h.work, name+".log")
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if b, _ := os.ReadFile(log); strings.Contains(string(b), "before the run") {
				break
			}
		}
		select {
		case <-done:
		case <-time.After(d):
			f()
		}
	}()
	return sync.OnceFunc(func() { close(done) })
}

// latencyAt measures changeprop, then bare, at rate events per second.
func (h *harness) latencyAt(rate int) error {
	for _, who := range []string{"changeprop", "bare"} {
		jobType, topic := "htmlCacheUpdate", "mediawiki.job.htmlCacheUpdate"
		var p *proc
		var err error
		metricsURL := "" // changeprop's /metrics
		if who == "changeprop" {
			cfg, cerr := h.config("cpbenchlat", true, topic)
			if cerr != nil {
				return cerr
			}
			port, perr := testkit.FreePort()
			if perr != nil {
				return perr
			}
			cfg = strings.Replace(cfg, "listen: 127.0.0.1:0", "listen: 127.0.0.1:"+strconv.Itoa(port), 1)
			metricsURL = "http://127.0.0.1:" + strconv.Itoa(port) + "/metrics"
			p, err = h.changeprop("cp1-latency", cfg, false)
		} else {
			jobType, topic = "cirrusSearchLinksUpdate", "mediawiki.job.cirrusSearchLinksUpdate"
			p, err = h.startBare("bare-latency", topic, h.simURL)
		}
		if err != nil {
			return err
		}
		// Warm up until the consumer answers: it has joined its group.
		ready := false
		for i := 0; i < 15 && !ready; i++ {
			base := h.sim().Total
			if _, err := h.loadgen(fmt.Sprintf("warmup-%s-%d", who, i), time.Minute, "-rate", "0", "-n", "20",
				"-topics", jobType, "-delay-rate", "0", "-unique"); err != nil {
				return err
			}
			ready = waitFor(3*time.Second, func() bool { return h.sim().Total-base >= 20 })
		}
		if !ready {
			p.stop()
			return fmt.Errorf("%s answered no warm-up job", who)
		}
		idle(time.Second)
		h.simReset()
		base := h.sim().Total
		// The samples of the first latencyWarmup are dropped: the load
		// generator's producer is still learning the partition leaders
		// then, and its first events wait for that (about 100 ms here)
		// after meta.dt was stamped. CPU is counted from there too, and
		// not while the generator makes its events before the run.
		var mu sync.Mutex
		var from struct {
			set   bool
			jobs  int64
			cpu   time.Duration
			ticks cpuTicks
			sched schedWaits
		}
		mark := func() {
			h.simReset()
			jobs, cpu := h.sim().Total, cpuTime(p.pid())
			ticks := machineCPU()
			var sched schedWaits
			if metricsURL != "" {
				sched, _ = scrapeSchedWaits(metricsURL)
			}
			mu.Lock()
			defer mu.Unlock()
			from.set, from.jobs, from.cpu, from.ticks, from.sched = true, jobs, cpu, ticks, sched
		}
		warm := h.afterRunStarts("latency-"+who, latencyWarmup, mark)
		sum, err := h.loadgen("latency-"+who, h.latencyFor+latencyWarmup+time.Minute, "-rate", strconv.Itoa(rate),
			"-duration", (h.latencyFor + latencyWarmup).String(), "-topics", jobType, "-delay-rate", "0", "-unique",
			"-X", "linger.ms="+latencyLinger, "-pregenerate", "-client", h.loadgenClient)
		warm()
		if err != nil {
			p.stop()
			return err
		}
		want := produced(sum)
		waitFor(15*time.Second, func() bool { return h.sim().Total-base >= want })
		s := h.simLatency()
		cpu := cpuTime(p.pid())
		ticks := machineCPU()
		var sched schedWaits
		if metricsURL != "" {
			sched, _ = scrapeSchedWaits(metricsURL)
		}
		p.stop()
		mu.Lock()
		if !from.set {
			mu.Unlock()
			return fmt.Errorf("latency-%s: the run never started (see latency-%s.log)", who, who)
		}
		jobs := max(s.Total-from.jobs, 1)
		cpu -= from.cpu
		ticks = ticks.sub(from.ticks)
		sched = sched.sub(from.sched)
		mu.Unlock()
		answered, busyShare, stealShare := s.Total-base, ticks.busy/max(ticks.total, 1), ticks.steal/max(ticks.total, 1)
		h.res.latency = append(h.res.latency, latencyRun{who: who, rate: rate, produced: want, answered: answered,
			p50: s.AddedLatency.P50, p90: s.AddedLatency.P90, p99: s.AddedLatency.P99, max: s.AddedLatency.Max,
			windowP99Median: s.AddedLatency.WindowP99Median, windowP99Max: s.AddedLatency.WindowP99Max,
			cpuPer1000: cpu.Seconds() / float64(jobs) * 1000, machineBusy: busyShare,
			steal:         stealShare,
			othersPer1000: (ticks.busy/clockTick - cpu.Seconds()) / float64(jobs) * 1000, sched: sched})
		h.logf("latency %s at %d/s: p50 %v p99 %v, p99 of %d windows of 250ms: median %v, worst %v (%d of %d answered; machine %.0f%% busy, %.1f%% stolen)", who, rate,
			s.AddedLatency.P50, s.AddedLatency.P99, s.AddedLatency.Windows, s.AddedLatency.WindowP99Median, s.AddedLatency.WindowP99Max,
			answered, want, busyShare*100, stealShare*100)
	}
	return nil
}

// rules30 measures the 30-rule config: idle, then draining a mixed backlog
// (a fresh cluster per run: the partitioner rules write into topics that a
// later run would read again).
func (h *harness) rules30() error {
	topics, err := h.configTopics()
	if err != nil {
		return err
	}
	if err := h.startCluster("cluster-30rules-idle", topics); err != nil {
		return err
	}
	for _, stderr := range []bool{false, true} {
		name := "cp30-idle"
		if stderr {
			name = "cp30-idle-stderr"
		}
		cfg, err := h.config("cpbench"+strings.TrimPrefix(name, "cp"), false, "")
		if err == nil && stderr {
			cfg, err = clientLogsStderr(cfg)
		}
		if err != nil {
			return err
		}
		p, err := h.changeprop(name, cfg, false)
		if err != nil {
			return err
		}
		idle(10 * time.Second)
		c0 := cpuTime(p.pid())
		idle(10 * time.Second)
		share := (cpuTime(p.pid()) - c0).Seconds() / 10
		rss := rssKB(p.pid())
		p.stop()
		if stderr {
			h.res.idleStderr = share
		} else {
			h.res.idleCPU, h.res.idleRSS = share, rss
		}
		h.logf("30 rules idle (%s): RSS %d kB, %.1f%% of a core", name, rss, share*100)
	}

	runs := h.reps
	if h.perf {
		runs++
	}
	for i := range runs {
		if err := h.drain30(i, h.perf && i == runs-1, topics); err != nil {
			return err
		}
	}
	for i := range h.sideReps {
		if err := h.sideBySide(i, topics); err != nil {
			return err
		}
	}
	return nil
}

// sideBySide drains one 30-rule backlog with changeprop and the bare loop
// at the same time, each answered by a job runner of its own, so that what
// the machine's speed does in the window falls on both. The window runs
// from the first sample at which both have answered 5% of the backlog to
// the first at which either has answered 95%.
func (h *harness) sideBySide(i int, topics []string) error {
	suffix := "side-" + strconv.Itoa(i)
	sum, err := h.backlog30(suffix, topics)
	if err != nil {
		return err
	}
	cfg, err := h.config("cpbench30-"+suffix, false, "")
	if err != nil {
		return err
	}
	c, b, err := h.together(suffix, cfg, `^mediawiki\.job\..*`, produced(sum))
	if err != nil || c.jobs == 0 {
		return err
	}
	h.res.sideCP = append(h.res.sideCP, c)
	h.res.sideBare = append(h.res.sideBare, b)
	return nil
}

// together runs changeprop with cfg and the bare loop on topics at the same
// time, each with a group of its own and answered by a job runner of its
// own, until both have answered expect jobs, and cuts their samples to the
// common window (sideWindow). Without a common window both drains are zero.
func (h *harness) together(suffix, cfg, topics string, expect int64) (c, b drain, err error) {
	baseCP, baseBare := h.sim().Total, h.simStatsAt(h.sim2URL, false).Total
	bare, err := h.startBare("bare-"+suffix, topics, h.sim2URL)
	if err != nil {
		return c, b, err
	}
	cp, err := h.changeprop("cp-"+suffix, cfg, false)
	if err != nil {
		bare.stop()
		return c, b, err
	}
	var cps, bares []sample
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(4 * time.Minute)
	for time.Now().Before(deadline) && !cp.exited() && !bare.exited() {
		<-tick.C
		now := time.Now()
		cps = append(cps, sample{at: now, jobs: h.sim().Total - baseCP, cpu: cpuTime(cp.pid())})
		bares = append(bares, sample{at: now, jobs: h.simStatsAt(h.sim2URL, false).Total - baseBare, cpu: cpuTime(bare.pid())})
		if cps[len(cps)-1].jobs >= expect && bares[len(bares)-1].jobs >= expect {
			break
		}
	}
	bare.stop()
	cp.stop()
	c, b, ok := sideWindow(cps, bares, expect)
	if !ok {
		h.logf("side by side %s: no common window (changeprop answered %d, the bare loop %d of %d)", suffix, c.total, b.total, expect)
		return drain{}, drain{}, nil
	}
	h.logf("side by side %s: %v window; changeprop %d jobs, %.0f per CPU-second; bare loop %d jobs, %.0f per CPU-second",
		suffix, c.wall.Round(time.Millisecond), c.jobs, c.jobsPerCPUSec(), b.jobs, b.jobsPerCPUSec())
	return c, b, nil
}

// sideWindow cuts two series sampled at the same moments to their common
// window: from the first sample at which both reached 5% of expect to the
// first at which either reached 95%.
func sideWindow(a, b []sample, expect int64) (da, db drain, ok bool) {
	n := min(len(a), len(b))
	if n > 0 {
		da.total, db.total = a[n-1].jobs, b[n-1].jobs
	}
	lo := slices.IndexFunc(a[:n], func(s sample) bool { return s.jobs >= expect/20 })
	for lo >= 0 && lo < n && b[lo].jobs < expect/20 {
		lo++
	}
	hi := -1
	for j := max(lo, 0); j < n; j++ {
		if a[j].jobs >= expect*19/20 || b[j].jobs >= expect*19/20 {
			hi = j
			break
		}
	}
	if lo < 0 || lo >= n || hi <= lo {
		return da, db, false
	}
	cut := func(s []sample, d drain) drain {
		d.jobs, d.wall, d.cpu = s[hi].jobs-s[lo].jobs, s[hi].at.Sub(s[lo].at), s[hi].cpu-s[lo].cpu
		return d
	}
	return cut(a, da), cut(b, db), true
}

// startBare starts the bare loop as name (its consumer group too) on
// topics (a list, or a ^regex), posting to the job runner at sim with 100
// requests in flight.
func (h *harness) startBare(name, topics, sim string) (*proc, error) {
	p, _, err := h.start(name, false, h.exe("bare"), "-brokers", h.addr, "-topics", topics, "-group", name,
		"-url", sim+"/rpc/RunSingleJob.php", "-concurrency", "100")
	return p, err
}

// drainBare runs the bare loop on topics until the job runner has answered
// expect jobs more, and measures it.
func (h *harness) drainBare(name, topics string, expect int64) (drain, error) {
	base := h.sim().Total
	p, err := h.startBare(name, topics, h.simURL)
	if err != nil {
		return drain{}, err
	}
	d := h.watch(p, base, expect, 5*time.Second, 3*time.Minute, nil)
	p.stop()
	h.logf("%s: %d jobs in window, %.0f jobs/s, %.3f CPU-s per 1000 jobs", name, d.jobs, d.jobsPerSec(), d.cpuPer1000())
	return d, nil
}

// backlog30 starts a fresh cluster with topics and writes the 30-rule
// backlog into it; it returns the generator's summary.
func (h *harness) backlog30(suffix string, topics []string) (string, error) {
	if err := h.startCluster("cluster-30rules-"+suffix, topics); err != nil {
		return "", err
	}
	return h.loadgen("preload-30rules-"+suffix, 5*time.Minute, "-rate", "0",
		"-n", strconv.FormatInt(h.events, 10), "-delay-rate", "0", "-unique")
}

// drain30 is run i of the 30-rule drain: a fresh cluster, the backlog, the
// bare loop on it (unless profile), then changeprop with jobqueue.yaml,
// under perf with profile.
func (h *harness) drain30(i int, profile bool, topics []string) error {
	suffix := strconv.Itoa(i)
	sum, err := h.backlog30(suffix, topics)
	if err != nil {
		return err
	}
	h.res.preload30 = sum
	if !profile {
		// The bare loop reads the same backlog first, with a group of its
		// own: the machine's speed drifts over a bench, so the 30 rules
		// are compared with a bare loop measured beside them.
		d, err := h.drainBare("bare30-"+suffix, `^mediawiki\.job\..*`, produced(sum))
		if err != nil {
			return err
		}
		h.res.bare30 = append(h.res.bare30, d)
	}
	name := "cp30-" + suffix
	if profile {
		name = "cp30-profile"
	}
	cfg, err := h.config("cpbench30-"+suffix, false, "")
	if err != nil {
		return err
	}
	base := h.sim().Total
	p, err := h.changeprop(name, cfg, profile)
	if err != nil {
		return err
	}
	d := h.watch(p, base, produced(sum), 5*time.Second, 4*time.Minute, nil)
	if i == 0 {
		idle(10 * time.Second)
		h.res.afterRSS = rssKB(p.pid())
	}
	p.stop()
	if profile {
		h.res.profiles = append(h.res.profiles, h.perfReport(name, "30 rules, mixed 0.5-4 KB job events", d))
		return nil
	}
	h.res.cp30 = append(h.res.cp30, d)
	h.logf("changeprop 30 rules %s: %d of %d jobs in window, %.0f jobs/s, %.3f CPU-s per 1000 jobs, max RSS %d kB",
		suffix, d.jobs, d.total, d.jobsPerSec(), d.cpuPer1000(), d.maxRSS)
	return nil
}

// clientLogsStderr sets kafka.client_logs: stderr in a config made by
// config: librdkafka prints its own log lines, and no client has a
// goroutine waiting for them.
func clientLogsStderr(cfg string) (string, error) {
	const at = "\n  commit_interval:"
	if !strings.Contains(cfg, at) {
		return "", fmt.Errorf("%s no longer sets kafka.commit_interval: update bench/phases.go", jobqueueYAML)
	}
	return strings.Replace(cfg, at, "\n  client_logs: stderr"+at, 1), nil
}

// backlogRun preloads a large backlog of small events, then watches
// changeprop (30 rules) work on it.
func (h *harness) backlogRun() error {
	topics, err := h.configTopics()
	if err != nil {
		return err
	}
	if err := h.startCluster("cluster-backlog", topics); err != nil {
		return err
	}
	t0 := time.Now()
	sum, err := h.loadgen("preload-backlog", 8*time.Minute, "-rate", "0",
		"-n", strconv.FormatInt(h.backlog, 10), "-max-size", "0", "-delay-rate", "0")
	if err != nil {
		return err
	}
	b := &h.res.backlog
	b.preload, b.loadgenTime = sum, time.Since(t0)
	b.clusterRSS = rssKB(h.cluster.pid())
	cfg, err := h.config("cpbench30backlog", false, "")
	if err != nil {
		return err
	}
	base := h.sim().Total
	p, err := h.changeprop("cp30-backlog", cfg, false)
	if err != nil {
		return err
	}
	start := time.Now()
	next := 10 * time.Second
	b.d = h.watch(p, base, produced(sum), 30*time.Second, h.backlogWatch, func(s sample) {
		if s.at.Sub(start) >= next {
			b.rssAt = append(b.rssAt, s.rss)
			next += 10 * time.Second
		}
	})
	b.watched = time.Since(start)
	p.stop()
	h.cluster.stop()
	h.logf("backlog: %d jobs in %v, max RSS %d kB", b.d.total, b.watched.Round(time.Second), b.d.maxRSS)
	return nil
}

// goBench runs the hot-path micro-benchmarks.
func (h *harness) goBench() {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", ".", "-benchmem",
		"./rules", "./dispatch/...", "./partition", "./breaker")
	cmd.Dir = h.root
	out, err := cmd.CombinedOutput()
	h.res.goBench, h.res.goBenchErr, h.res.goBenchTime = string(out), err, time.Since(t0)
	_ = os.WriteFile(filepath.Join(h.work, "gobench.txt"), out, 0o644)
	h.logf("go test -bench: %v (%v)", err, h.res.goBenchTime.Round(time.Second))
}
