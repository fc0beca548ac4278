package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"changeprop/rules"
)

func TestParseCPULine(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	got := parseCPULine("cpu  792 3 865 24112 56 7 11 138 40 2")
	want := cpuTicks{busy: 792 + 3 + 865 + 7 + 11, steal: 138, total: 792 + 3 + 865 + 24112 + 56 + 7 + 11 + 138}
	if got != want {
		t.Fatalf("parseCPULine = %+v, want %+v (guest time is in user already; steal is not busy)", got, want)
	}
	d := parseCPULine("cpu  800 3 870 24200 56 7 12 150 40 2").sub(got)
	if d != (cpuTicks{busy: 14, steal: 12, total: 114}) {
		t.Fatalf("sub = %+v", d)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5", "cpu 1 2 3"} {
		if got := parseCPULine(bad); got != (cpuTicks{}) {
			t.Errorf("parseCPULine(%q) = %+v, want zero", bad, got)
		}
	}
}

func TestSchedWaits(t *testing.T) {
	body := func(counts ...int) string {
		les := []string{"6.399999999999999e-08", "6.399999999999999e-07", "7.167999999999999e-06",
			"8.191999999999999e-05", "0.0009175039999999999", "0.010485759999999998", "0.11744051199999998", "+Inf"}
		s := "# TYPE go_sched_latencies_seconds histogram\n"
		for i, le := range les {
			s += fmt.Sprintf("go_sched_latencies_seconds_bucket{le=%q} %d\n", le, counts[i])
		}
		return s + "go_sched_latencies_seconds_sum 1.06\ngo_sched_latencies_seconds_count " + fmt.Sprint(counts[len(counts)-1]) + "\n"
	}
	before, ok := parseSchedWaits("go_goroutines 12\n" + body(816, 6816, 8803, 9860, 11053, 11329, 11396, 11396))
	if !ok || len(before.bounds) != 7 || before.total != 11396 {
		t.Fatalf("parseSchedWaits = %+v, %v", before, ok)
	}
	after, _ := parseSchedWaits(body(1816, 8816, 12803, 15860, 19053, 20329, 20396, 20396))
	d := after.sub(before)
	if d.total != 9000 || d.counts[4] != 8000 {
		t.Fatalf("sub = %+v", d)
	}
	// Over ~1 ms: the waits above the 0.92 ms bound, 9000-8000 of 9000.
	if b, share, ok := d.over(1e-3); !ok || b != 0.0009175039999999999 || share != 1000.0/9000 {
		t.Errorf("over(1ms) = %v, %v, %v", b, share, ok)
	}
	// Over ~10 ms: 9000-9000 of 9000; a bound equal to the limit counts.
	if b, share, ok := d.over(0.010485759999999998); !ok || b != 0.010485759999999998 || share != 0 {
		t.Errorf("over(10.5ms) = %v, %v, %v", b, share, ok)
	}
	if _, _, ok := d.over(1e-9); ok {
		t.Error("over a limit under every bound: want not ok")
	}
	if got := schedCell(d); got != "11.11% / 0.000% of 9000" {
		t.Errorf("schedCell = %q", got)
	}
	if got := schedCell(after.sub(schedWaits{})); got != "—" {
		t.Errorf("schedCell of a failed first scrape = %q, want a dash", got)
	}
	for _, bad := range []string{"", "go_goroutines 1\n", `go_sched_latencies_seconds_bucket{le="x"} 1` + "\n" + `go_sched_latencies_seconds_bucket{le="+Inf"} 1`} {
		if _, ok := parseSchedWaits(bad); ok {
			t.Errorf("parseSchedWaits(%q): want not ok", bad)
		}
	}
}

// TestBenchConfigs: the configs bench makes of jobqueue.yaml load, and the
// client_logs variant differs from the default in that setting only.
func TestBenchConfigs(t *testing.T) {
	h := &harness{root: "..", addr: "127.0.0.1:1", simURL: "http://127.0.0.1:2"}
	cfg, err := h.config("cpbench30-0", false, "")
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := clientLogsStderr(cfg)
	if err != nil {
		t.Fatal(err)
	}
	def, err := rules.Load([]byte(cfg), nil)
	if err != nil {
		t.Fatalf("30-rule config: %v", err)
	}
	alt, err := rules.Load([]byte(stderr), nil)
	if err != nil {
		t.Fatalf("client_logs variant: %v", err)
	}
	if def.Kafka.ClientLogs != rules.ClientLogsForward || alt.Kafka.ClientLogs != rules.ClientLogsStderr {
		t.Errorf("client_logs %q and %q, want %q and %q", def.Kafka.ClientLogs, alt.Kafka.ClientLogs, rules.ClientLogsForward, rules.ClientLogsStderr)
	}
	if len(def.Rules) != 30 || len(alt.Rules) != 30 || def.Kafka.Brokers != "127.0.0.1:1" || alt.Kafka.CommitInterval != def.Kafka.CommitInterval {
		t.Errorf("rules %d and %d, brokers %q, commit intervals %v and %v", len(def.Rules), len(alt.Rules), def.Kafka.Brokers, def.Kafka.CommitInterval, alt.Kafka.CommitInterval)
	}
	if _, err := clientLogsStderr("kafka: {brokers: b}\n"); err == nil {
		t.Error("a config without kafka.commit_interval: no error")
	}
}

// TestRulesConfig: -rules-config replaces jobqueue.yaml in the configs and
// in the topics of the 30-rule clusters; here a variant whose two job types
// are read where they are produced, without partitioner rules.
func TestRulesConfig(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", jobqueueYAML))
	if err != nil {
		t.Fatal(err)
	}
	s := regexp.MustCompile(`(?m)^  \w+Partitioner:\n(    .*\n)+`).ReplaceAllString(string(b), "")
	s = strings.ReplaceAll(s, "topic: cpjobqueue.partitioned.", "topic: ")
	variant := filepath.Join(t.TempDir(), "nopartitioners.yaml")
	if err := os.WriteFile(variant, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file        string
		rules       int
		partitioned bool
	}{
		{"", 30, true},
		{variant, 28, false},
	} {
		h := &harness{root: "..", addr: "127.0.0.1:1", simURL: "http://127.0.0.1:2", rulesFile: tc.file}
		cfg, err := h.config("cpbench30-0", false, "")
		if err != nil {
			t.Fatalf("%q: %v", tc.file, err)
		}
		c, err := rules.Load([]byte(cfg), nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.file, err)
		}
		topics, err := h.configTopics()
		if err != nil {
			t.Fatal(err)
		}
		hasPartitioned := slices.Contains(topics, "cpjobqueue.partitioned.mediawiki.job.refreshLinks:8")
		if len(c.Rules) != tc.rules || hasPartitioned != tc.partitioned || !slices.Contains(topics, "mediawiki.job.refreshLinks") {
			t.Errorf("%q: %d rules, topics %v", tc.file, len(c.Rules), topics)
		}
	}
	h := &harness{root: "..", rulesFile: filepath.Join(t.TempDir(), "missing.yaml")}
	if _, err := h.config("x", false, ""); err == nil {
		t.Error("a missing -rules-config: no error")
	}
}

// TestPairRatios: each changeprop run is divided by the bare run beside it,
// not by the bare runs' median.
func TestPairRatios(t *testing.T) {
	d := func(jobs int64, cpu time.Duration) drain { return drain{jobs: jobs, cpu: cpu} }
	cp := []drain{d(1000, 100*time.Millisecond), d(3000, 100*time.Millisecond), d(500, time.Second)}
	bare := []drain{d(2000, 100*time.Millisecond), d(4000, 100*time.Millisecond)}
	got := pairRatios(cp, bare)
	if len(got) != 2 || got[0] != 0.5 || got[1] != 0.75 {
		t.Fatalf("pairRatios = %v, want [0.5 0.75] (a run without a bare neighbour left out)", got)
	}
	if m, lo, hi := medianOf([]float64{0.9, 0.7, 0.8}); m != 0.8 || lo != 0.7 || hi != 0.9 {
		t.Errorf("medianOf = %v %v %v", m, lo, hi)
	}
}

// TestSideWindow: the side-by-side window starts when both have answered
// 5% and ends when the first reaches 95%.
func TestSideWindow(t *testing.T) {
	t0 := time.Unix(0, 0)
	mk := func(jobs ...int64) []sample {
		s := make([]sample, len(jobs))
		for i, j := range jobs {
			s[i] = sample{at: t0.Add(time.Duration(i) * time.Second), jobs: j, cpu: time.Duration(j) * time.Millisecond}
		}
		return s
	}
	//            0  1   2   3   4    5    6
	a := mk(0, 10, 20, 40, 60, 96, 100)
	b := mk(0, 2, 10, 30, 50, 70, 90)
	da, db, ok := sideWindow(a, b, 100)
	if !ok {
		t.Fatal("no window")
	}
	// both at 5% from sample 2 (b reaches 10 there), a at 95% at sample 5
	if da.jobs != 76 || db.jobs != 60 || da.wall != 3*time.Second || db.cpu != 60*time.Millisecond || da.total != 100 || db.total != 90 {
		t.Errorf("window: a %+v, b %+v", da, db)
	}
	if _, _, ok := sideWindow(mk(0, 100), mk(0, 1), 100); ok {
		t.Error("a window where one side never reached 5% before the other finished")
	}
}
