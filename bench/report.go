package main

import (
	"bufio"
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	beginMarker = "<!-- bench:begin (written by `make bench`; edit outside the markers) -->"
	endMarker   = "<!-- bench:end -->"
)

// writeReport puts body between the markers of the file at path, keeping
// what is around them; without markers, it appends them.
func writeReport(path, body string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(old)
	block := beginMarker + "\n" + body + "\n" + endMarker
	i := strings.Index(s, "<!-- bench:begin")
	j := strings.Index(s, endMarker)
	if i >= 0 && j > i {
		s = s[:i] + block + s[j+len(endMarker):]
	} else {
		s = strings.TrimRight(s, "\n") + "\n\n" + block + "\n"
	}
	return os.WriteFile(path, []byte(s), 0o644)
}

func machine() [][2]string {
	run := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).Output()
		if err != nil {
			return "?"
		}
		return strings.TrimSpace(string(out))
	}
	model := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if m := regexp.MustCompile(`(?m)^model name\s*:\s*(.*)$`).FindSubmatch(b); m != nil {
			model = string(m[1])
		}
	}
	load := "?"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if m := regexp.MustCompile(`MemTotal:\s*(\d+)`).FindSubmatch(b); m != nil {
			kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
			mem = fmt.Sprintf("%.1f GB", float64(kb)/1e6)
		}
	}
	return [][2]string{
		{"`nproc`", run("nproc")},
		{"CPU model (`/proc/cpuinfo`)", model},
		{"`go version`", run("go", "version")},
		{"kernel (`uname -r`)", run("uname", "-r")},
		{"memory", mem},
		{"load average when the run started", load + " (other builds share the machine)"},
		{"date", time.Now().UTC().Format("2006-01-02 15:04 UTC")},
	}
}

func (h *harness) report() string {
	r := &h.res
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("## End-to-end (`make bench`)\n\n")
	p("Measured by `bench/` (`make bench`, %v on this run). Every party is a process of its own: the\n", r.elapsed.Round(time.Second))
	p("kfake cluster (`bench/cluster`, 1 broker, 2 MiB log segments), the job runner (`changeprop jobrunner-sim -latency %s -parse lean -server %s`),\n", h.runnerLatency, h.runnerServer)
	p("the load generator (`changeprop loadgen`), and the measured process: `changeprop run` or the bare loop\n")
	p("(`bench/bare`: librdkafka + net/http, 100 workers, no rules, auto-commit). CPU is utime+stime of the\n")
	p("measured process from `/proc/<pid>/stat`, RSS is `VmRSS` from `/proc/<pid>/status`. A drain is measured\n")
	p("from the moment the runner has answered 5%% of the backlog to 95%%, leaving out start-up (group join)\n")
	p("and the tail. Two cores are shared by all processes, so jobs/s is what this machine does with the\n")
	p("cluster and the runner on the same cores; CPU-seconds per 1,000 jobs is the figure to compare.\n\n")
	p("**Machine**\n\n| | |\n|---|---|\n")
	for _, kv := range r.machine {
		p("| %s | %s |\n", kv[0], kv[1])
	}
	p("\n**Commands**\n\n```\nmake bench    # = go build -o bin/ ./cmd/changeprop ./bench/... && bin/bench -out docs/benchmarks.md\n")
	p("bin/cluster -brokers 1 -partitions 4 -topics mediawiki.job.refreshLinks,...\n")
	p("bin/changeprop jobrunner-sim -listen 127.0.0.1:0 -latency %s -parse lean -server %s\n", h.runnerLatency, h.runnerServer)
	p("bin/changeprop loadgen -brokers ADDR -rate 0 -n %d -topics refreshLinks -delay-rate 0 -unique   # one-rule backlog\n", h.events)
	p("bin/changeprop loadgen -brokers ADDR -rate 0 -n %d -delay-rate 0 -unique                        # 30-rule backlog, all job types\n", h.events)
	p("bin/changeprop loadgen -brokers ADDR -rate R -duration D -topics htmlCacheUpdate -delay-rate 0 -unique -pregenerate -client %s -X linger.ms=%s   # latency\n",
		h.loadgenClient, latencyLinger)
	p("bin/changeprop run -create-topics -config <jobqueue.yaml with brokers, job runner, listen substituted> -log-level warn\n")
	p("bin/bare -brokers ADDR -topics mediawiki.job.refreshLinks -group bare-N -url SIM/rpc/RunSingleJob.php -concurrency 100\n")
	p("bin/bare -brokers ADDR -topics '^mediawiki\\.job\\..*' -group bare30-N -url SIM/rpc/RunSingleJob.php -concurrency 100   # 30-rule backlog\n```\n\n")
	if len(h.measuredEnv) > 0 {
		p("The measured processes ran with `%s` in their environment (`-env`): a comparison, not the defaults.\n\n", strings.Join(h.measuredEnv, " "))
	}
	if h.rulesFile != "" {
		p("The runs are made of `%s` (`-rules-config`): a comparison, not the production-shaped config.\n\n", h.rulesFile)
	}
	p("The configs are `%s` with the brokers, the job runner (`jobrunner.svc:9005`) and `listen`\n", cmp.Or(h.rulesFile, jobqueueYAML))
	p("substituted, `auto.offset.reset: earliest` added (the backlog is written before the groups exist)\n")
	p("`rate_limit` removed (cdnPurge's 500/s would set the 30-rule throughput) and `redis` removed (dedupe in the process). The one-rule config\n")
	p("keeps that file's `kafka` and `defaults` and has one rule on `mediawiki.job.refreshLinks`, concurrency\n")
	p("100 (the bare loop has 100 workers). The throughput and latency backlogs are generated with `-unique`:\n")
	p("events keep `sha1` and `root_event` where their job type has them, so the dedupe store does all its\n")
	p("work, but none is a duplicate, so that every event is a job the runner answers, for changeprop as for\n")
	p("the bare loop (which deduplicates nothing). The 1,000,000-event backlog keeps the generator's natural\n")
	p("duplicates. Logs, configs and perf data of this run: `%s`.\n\n", h.work)

	p("### Throughput with a zero-latency job runner\n\n")
	p("Backlogs: one rule: %s\n", strings.TrimPrefix(r.preload1, "loadgen: "))
	p("30 rules: %s\n\n", strings.TrimPrefix(r.preload30, "loadgen: "))
	p("Median of %d runs (the lower middle value for an even count) [lowest–highest]; every run is a fresh consumer group on the same backlog,\n", h.reps)
	p("bare and changeprop alternating. A 30-rule run has a cluster and a backlog of its own (the partitioners write),\n")
	p("which the bare loop reads first, every job topic with one consumer, then changeprop.\n")
	p("Other processes' CPU is that of the cluster and job-runner processes\n")
	p("in the same window, per 1,000 jobs.\n\n")
	p("| process | jobs/s | CPU-s per 1,000 jobs | jobs per CPU-second | jobs in window | max RSS | cluster + runner CPU-s per 1,000 |\n")
	p("|---|---|---|---|---|---|---|\n")
	row := func(name string, ds []drain) {
		if len(ds) == 0 {
			p("| %s | not measured | | | | | |\n", name)
			return
		}
		js, jl, jh := median(ds, drain.jobsPerSec)
		c, cl, ch := median(ds, drain.cpuPer1000)
		k, kl, kh := median(ds, drain.jobsPerCPUSec)
		n, _, _ := median(ds, func(d drain) float64 { return float64(d.jobs) })
		m, _, _ := median(ds, func(d drain) float64 { return float64(d.maxRSS) / 1024 })
		o, _, _ := median(ds, func(d drain) float64 { return d.others.Seconds() / float64(d.jobs) * 1000 })
		p("| %s | %.0f [%.0f–%.0f] | %.3f [%.3f–%.3f] | %.0f [%.0f–%.0f] | %.0f | %.0f MB | %.3f |\n",
			name, js, jl, jh, c, cl, ch, k, kl, kh, n, m, o)
	}
	row("bare loop (1 topic)", r.bare)
	row("changeprop, 1 rule", r.cp1)
	if len(r.bare30) > 0 {
		row("bare loop (the 30-rule backlogs: every job topic, one consumer)", r.bare30)
	}
	row("changeprop, 30 rules (jobqueue.yaml)", r.cp30)
	if len(r.bare) > 0 && len(r.cp1) > 0 {
		b1, _, _ := median(r.bare, drain.jobsPerCPUSec)
		c1, _, _ := median(r.cp1, drain.jobsPerCPUSec)
		p("\nRatio changeprop / bare, jobs per CPU-second: **%.2f** with 1 rule", c1/b1)
		if len(r.cp30) > 0 {
			c30, _, _ := median(r.cp30, drain.jobsPerCPUSec)
			p(", %.2f with 30 rules", c30/b1)
		}
		bj, _, _ := median(r.bare, drain.jobsPerSec)
		cj, _, _ := median(r.cp1, drain.jobsPerSec)
		p("; jobs/s: %.2f with 1 rule.\n", cj/bj)
		p("Targets: ≥ 25,000 jobs per CPU-second (measured: %.0f with 1 rule", c1)
		if len(r.cp30) > 0 {
			c30, _, _ := median(r.cp30, drain.jobsPerCPUSec)
			p(", %.0f with 30", c30)
		}
		p("), ≥ 0.8 of bare (measured: %.2f with 1 rule", c1/b1)
		if len(r.side1CP) > 0 {
			m, _, _ := medianOf(pairRatios(r.side1CP, r.side1Bare))
			p(", %.2f side by side", m)
		}
		if len(r.sideCP) > 0 {
			m, _, _ := medianOf(pairRatios(r.sideCP, r.sideBare))
			p("; %.2f with 30 rules side by side", m)
		}
		p(").\n")
	}
	if len(r.cp30) > 0 && len(r.bare30) > 0 {
		m, lo, hi := medianOf(pairRatios(r.cp30, r.bare30))
		p("\nRatio changeprop with 30 rules / the bare loop on the same backlog just before, jobs per CPU-second, per run: **%.2f** [%.2f–%.2f].\n", m, lo, hi)
	}
	side := func(what string, cp, bare []drain) {
		if len(cp) == 0 {
			return
		}
		c, cl, ch := median(cp, drain.jobsPerCPUSec)
		b, bl, bh := median(bare, drain.jobsPerCPUSec)
		m, lo, hi := medianOf(pairRatios(cp, bare))
		p("| %s | %.0f [%.0f–%.0f] | %.0f [%.0f–%.0f] | **%.2f** [%.2f–%.2f] |\n", what, c, cl, ch, b, bl, bh, m, lo, hi)
	}
	if len(r.side1CP)+len(r.sideCP) > 0 {
		p("\nSide by side: changeprop and the bare loop draining the same backlog at the same time, each with a group of its own\n")
		p("and answered by a job runner of its own, over the window in which both had answered 5%% and neither 95%%, so that\n")
		p("the machine's swings fall on both (%d runs each; the 30-rule runs on a fresh backlog each). Jobs per CPU-second:\n\n", h.sideReps)
		p("| | changeprop | bare loop | ratio per run |\n|---|---|---|---|\n")
		side("1 rule (bare loop on the same topic)", r.side1CP, r.side1Bare)
		side("30 rules (bare loop on every job topic, one consumer)", r.sideCP, r.sideBare)
	}
	if len(r.cp30) > 0 {
		d := r.cp30[0]
		p("\nIn the 30-rule runs a `refreshLinks` or `htmlCacheUpdate` event is consumed twice (partitioner, then the\n")
		p("partitioned topic) and produced once more; the runner answered %d of %d events in the first run.\n", d.total, produced(r.preload30))
	}

	p("\n### Added latency at half capacity\n\n")
	p("Latency is receipt at the job runner minus `meta.dt`, taken before the runner's own latency (0 here),\n")
	p("so nothing is subtracted. loadgen makes every event of a run before it starts (`-pregenerate`) and\n")
	p("stamps `meta.dt` with microseconds, and signs the event again, as it hands each to its producer\n")
	p("(`-client %s -X linger.ms=%s`); it issues the rate every millisecond. The latency includes that producer, kfake\n", h.loadgenClient, latencyLinger)
	p("and the consumer's fetch, which is why the bare loop is measured the same way. Same clock: every\n")
	p("process runs on this machine. Each run is %v long after a first %v whose samples and CPU are not\n", h.latencyFor, latencyWarmup)
	p("counted (the generator's producer learning the partition leaders; every job is still answered).\n")
	p("The cluster, the job runner and the generator run with `GOGC=%s`. *Machine busy* is the share of\n", instrumentGOGC)
	p("both cores in use over the run (`/proc/stat`), by every process; *steal* the share the hypervisor\n")
	p("gave to others while a CPU of this machine wanted to run; *others* is the CPU of every other\n")
	p("process per 1,000 jobs: the price of generating, storing and answering the jobs on the same cores.\n")
	p("*p99 per 250 ms* is the p99 of each 250 ms of receipts at the runner, the median window's and the\n")
	p("worst: a worst far above the median is a tail made in a few bursts, not spread over the run.\n")
	for _, l := range r.latency {
		if b1, _, ok := l.sched.over(schedShort); ok {
			b2, _, _ := l.sched.over(schedLong)
			p("*Runnable waits* are changeprop's `go_sched_latencies_seconds` over the run (scraped from its `/metrics`\n")
			p("at the start and the end): the share of its goroutines' waits for a processor longer than %s and than\n", ms(secs(b1)))
			p("%s, the histogram's bounds. A job handed to a worker waits there before its request is sent.\n", ms(secs(b2)))
			break
		}
	}
	p("\n| process | rate (jobs/s) | jobs answered / produced | p50 | p90 | p99 | max | p99 per 250 ms: median / worst | CPU-s per 1,000 jobs | machine busy | steal | others, CPU-s per 1,000 | runnable waits over ~1 / ~10 ms |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, l := range r.latency {
		p("| %s | %d | %d / %d | %s | %s | %s | %s | %s / %s | %.3f | %.0f%% | %.1f%% | %.3f | %s |\n", l.who, l.rate, l.answered, l.produced,
			ms(l.p50), ms(l.p90), ms(l.p99), ms(l.max), ms(l.windowP99Median), ms(l.windowP99Max), l.cpuPer1000, l.machineBusy*100, l.steal*100, l.othersPer1000,
			schedCell(l.sched))
	}
	if len(r.latency) == 0 {
		p("| not measured | | | | | | | | | | | | |\n")
	}
	p("\nTarget: p99 added latency ≤ 5 ms at half capacity.\n")

	p("\n### Memory (VmRSS of `changeprop run`, 30 rules)\n\n| state | RSS |\n|---|---|\n")
	p("| idle: started, subscribed, no events (after 20 s; %.1f%% of a core while idle, %.1f%% with `kafka.client_logs: stderr`) | %.0f MB |\n", r.idleCPU*100, r.idleStderr*100, float64(r.idleRSS)/1024)
	if len(r.cp30) > 0 {
		m, lo, hi := median(r.cp30, func(d drain) float64 { return float64(d.maxRSS) / 1024 })
		p("| under load: highest while draining the 0.5–4 KB backlog at full speed | %.0f MB [%.0f–%.0f] |\n", m, lo, hi)
	}
	p("| idle again, 10 s after the first drain ended | %.0f MB |\n", float64(r.afterRSS)/1024)
	bl := r.backlog
	if bl.d.total > 0 || len(bl.d.samples) > 0 {
		p("| %d-event backlog: highest in the first %v | %.0f MB |\n", h.backlog, bl.watched.Round(time.Second), float64(bl.d.maxRSS)/1024)
		p("\nBacklog: %s (natural JobGen sizes, no padding; preloaded in %v; kfake's RSS then %.0f MB).\n",
			strings.TrimPrefix(bl.preload, "loadgen: "), bl.loadgenTime.Round(time.Second), float64(bl.clusterRSS)/1024)
		p("changeprop (30 rules) then answered %d jobs in %v (%.0f jobs/s in the 5–95%% window). RSS every 10 s:", bl.d.total,
			bl.watched.Round(time.Second), bl.d.jobsPerSec())
		for _, v := range bl.rssAt {
			p(" %.0f", float64(v)/1024)
		}
		p(" MB.\n")
	}
	p("\nTarget: RSS ≤ 150 MB with the 30-rule config under load; bounded with a 1,000,000-event backlog.\n")

	if len(r.profiles) > 0 {
		p("\n### Where the CPU goes (perf)\n\n")
		p("`perf record -e cpu-clock -F 499 -g -- bin/changeprop run ...` over a whole extra drain (not one of the\n")
		p("measured runs), then `perf report --no-children --sort symbol`. Self time, grouped, then the top\n")
		p("symbols. The raw reports are in the work directory (`*.perf.txt`).\n")
		for _, pr := range r.profiles {
			p("\n**%s** (%d samples; the drain: %d jobs)\n\n", pr.what, pr.samples, pr.jobs)
			p("| group | self CPU |\n|---|---|\n")
			for _, g := range pr.groups {
				p("| %s | %.1f%% |\n", g.name, g.pct)
			}
			p("\n| self CPU | symbol |\n|---|---|\n")
			for _, s := range pr.top {
				p("| %.1f%% | `%s` |\n", s.pct, s.name)
			}
			if len(pr.incl) > 0 {
				p("\nInclusive (with callees), selected:\n\n| total CPU | function |\n|---|---|\n")
				for _, s := range pr.incl {
					p("| %.1f%% | `%s` |\n", s.pct, s.name)
				}
			}
		}
	}

	p("\n### Hot-path micro-benchmarks\n\n```\ngo test -run '^$' -bench . -benchmem ./rules ./dispatch/... ./partition ./breaker\n```\n\n")
	if r.goBenchErr != nil {
		p("The command failed (%v) on this run; its output:\n\n```\n%s\n```\n", r.goBenchErr, tail(r.goBench, 40))
	} else if r.goBench != "" {
		p("One run, %v, on the same shared machine.\n\n", r.goBenchTime.Round(time.Second))
		p("| package | benchmark | ns/op | B/op | allocs/op | other |\n|---|---|---|---|---|---|\n")
		pkg := ""
		benchRe := regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)
		for l := range strings.SplitSeq(r.goBench, "\n") {
			if f, ok := strings.CutPrefix(l, "pkg: "); ok {
				pkg = f
				continue
			}
			m := benchRe.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			vals := map[string]string{}
			var other []string
			f := strings.Fields(m[2])
			for i := 0; i+1 < len(f); i += 2 {
				switch f[i+1] {
				case "ns/op", "B/op", "allocs/op":
					vals[f[i+1]] = f[i]
				default:
					other = append(other, f[i]+" "+f[i+1])
				}
			}
			p("| `%s` | `%s` | %s | %s | %s | %s |\n", strings.TrimPrefix(pkg, "changeprop/"), strings.TrimPrefix(m[1], "Benchmark"),
				vals["ns/op"], vals["B/op"], vals["allocs/op"], strings.Join(other, ", "))
		}
	} else {
		p("Not run (`-gotest=false`).\n")
	}
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// profile is a perf report of one drain.
type profile struct {
	what          string
	samples, jobs int64
	groups, top   []pct
	incl          []pct
}

type pct struct {
	name string
	pct  float64
}

var perfLine = regexp.MustCompile(`^\s+([\d.]+)%\s+(?:([\d.]+)%\s+)?\[(.)\]\s+(.+?)\s*$`)

// perfReport reads <work>/<name>.perf.data.
func (h *harness) perfReport(name, what string, d drain) profile {
	pr := profile{what: what, jobs: d.total}
	data := filepath.Join(h.work, name+".perf.data")
	self, err := exec.Command("perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "symbol",
		"-g", "none", "--percent-limit", "0.05").Output()
	if err != nil {
		h.logf("perf report %s: %v", name, err)
		return pr
	}
	_ = os.WriteFile(filepath.Join(h.work, name+".perf.txt"), self, 0o644)
	incl, _ := exec.Command("perf", "report", "-i", data, "--stdio", "--children", "--sort", "symbol",
		"-g", "none", "--percent-limit", "1").Output()
	_ = os.WriteFile(filepath.Join(h.work, name+".perf-children.txt"), incl, 0o644)
	if m := regexp.MustCompile(`# Samples: (\d+)([KM]?)`).FindSubmatch(self); m != nil {
		n, _ := strconv.ParseInt(string(m[1]), 10, 64)
		switch string(m[2]) {
		case "K":
			n *= 1000
		case "M":
			n *= 1_000_000
		}
		pr.samples = n
	}
	groups := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(self)))
	for sc.Scan() {
		m := perfLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		sym := strings.TrimSuffix(strings.TrimSpace(strings.TrimSuffix(m[4], "-")), "-")
		sym = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(sym), "-"))
		groups[group(m[3], sym)] += v
		if len(pr.top) < 25 {
			pr.top = append(pr.top, pct{sym, v})
		}
	}
	for g, v := range groups {
		pr.groups = append(pr.groups, pct{g, v})
	}
	slices.SortFunc(pr.groups, func(a, b pct) int {
		if a.pct > b.pct {
			return -1
		}
		if a.pct < b.pct {
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	sc = bufio.NewScanner(strings.NewReader(string(incl)))
	interesting := regexp.MustCompile(`^(changeprop/|net/http\.|encoding/json\.|github\.com/confluentinc/.*\.\(\*Consumer\)|github\.com/confluentinc/.*\.\(\*Producer\)|runtime\.gcBgMarkWorker$|runtime\.mallocgc$|github\.com/rs/zerolog)`)
	for sc.Scan() {
		m := perfLine.FindStringSubmatch(sc.Text())
		if m == nil || m[2] == "" {
			continue
		}
		sym := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(m[4]), "-"))
		sym = strings.TrimSpace(strings.TrimSuffix(sym, "-"))
		if !interesting.MatchString(sym) || len(pr.incl) >= 30 {
			continue
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		pr.incl = append(pr.incl, pct{sym, v})
	}
	return pr
}

// group names what a symbol's self time is spent on.
func group(kind, sym string) string {
	switch {
	case kind == "k":
		return "kernel (syscalls: network, futex, epoll; scheduling)"
	case strings.HasPrefix(sym, "rd_") || strings.HasPrefix(sym, "rd_kafka") || strings.HasPrefix(sym, "snappy") ||
		strings.HasPrefix(sym, "_cgo_") || strings.HasPrefix(sym, "crc32c") || strings.HasPrefix(sym, "LZ4"):
		return "librdkafka (C)"
	case strings.HasPrefix(sym, "runtime.mallocgc") || strings.HasPrefix(sym, "runtime.gc") || strings.HasPrefix(sym, "runtime.scan") ||
		strings.HasPrefix(sym, "runtime.greyobject") || strings.HasPrefix(sym, "runtime.findObject") ||
		strings.HasPrefix(sym, "runtime.heap") || strings.HasPrefix(sym, "runtime.(*mspan)") || strings.HasPrefix(sym, "runtime.(*mheap)") ||
		strings.HasPrefix(sym, "runtime.(*mcache)") || strings.HasPrefix(sym, "runtime.(*mcentral)") || strings.HasPrefix(sym, "runtime.memclr") ||
		strings.HasPrefix(sym, "runtime.wbBuf") || strings.HasPrefix(sym, "runtime.bulkBarrier") || strings.HasPrefix(sym, "runtime.markBits") ||
		strings.HasPrefix(sym, "runtime.(*gcWork)") || strings.HasPrefix(sym, "runtime.typePointers") || strings.HasPrefix(sym, "runtime.nextFreeFast") ||
		strings.HasPrefix(sym, "runtime.(*gcBits)") || strings.HasPrefix(sym, "runtime.spanOf") || strings.HasPrefix(sym, "runtime.sweepone") ||
		strings.HasPrefix(sym, "runtime.(*sweepLocked)") || strings.HasPrefix(sym, "runtime.newobject") || strings.HasPrefix(sym, "runtime.makeslice") ||
		strings.HasPrefix(sym, "runtime.growslice") || strings.HasPrefix(sym, "runtime.(*spanSet)") || strings.HasPrefix(sym, "runtime.tryDeferToSpanScan"):
		return "Go allocation + GC"
	case strings.HasPrefix(sym, "runtime."), strings.HasPrefix(sym, "gosave"), strings.HasPrefix(sym, "aeshash"):
		return "Go runtime: scheduler, channels, cgo transitions, maps, copies"
	case strings.HasPrefix(sym, "encoding/json."):
		return "encoding/json"
	case strings.HasPrefix(sym, "net/http.") || strings.HasPrefix(sym, "net/textproto.") || strings.HasPrefix(sym, "net.") ||
		strings.HasPrefix(sym, "bufio.") || strings.HasPrefix(sym, "net/url.") || strings.HasPrefix(sym, "internal/poll.") ||
		strings.HasPrefix(sym, "mime.") || strings.HasPrefix(sym, "syscall."):
		return "net/http, net, syscall wrappers"
	case strings.HasPrefix(sym, "changeprop/"):
		return "changeprop's own code"
	case strings.HasPrefix(sym, "github.com/confluentinc/"):
		return "confluent-kafka-go (Go side)"
	case strings.HasPrefix(sym, "github.com/rs/zerolog"):
		return "zerolog"
	case strings.HasPrefix(sym, "regexp"):
		return "regexp"
	case strings.HasPrefix(sym, "context.") || strings.HasPrefix(sym, "time.") || strings.HasPrefix(sym, "sync.") ||
		strings.HasPrefix(sym, "strings.") || strings.HasPrefix(sym, "strconv.") || strings.HasPrefix(sym, "bytes.") ||
		strings.HasPrefix(sym, "internal/") || strings.HasPrefix(sym, "unicode") || strings.HasPrefix(sym, "fmt.") ||
		strings.HasPrefix(sym, "io.") || strings.HasPrefix(sym, "reflect.") || strings.HasPrefix(sym, "sort.") ||
		strings.HasPrefix(sym, "slices.") || strings.HasPrefix(sym, "maps.") || strings.HasPrefix(sym, "errors."):
		return "Go standard library (context, time, sync, strings, reflect, ...)"
	case strings.HasPrefix(sym, "__") || strings.HasPrefix(sym, "_int_") || strings.HasPrefix(sym, "malloc") ||
		strings.HasPrefix(sym, "free") || strings.HasPrefix(sym, "pthread") || strings.HasPrefix(sym, "cfree") ||
		strings.HasPrefix(sym, "mem") || strings.HasPrefix(sym, "str") || strings.HasPrefix(sym, "clock_gettime"):
		return "libc (malloc, memcpy, locks)"
	}
	return "other"
}

// schedShort and schedLong are the runnable waits the latency table
// counts: those over the histogram's largest bounds at or under them.
const schedShort, schedLong = 1e-3, 11e-3

// schedCell is the latency table's runnable-waits cell: the shares over
// ~1 and ~10 ms, of how many waits; a dash without the histogram.
func schedCell(w schedWaits) string {
	_, short, ok1 := w.over(schedShort)
	_, long, ok2 := w.over(schedLong)
	if !ok1 || !ok2 {
		return "—"
	}
	return fmt.Sprintf("%.2f%% / %.3f%% of %d", short*100, long*100, w.total)
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
