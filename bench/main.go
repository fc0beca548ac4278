// Command bench is `make bench`: it measures changeprop end to end on this
// machine and writes the results into docs/benchmarks.md, between the
// markers <!-- bench:begin --> and <!-- bench:end -->.
//
// Every party is a process of its own, so that /proc figures of the
// changeprop process are changeprop's alone: the Kafka-protocol cluster
// (bench/cluster, kfake), the job runner (changeprop jobrunner-sim), the
// load generator (changeprop loadgen), the measured `changeprop run`, and
// the baseline (bench/bare, a consume -> POST loop with no rules).
//
//	go build -o bin/ ./cmd/changeprop ./bench/... && bin/bench -bin bin -out docs/benchmarks.md
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type harness struct {
	bin, work, root string
	phases          map[string]bool // end-to-end phases to run (-phases)
	events          int64
	reps            int
	sideReps        int
	backlog         int64
	backlogWatch    time.Duration
	latencyFor      time.Duration
	latencyRates    []int  // -latency-rate: fixed rates instead of half the measured capacity
	runnerLatency   string // -runner-latency: the job runner's latency distribution
	runnerServer    string // -runner-server: the job runner's HTTP server
	loadgenClient   string // -loadgen-client: the generator's Kafka client in the latency runs
	segmentBytes    int    // -cluster-segment-bytes: the cluster's log.segment.bytes; 0: its default
	perf            bool
	measuredEnv     []string // -env: added to the environment of changeprop run and the bare loop
	rulesFile       string   // -rules-config: the config the runs are made of; "" is jobqueueYAML

	procs   []*proc
	cluster *proc
	addr    string
	simProc *proc
	sim2URL string // a second job runner, for the bare loop beside changeprop
	simURL  string
	started time.Time
	log     *os.File
	res     results
}

func main() {
	h := &harness{started: time.Now()}
	out := flag.String("out", "docs/benchmarks.md", "markdown file to write the results into")
	flag.StringVar(&h.bin, "bin", "bin", "directory with changeprop, cluster and bare")
	flag.StringVar(&h.work, "work", "", "directory for logs and profiles (default: a new temporary directory)")
	flag.Int64Var(&h.events, "events", 100_000, "backlog of each throughput run")
	flag.IntVar(&h.reps, "reps", 2, "runs of each throughput measurement")
	flag.IntVar(&h.sideReps, "side-reps", 5, "runs of each side-by-side measurement (changeprop and the bare loop at the same time)")
	flag.Int64Var(&h.backlog, "backlog", 1_000_000, "events of the backlog run")
	flag.DurationVar(&h.backlogWatch, "backlog-watch", 60*time.Second, "how long to watch the backlog drain")
	flag.DurationVar(&h.latencyFor, "latency-duration", 20*time.Second, "length of each latency run")
	flag.Func("latency-rate", "rate of the latency runs, repeatable (default: a half and a quarter of the measured one-rule capacity)", func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return fmt.Errorf("-latency-rate %q is not a positive number", v)
		}
		h.latencyRates = append(h.latencyRates, n)
		return nil
	})
	flag.StringVar(&h.loadgenClient, "loadgen-client", "franz-go", "Kafka client of the load generator in the latency runs (loadgen -client)")
	flag.IntVar(&h.segmentBytes, "cluster-segment-bytes", 0, "log.segment.bytes of the cluster (cluster -segment-bytes); 0: its default, 2 MiB. For comparing: 104857600 is kfake's own")
	flag.StringVar(&h.runnerLatency, "runner-latency", "0", "the job runner's latency (jobrunner-sim -latency), e.g. fixed:20ms; not 0 only for comparing")
	flag.StringVar(&h.runnerServer, "runner-server", "minimal", "the job runner's HTTP server (jobrunner-sim -server): minimal, or net/http for comparing")
	flag.Func("env", "KEY=VALUE added to the environment of the measured processes (changeprop run, bare), repeatable; for comparing, e.g. GOMAXPROCS=1", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("-env %q: want KEY=VALUE", v)
		}
		h.measuredEnv = append(h.measuredEnv, v)
		return nil
	})
	flag.StringVar(&h.rulesFile, "rules-config", "", "config the runs are made of instead of "+jobqueueYAML+", for comparing (e.g. a variant without its partitioner rules); it must keep that file's shape: service_name cpjobqueue, brokers, jobrunner.svc:9005, listen, kafka.consumer and commit_interval")
	flag.BoolVar(&h.perf, "perf", true, "profile with perf record (when perf is installed)")
	gotest := flag.Bool("gotest", true, "run the go test -bench hot-path benchmarks")
	phases := flag.String("phases", "throughput,latency,rules30,backlog", "end-to-end phases to run, comma-separated (a report of fewer is for comparing, not for docs/)")
	flag.Parse()

	var err error
	if h.root, err = os.Getwd(); err != nil {
		fatal(err)
	}
	if h.bin, err = filepath.Abs(h.bin); err != nil {
		fatal(err)
	}
	if h.work == "" {
		if h.work, err = os.MkdirTemp("", "changeprop-bench-"); err != nil {
			fatal(err)
		}
	}
	if h.log, err = os.Create(filepath.Join(h.work, "bench.log")); err != nil {
		fatal(err)
	}
	if _, err := exec.LookPath("perf"); err != nil && h.perf {
		h.logf("perf not installed: no profiles")
		h.perf = false
	}
	// A Ctrl-C stops the children before exiting.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		h.stopAll()
		os.Exit(1)
	}()

	h.res.machine = machine()
	h.logf("work directory %s", h.work)
	h.phases = map[string]bool{}
	for p := range strings.SplitSeq(*phases, ",") {
		h.phases[strings.TrimSpace(p)] = true
	}
	if err := h.runAll(*gotest); err != nil {
		h.stopAll()
		fatal(err)
	}
	h.stopAll()
	h.res.elapsed = time.Since(h.started)
	if err := writeReport(*out, h.report()); err != nil {
		fatal(err)
	}
	h.logf("wrote %s in %v", *out, h.res.elapsed.Round(time.Second))
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func (h *harness) logf(format string, a ...any) {
	line := fmt.Sprintf("%6.1fs  %s\n", time.Since(h.started).Seconds(), fmt.Sprintf(format, a...))
	fmt.Print(line)
	if h.log != nil {
		_, _ = h.log.WriteString(line)
	}
}

func (h *harness) stopAll() {
	for i := len(h.procs) - 1; i >= 0; i-- {
		h.procs[i].stop()
	}
}

func (h *harness) exe(name string) string { return filepath.Join(h.bin, name) }

// runAll runs the phases in order; each phase records into h.res.
func (h *harness) runAll(gotest bool) error {
	sim, line, err := h.start("jobrunner-sim", true, h.exe("changeprop"), "jobrunner-sim",
		"-listen", "127.0.0.1:0", "-latency", h.runnerLatency, "-parse", "lean", "-server", h.runnerServer, "-report", "10s")
	if err != nil {
		return err
	}
	h.simProc = sim
	h.simURL = strings.Fields(strings.TrimPrefix(line, "jobrunner-sim: listening on "))[0]
	if h.phases["throughput"] || h.phases["rules30"] {
		// The bare loop's own runner for the side-by-side drains.
		_, line, err := h.start("jobrunner-sim-2", true, h.exe("changeprop"), "jobrunner-sim",
			"-listen", "127.0.0.1:0", "-latency", h.runnerLatency, "-parse", "lean", "-server", h.runnerServer, "-report", "10s")
		if err != nil {
			return err
		}
		h.sim2URL = strings.Fields(strings.TrimPrefix(line, "jobrunner-sim: listening on "))[0]
	}

	for _, ph := range []struct {
		name string
		run  func() error
	}{{"throughput", h.throughput}, {"latency", h.latency}, {"rules30", h.rules30}, {"backlog", h.backlogRun}} {
		if !h.phases[ph.name] {
			continue
		}
		if err := ph.run(); err != nil {
			return err
		}
	}
	if gotest {
		h.goBench()
	}
	return nil
}

// startCluster (re)starts the kfake process with topics created.
func (h *harness) startCluster(name string, topics []string) error {
	if h.cluster != nil {
		h.cluster.stop()
	}
	p, addr, err := h.start(name, true, h.exe("cluster"), "-brokers", "1", "-partitions", "4",
		"-topics", strings.Join(topics, ","), "-segment-bytes", strconv.Itoa(h.segmentBytes))
	if err != nil {
		return err
	}
	h.cluster, h.addr = p, addr
	return nil
}

// loadgen runs `changeprop loadgen` to the end and returns its summary line.
func (h *harness) loadgen(name string, timeout time.Duration, args ...string) (string, error) {
	p, _, err := h.start(name, false, h.exe("changeprop"), append([]string{"loadgen", "-brokers", h.addr, "-report", "5s"}, args...)...)
	if err != nil {
		return "", err
	}
	if err := p.wait(timeout); err != nil {
		return "", fmt.Errorf("%s: %w (see %s.log)", name, err, name)
	}
	b, _ := os.ReadFile(filepath.Join(h.work, name+".log"))
	m := regexp.MustCompile(`(?m)^loadgen: produced .*$`).Find(b)
	h.logf("%s", m)
	return string(m), nil
}

// changeprop starts `changeprop run` with config; with profile, under perf
// record, whose data goes to <work>/<name>.perf.data.
func (h *harness) changeprop(name, config string, profile bool) (*proc, error) {
	path := filepath.Join(h.work, name+".yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		return nil, err
	}
	args := []string{"run", "-create-topics", "-config", path, "-log-level", "warn"}
	if !profile {
		p, _, err := h.start(name, false, h.exe("changeprop"), args...)
		return p, err
	}
	perfArgs := append([]string{"record", "-e", "cpu-clock", "-F", "499", "-g", "-o",
		filepath.Join(h.work, name+".perf.data"), "--", h.exe("changeprop")}, args...)
	pp, _, err := h.start(name+".perf", false, "perf", perfArgs...)
	if err != nil {
		return nil, err
	}
	// Measure and signal the changeprop process, perf's child.
	var child int
	waitFor(10*time.Second, func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pp.pid(), pp.pid()))
		_, err := fmt.Sscan(string(b), &child)
		return err == nil && child > 0
	})
	if child == 0 {
		pp.stop()
		return nil, fmt.Errorf("perf started no changeprop")
	}
	cp, err := os.FindProcess(child)
	if err != nil {
		return nil, err
	}
	// A proc whose done follows perf's: perf exits after its child.
	return &proc{name: name, cmd: &exec.Cmd{Process: cp}, done: pp.done}, nil
}
