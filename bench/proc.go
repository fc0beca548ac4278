package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"changeprop/internal/testkit"
)

// proc is a child process of the harness; its output goes to a log file
// in the work directory.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// instrumentGOGC is the GOGC of the processes that are not measured: the
// cluster, the job-runner simulator and the load generator collect their
// garbage a quarter as often, leaving that CPU to the measured process
// (their heaps are small next to this machine's memory).
const instrumentGOGC = "400"

// instrument tells whether bin with args is one of the processes that are
// not measured.
func instrument(bin string, args []string) bool {
	switch filepath.Base(bin) {
	case "cluster":
		return true
	case "changeprop":
		return len(args) > 0 && (args[0] == "loadgen" || args[0] == "jobrunner-sim")
	}
	return false
}

// start runs bin with args; stdout and stderr go to <work>/<name>.log. If
// firstLine, the first line of stdout is returned (e.g. an address), and
// the rest still goes to the log.
func (h *harness) start(name string, firstLine bool, bin string, args ...string) (*proc, string, error) {
	logf, err := os.Create(filepath.Join(h.work, name+".log"))
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = logf
	// Standard input stays open while the harness runs: bench/cluster
	// exits when it closes, so no cluster outlives a crashed harness.
	if _, err := cmd.StdinPipe(); err != nil {
		return nil, "", err
	}
	var lines chan string
	if firstLine {
		pr, err := cmd.StdoutPipe()
		if err != nil {
			return nil, "", err
		}
		lines = make(chan string, 1)
		go func() {
			r := bufio.NewReader(pr)
			l, _ := r.ReadString('\n')
			lines <- strings.TrimSpace(l)
			_, _ = io.Copy(logf, r)
		}()
	} else {
		cmd.Stdout = logf
	}
	// Keep children out of the terminal's process group: a Ctrl-C reaches
	// the harness, which stops them in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if instrument(bin, args) {
		cmd.Env = append(os.Environ(), "GOGC="+instrumentGOGC)
	} else if len(h.measuredEnv) > 0 {
		cmd.Env = append(os.Environ(), h.measuredEnv...)
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	h.procs = append(h.procs, p)
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	h.logf("started %s (pid %d): %s %s", name, cmd.Process.Pid, filepath.Base(bin), strings.Join(args, " "))
	if !firstLine {
		return p, "", nil
	}
	t := time.NewTimer(60 * time.Second)
	defer t.Stop()
	select {
	case l := <-lines:
		if l == "" {
			return p, "", fmt.Errorf("%s printed nothing; see %s.log", name, name)
		}
		return p, l, nil
	case <-t.C:
		p.stop()
		return nil, "", fmt.Errorf("%s printed nothing in 60s", name)
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to 40s (changeprop drains for up to its
// shutdown_timeout), then kills.
func (p *proc) stop() {
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(40 * time.Second)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// wait waits for the process to exit on its own, up to timeout.
func (p *proc) wait(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-t.C:
		p.stop()
		return fmt.Errorf("%s did not finish in %v", p.name, timeout)
	}
}

// clockTick is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
var clockTick = func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if n, err2 := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && err2 == nil && n > 0 {
		return float64(n)
	}
	return 100
}()

// cpuTime is utime+stime of pid (every thread, not children).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	// Fields after the command name, which may contain spaces: state is
	// field 3, utime 14 and stime 15.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return time.Duration((ut + st) / clockTick * float64(time.Second))
}

// cpuTicks are the clock ticks of every CPU of the machine since boot.
type cpuTicks struct {
	busy  float64 // user, nice, system, irq, softirq: work done on this machine
	steal float64 // the hypervisor ran something else while a CPU wanted to run
	total float64 // every state, idle and iowait included
}

// machineCPU returns the machine's CPU ticks from /proc/stat.
func machineCPU() cpuTicks {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTicks{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return parseCPULine(line)
}

// parseCPULine reads the first line of /proc/stat: "cpu" and the ticks in
// user, nice, system, idle, iowait, irq, softirq, steal, then guest and
// guest_nice, which user and nice already count.
func parseCPULine(line string) cpuTicks {
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return cpuTicks{}
	}
	var t cpuTicks
	for i, v := range f[1:] {
		if i >= 8 {
			break
		}
		x, _ := strconv.ParseFloat(v, 64)
		t.total += x
		switch i {
		case 3, 4: // idle, iowait
		case 7:
			t.steal += x
		default:
			t.busy += x
		}
	}
	return t
}

// sub is t less an earlier reading u.
func (t cpuTicks) sub(u cpuTicks) cpuTicks {
	return cpuTicks{busy: t.busy - u.busy, steal: t.steal - u.steal, total: t.total - u.total}
}

// rssKB is VmRSS of pid in kB.
func rssKB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// simStats is the part of jobrunner-sim's /_sim/stats the harness reads.
type simStats struct {
	Total        int64              `json:"total"`
	Bad          int64              `json:"bad"`
	AddedLatency testkit.SimLatency `json:"added_latency"`
}

var httpc = &http.Client{Timeout: 10 * time.Second}

// sim reads the runner's counters, without the latency percentiles: it is
// polled while the measured process runs, and the percentiles cost the
// runner tens of milliseconds of CPU per 400,000 samples.
func (h *harness) sim() simStats { return h.simStats(false) }

// simLatency reads the counters and the latency percentiles.
func (h *harness) simLatency() simStats { return h.simStats(true) }

func (h *harness) simStats(percentiles bool) simStats { return h.simStatsAt(h.simURL, percentiles) }

func (h *harness) simStatsAt(url string, percentiles bool) simStats {
	var s simStats
	resp, err := httpc.Get(url + "/_sim/stats?percentiles=" + strconv.FormatBool(percentiles))
	if err != nil {
		h.logf("sim stats: %v", err)
		return s
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&s)
	return s
}

func (h *harness) simReset() {
	resp, err := httpc.Post(h.simURL+"/_sim/reset", "", nil)
	if err == nil {
		resp.Body.Close()
	}
}

// schedWaits is changeprop's go_sched_latencies_seconds histogram: the
// cumulative count of goroutine runnable waits at or under each bound.
type schedWaits struct {
	bounds []float64 // seconds, ascending; +Inf left out
	counts []uint64  // cumulative, per bound
	total  uint64
}

// parseSchedWaits reads go_sched_latencies_seconds from a /metrics body;
// ok is false when the histogram is not there.
func parseSchedWaits(body string) (w schedWaits, ok bool) {
	const bucket = `go_sched_latencies_seconds_bucket{le="`
	for line := range strings.Lines(body) {
		rest, found := strings.CutPrefix(line, bucket)
		if !found {
			continue
		}
		le, count, found := strings.Cut(rest, `"} `)
		if !found {
			return schedWaits{}, false
		}
		n, err := strconv.ParseUint(strings.TrimSpace(count), 10, 64)
		if err != nil {
			return schedWaits{}, false
		}
		if le == "+Inf" {
			w.total, ok = n, true
			continue
		}
		b, err := strconv.ParseFloat(le, 64)
		if err != nil || len(w.bounds) > 0 && b <= w.bounds[len(w.bounds)-1] {
			return schedWaits{}, false
		}
		w.bounds, w.counts = append(w.bounds, b), append(w.counts, n)
	}
	return w, ok
}

// sub is w less an earlier scrape of the same process.
func (w schedWaits) sub(earlier schedWaits) schedWaits {
	if !slices.Equal(w.bounds, earlier.bounds) {
		return schedWaits{}
	}
	d := schedWaits{bounds: w.bounds, counts: make([]uint64, len(w.counts)), total: w.total - earlier.total}
	for i := range w.counts {
		d.counts[i] = w.counts[i] - earlier.counts[i]
	}
	return d
}

// over returns the largest bound at or under limit and the share of waits
// longer than it (ok false without such a bound or without waits).
func (w schedWaits) over(limit float64) (bound, share float64, ok bool) {
	i := sort.SearchFloat64s(w.bounds, limit)
	if i < len(w.bounds) && w.bounds[i] == limit {
		i++
	}
	if i == 0 || w.total == 0 {
		return 0, 0, false
	}
	return w.bounds[i-1], float64(w.total-w.counts[i-1]) / float64(w.total), true
}

// scrapeSchedWaits reads the histogram from a changeprop's /metrics.
func scrapeSchedWaits(metricsURL string) (schedWaits, bool) {
	resp, err := httpc.Get(metricsURL)
	if err != nil {
		return schedWaits{}, false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return schedWaits{}, false
	}
	return parseSchedWaits(string(b))
}
