package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"changeprop/internal/jobgen"
	"changeprop/internal/testkit"
)

// The test binary doubles as the changeprop binary: with CHANGEPROP_AS_MAIN
// set it runs main, so tests can start `changeprop run` as a process of its
// own and signal it.
func TestMain(m *testing.M) {
	if os.Getenv("CHANGEPROP_AS_MAIN") == "1" {
		main()
		return
	}
	code := m.Run()
	if leak := checkSuiteLeaks(); code == 0 {
		code = leak
	}
	os.Exit(code)
}

// process is a changeprop process started by a test. Its ctx ends when
// the process exits, so waits on it end early if it dies.
type process struct {
	cmd  *exec.Cmd
	ctx  context.Context
	done chan error
}

func startChangeprop(t *testing.T, ctx context.Context, stderr io.Writer, args ...string) *process {
	t.Helper()
	return startChangepropEnv(t, ctx, stderr, nil, args...)
}

// startChangepropEnv is startChangeprop with more environment variables
// (NAME=value). The process's log is captured for the leak check too
// (leakcheck_test.go).
func startChangepropEnv(t *testing.T, ctx context.Context, stderr io.Writer, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "CHANGEPROP_AS_MAIN=1"), env...)
	cmd.Stderr = captured(stderr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithCancel(ctx)
	p := &process{cmd: cmd, ctx: pctx, done: make(chan error, 1)}
	go func() {
		p.done <- cmd.Wait()
		cancel()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-pctx.Done()
	})
	return p
}

// stop sends SIGTERM and returns the exit error (nil for status 0).
func (p *process) stop() error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	return <-p.done
}

// syncBuffer is a bytes.Buffer safe for a process's output goroutine and
// the test reading it.
type syncBuffer = testkit.Buffer

const runConfig = `
service_name: cpjobqueue
kafka:
  brokers: %s
  consumer:
    auto.offset.reset: earliest
  commit_interval: 100ms
listen: 127.0.0.1:0
shutdown_timeout: 20s
rules:
  refreshLinks:
    topic: mediawiki.job.refreshLinks
    concurrency: 10
    exec:
      method: post
      uri: '%s/rpc/RunSingleJob.php'
      headers:
        content-type: application/json
        host: '{{globals.message.meta.domain}}'
      body: '{{globals.message}}'
`

// TestRunDeliversKcatEventsAndDrainsOnSIGTERM runs `changeprop run` as its
// own process against a cluster in this one, feeds it events with kcat,
// sends SIGTERM mid-stream and checks that it exits 0 and that every event
// below the committed offsets reached the job runner; a second run then
// delivers the rest.
func TestRunDeliversKcatEventsAndDrainsOnSIGTERM(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat is needed as the outside Kafka client: `make test` installs it (apt-get install kcat)")
	}
	const topic, n = "mediawiki.job.refreshLinks", 3000
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{topic: 3}})
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{
		KeepBodies: true,
		Latency:    func() time.Duration { return 2 * time.Millisecond },
	})

	dir := t.TempDir()
	var lines bytes.Buffer
	gen := jobgen.New(7)
	gen.Distinct = true // counted by delivery, not deduplicated
	for range n {
		lines.Write(gen.NextOfType("refreshLinks"))
		lines.WriteByte('\n')
	}
	eventsFile := filepath.Join(dir, "events.jsonl")
	if err := os.WriteFile(eventsFile, lines.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgFile, fmt.Appendf(nil, runConfig, cluster.Addr(), jr.URL()), 0o600); err != nil {
		t.Fatal(err)
	}

	var logs syncBuffer
	cp := startChangeprop(t, ctx, &logs, "run", "-config", cfgFile)
	out, err := exec.CommandContext(ctx, kcat, "-b", cluster.Addr(), "-t", topic, "-P", "-l", eventsFile).CombinedOutput()
	if err != nil {
		t.Fatalf("kcat: %v\n%s", err, out)
	}
	if err := jr.WaitFor(cp.ctx, n/4); err != nil {
		t.Fatalf("only %d jobs arrived: %v\n%s", jr.Succeeded(), err, logs.String())
	}
	if err := cp.stop(); err != nil {
		t.Fatalf("changeprop run after SIGTERM: %v\n%s", err, logs.String())
	}

	records, err := cluster.ReadAll(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(records) != n {
		t.Fatalf("topic holds %d records, want %d", len(records), n)
	}
	committed, err := cluster.Committed(ctx, "cpjobqueue-refreshLinks", topic)
	if err != nil {
		t.Fatal(err)
	}
	delivered := deliveredIDs(t, jr)
	var below int
	for _, r := range records {
		if r.Offset < committed[r.Partition] {
			below++
			if !delivered[eventID(t, r.Value)] {
				t.Fatalf("%s/%d@%d is below the committed offset %d but never reached the job runner",
					topic, r.Partition, r.Offset, committed[r.Partition])
			}
		}
	}
	if below == 0 {
		t.Fatalf("nothing was committed before SIGTERM; committed = %v", committed)
	}
	t.Logf("SIGTERM after %d deliveries; %d events below the committed offsets", len(delivered), below)

	// A second run resumes from the committed offsets and delivers the rest.
	cp2 := startChangeprop(t, ctx, &logs, "run", "-config", cfgFile)
	waitFor(t, cp2.ctx, "every event delivered after restart", func() bool {
		return len(deliveredIDs(t, jr)) == n
	})
	if err := cp2.stop(); err != nil {
		t.Fatalf("second run: %v\n%s", err, logs.String())
	}
	committed, err = cluster.Committed(ctx, "cpjobqueue-refreshLinks", topic)
	if err != nil {
		t.Fatal(err)
	}
	end, err := cluster.EndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	for p, e := range end {
		if committed[p] != e {
			t.Errorf("partition %d: committed %d, want the high watermark %d", p, committed[p], e)
		}
	}
}

// TestDevRunsJobsAndExits is `changeprop dev -jobs 2000`.
func TestDevRunsJobsAndExits(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"dev", "-jobs", "2000", "-rate", "0", "-listen", "127.0.0.1:0"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	if !regexp.MustCompile(`Kafka-protocol cluster at 127\.0\.0\.1:\d+`).MatchString(out) {
		t.Errorf("no broker address in:\n%s", out)
	}
	m := regexp.MustCompile(`summary: (\d+) jobs done in .*: (\d+) succeeded, (\d+) duplicates skipped, (\d+) ignored, (\d+) on the error topic; (\d+) retries; job runner answered (\d+) requests`).FindStringSubmatch(out)
	if m == nil || m[1] != "2000" {
		t.Fatalf("summary does not report 2000 jobs done:\n%s", out)
	}
	n := make([]int, len(m))
	for i, s := range m[1:] {
		n[i+1], _ = strconv.Atoi(s)
	}
	done, succeeded, deduped, ignored, failed, retries, answered := n[1], n[2], n[3], n[4], n[5], n[6], n[7]
	if succeeded+deduped+ignored+failed != done {
		t.Errorf("succeeded %d + duplicates %d + ignored %d + failed %d != done %d", succeeded, deduped, ignored, failed, done)
	}
	// Every job that succeeded or was ignored (an answer) and every retry
	// of one was a request; a duplicate skipped was not.
	if answered < succeeded+ignored || answered > done-deduped+retries {
		t.Errorf("job runner answered %d requests; want between %d and %d", answered, succeeded+ignored, done-deduped+retries)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, fmt.Appendf(nil, runConfig, "127.0.0.1:9092", "http://127.0.0.1:1"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(`
service_name: x
kafka: {brokers: 127.0.0.1:9092}
bogus: 1
rules:
  a:
    topic: t
    exec: {method: post}
  b:
    exec: {uri: 'http://x/'}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"validate", "-config", good}, nil, &out, &errOut); code != 0 {
		t.Fatalf("valid config: exit %d: %s", code, errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"validate", "-config", bad}, nil, &out, &errOut); code != 1 {
		t.Fatalf("invalid config: exit %d, want 1", code)
	}
	for _, want := range []string{"bogus", "rules.a.exec", "uri", "rules.b"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("validate output lacks %q:\n%s", want, errOut.String())
		}
	}
	// -config - reads standard input.
	out.Reset()
	cfg, _ := os.ReadFile(good)
	if code := run([]string{"validate", "-config", "-"}, bytes.NewReader(cfg), &out, &errOut); code != 0 {
		t.Fatalf("valid config on stdin: exit %d", code)
	}
}

func deliveredIDs(t *testing.T, jr *testkit.JobRunner) map[string]bool {
	ids := map[string]bool{}
	for _, r := range jr.Requests() {
		if r.Status == 200 {
			ids[eventID(t, r.Body)] = true
		}
	}
	return ids
}

func eventID(t *testing.T, v []byte) string {
	var ev struct {
		Meta struct {
			ID string `json:"id"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(v, &ev); err != nil {
		t.Fatalf("event %q: %v", v, err)
	}
	return ev.Meta.ID
}

func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s (%v)", what, context.Cause(ctx))
		}
	}
}
