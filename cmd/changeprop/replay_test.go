package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"changeprop/dispatch"
	"changeprop/dispatch/kafka"
	"changeprop/internal/testkit"
)

const replayConfig = `
service_name: cpjobqueue
dc: eqiad
kafka:
  brokers: %s
rules:
  refreshLinks:
    topic: mediawiki.job.refreshLinks
    exec: {method: post, uri: 'http://127.0.0.1:1/rpc/RunSingleJob.php'}
  htmlCacheUpdate:
    topic: mediawiki.job.htmlCacheUpdate
    exec: {method: post, uri: 'http://127.0.0.1:1/rpc/RunSingleJob.php'}
`

// Topics of replayConfig.
const (
	errorTopic    = "eqiad.cpjobqueue.error"
	recordTopic   = "eqiad.cpjobqueue.error.replayed"
	refreshLinks  = "eqiad.mediawiki.job.refreshLinks"
	htmlCache     = "eqiad.mediawiki.job.htmlCacheUpdate"
	cirrusSearch  = "eqiad.mediawiki.job.cirrusSearch"
	cirrusRetries = "eqiad.cpjobqueue.retry.mediawiki.job.cirrusSearch"
)

// testErrorEvent is an error event as dispatch writes it (service.md).
type testErrorEvent struct {
	id     string
	rule   string
	status int // 0: no HTTP response
	dt     time.Time
	topic  string // where the original was read
	raw    string // the original event
}

func (e testErrorEvent) value(t *testing.T) []byte {
	t.Helper()
	details := map[string]any{}
	if e.status != 0 {
		details = map[string]any{
			"status":  e.status,
			"headers": map[string]string{"content-type": "text/plain"},
			"body":    "upstream said no",
		}
	}
	b, err := json.Marshal(map[string]any{
		"$schema": "/error/0.0.3",
		"meta": map[string]string{
			"uri":        "https://en.wikipedia.org/wiki/X",
			"request_id": "req-" + e.id,
			"id":         e.id,
			"dt":         e.dt.Format(time.RFC3339Nano),
			"domain":     "en.wikipedia.org",
			"stream":     "cpjobqueue.error",
		},
		"emitter_id": "cpjobqueue#" + e.rule,
		"raw_event":  e.raw,
		"message":    fmt.Sprintf("job failed with status %d", e.status),
		"stack":      "",
		"details":    details,
		"rule":       e.rule,
		"attempts":   3,
		"topic":      e.topic,
		"partition":  1,
		"offset":     42,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// replayCluster starts a cluster with the error topic and the target
// topics, writes a config for it and returns the config's path.
func replayCluster(t *testing.T, ctx context.Context) (*testkit.Cluster, string) {
	t.Helper()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{
		errorTopic: 3, refreshLinks: 3, htmlCache: 2, cirrusSearch: 2, cirrusRetries: 1,
	}})
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, replayConfig, cluster.Addr()), 0o600); err != nil {
		t.Fatal(err)
	}
	return cluster, cfg
}

func produceValues(t *testing.T, ctx context.Context, c *testkit.Cluster, topic string, values ...[]byte) {
	t.Helper()
	recs := make([]testkit.Record, len(values))
	for i, v := range values {
		recs[i] = testkit.Record{Topic: topic, Partition: int32(i % 3), Value: v}
	}
	if err := c.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
}

type replayResult struct {
	code           int
	stdout, stderr string
	// From the summary line.
	read, invalid, matched, skipped, replayed int
}

var summaryLine = regexp.MustCompile(`(?m)^summary: read (\d+), invalid (\d+), matched (\d+), skipped (\d+) \(already replayed\), (?:replayed|would replay) (\d+)$`)

func runReplay(t *testing.T, args ...string) replayResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	r := replayResult{code: run(append([]string{"replay"}, args...), nil, &stdout, &stderr)}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	if m := summaryLine.FindStringSubmatch(r.stdout); m != nil {
		n := make([]int, 5)
		for i := range n {
			n[i], _ = strconv.Atoi(m[i+1])
		}
		r.read, r.invalid, r.matched, r.skipped, r.replayed = n[0], n[1], n[2], n[3], n[4]
	}
	return r
}

func (r replayResult) wantCounts(t *testing.T, read, invalid, matched, skipped, replayed int) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	got := [5]int{r.read, r.invalid, r.matched, r.skipped, r.replayed}
	if want := [5]int{read, invalid, matched, skipped, replayed}; got != want {
		t.Fatalf("read, invalid, matched, skipped, replayed = %v, want %v\nstdout:\n%s\nstderr:\n%s", got, want, r.stdout, r.stderr)
	}
}

// values returns the values in topic, sorted.
func values(t *testing.T, ctx context.Context, c *testkit.Cluster, topic string) []string {
	t.Helper()
	recs, err := c.ReadAll(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Value))
	}
	slices.Sort(out)
	return out
}

// readRecords reads the replayed topic with a client of its own (the
// testkit's admin client may remember that the topic did not exist).
func readRecords(ctx context.Context, c *testkit.Cluster, fn func(dispatch.Message)) error {
	cfg := kafka.ReaderConfig{Brokers: c.Addr(), Topic: recordTopic, Log: zerolog.Nop()}
	return kafka.ReadTopic(ctx, cfg, func(m dispatch.Message) error {
		fn(m)
		return nil
	})
}

func sortedRaw(evs ...testErrorEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.raw)
	}
	slices.Sort(out)
	return out
}

// TestReplayFiltersAndIsIdempotent writes error events for two rules with
// several statuses and times (one read from a retry topic) and two
// records that are not error events. A dry run lists the matches and
// writes nothing; a filtered run replays exactly the matching originals,
// byte for byte, into their topics; running it again replays nothing;
// a run without filters replays the rest, and one more replays nothing.
func TestReplayFiltersAndIsIdempotent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster, cfg := replayCluster(t, ctx)

	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	ev := func(id, rule string, status int, dt time.Duration, topic, raw string) testErrorEvent {
		return testErrorEvent{id: id, rule: rule, status: status, dt: t0.Add(dt), topic: topic, raw: raw}
	}
	var (
		// Spacing and number forms that a JSON round trip would change.
		a = ev("a", "refreshLinks", 503, time.Hour, refreshLinks, `{"meta": {"id":"orig-a", "dt":"2026-03-01T01:00:00Z"},  "database":"enwiki", "n": 1.50}`)
		b = ev("b", "refreshLinks", 500, 2*time.Hour, cirrusRetries, `{"meta":{"id":"orig-b"},"database":"dewiki","type":"cirrusSearchLinksUpdate"}`)
		c = ev("c", "refreshLinks", 502, 3*time.Hour, refreshLinks, "not JSON at all \u00e9")
		d = ev("d", "refreshLinks", 404, 2*time.Hour, refreshLinks, `{"meta":{"id":"orig-d"}}`)
		e = ev("e", "htmlCacheUpdate", 503, 2*time.Hour, htmlCache, `{"meta":{"id":"orig-e"}}`)
		f = ev("f", "refreshLinks", 503, -time.Hour, refreshLinks, `{"meta":{"id":"orig-f"}}`)
		g = ev("g", "refreshLinks", 503, 4*time.Hour, refreshLinks, `{"meta":{"id":"orig-g"}}`)
		h = ev("h", "refreshLinks", 0, 2*time.Hour, refreshLinks, `{"meta":{"id":"orig-h"}}`)
	)
	produceValues(t, ctx, cluster, errorTopic,
		a.value(t), b.value(t), c.value(t), d.value(t), e.value(t), f.value(t), g.value(t), h.value(t),
		[]byte(`{not json`),
		[]byte(`{"$schema":"/error/0.0.3","meta":{"id":"no-topic","dt":"2026-03-01T02:00:00Z"}}`),
	)
	filtered := []string{"-config", cfg, "-rule", "refreshLinks", "-status", "5xx",
		"-since", t0.Format(time.RFC3339), "-until", t0.Add(4 * time.Hour).Format(time.RFC3339), "-rate", "0"}

	// Dry run: lists a, b, c with their targets; produces and records nothing.
	r := runReplay(t, append(filtered, "-dry-run")...)
	r.wantCounts(t, 10, 2, 3, 0, 3)
	for _, want := range []string{
		"would replay a rule=refreshLinks status=503 dt=2026-03-01T01:00:00Z topic=" + refreshLinks,
		"would replay b rule=refreshLinks status=500 dt=2026-03-01T02:00:00Z topic=" + cirrusSearch,
		"would replay c rule=refreshLinks status=502 dt=2026-03-01T03:00:00Z topic=" + refreshLinks,
	} {
		if !strings.Contains(r.stdout, want+" message=") {
			t.Errorf("dry run output lacks %q:\n%s", want, r.stdout)
		}
	}
	if n := len(regexp.MustCompile(`(?m)^would replay `).FindAllString(r.stdout, -1)); n != 3 {
		t.Errorf("dry run lists %d events, want 3:\n%s", n, r.stdout)
	}
	for _, topic := range []string{refreshLinks, cirrusSearch, htmlCache, cirrusRetries} {
		if vs := values(t, ctx, cluster, topic); len(vs) != 0 {
			t.Fatalf("dry run wrote %d records to %s", len(vs), topic)
		}
	}
	if err := readRecords(ctx, cluster, func(dispatch.Message) {}); !errors.Is(err, kafka.ErrTopicNotFound) {
		t.Fatalf("after a dry run, reading %s: %v, want ErrTopicNotFound", recordTopic, err)
	}

	// Filtered: a, b (from the retry topic into its stream's topic) and c.
	r = runReplay(t, filtered...)
	r.wantCounts(t, 10, 2, 3, 0, 3)
	if !strings.Contains(r.stderr, "not an error event") {
		t.Errorf("invalid records not reported:\n%s", r.stderr)
	}
	wantTopics := func(refresh, cirrus, html []string) {
		t.Helper()
		for topic, want := range map[string][]string{
			refreshLinks: refresh, cirrusSearch: cirrus, htmlCache: html, cirrusRetries: nil,
		} {
			if got := values(t, ctx, cluster, topic); !slices.Equal(got, want) {
				t.Fatalf("%s holds\n%q\nwant\n%q", topic, got, want)
			}
		}
	}
	wantTopics(sortedRaw(a, c), sortedRaw(b), nil)

	// Again: everything matched was replayed before.
	r = runReplay(t, filtered...)
	r.wantCounts(t, 10, 2, 3, 3, 0)
	wantTopics(sortedRaw(a, c), sortedRaw(b), nil)

	// Without filters: the rest, and a, b, c not twice.
	r = runReplay(t, "-config", cfg, "-rate", "0")
	r.wantCounts(t, 10, 2, 8, 3, 5)
	wantTopics(sortedRaw(a, c, d, f, g, h), sortedRaw(b), sortedRaw(e))
	r = runReplay(t, "-config", cfg, "-rate", "0")
	r.wantCounts(t, 10, 2, 8, 8, 0)
	wantTopics(sortedRaw(a, c, d, f, g, h), sortedRaw(b), sortedRaw(e))

	// Every replayed error event is recorded once, keyed by its meta.id,
	// with the topic it went to.
	target := map[string]string{}
	err := readRecords(ctx, cluster, func(rec dispatch.Message) {
		var v struct {
			ReplayedAt time.Time `json:"replayed_at"`
			Topic      string    `json:"topic"`
		}
		if err := json.Unmarshal(rec.Value, &v); err != nil || v.ReplayedAt.IsZero() {
			t.Fatalf("record %q: %v", rec.Value, err)
		}
		if _, dup := target[string(rec.Key)]; dup {
			t.Fatalf("%s recorded twice", rec.Key)
		}
		target[string(rec.Key)] = v.Topic
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"a": refreshLinks, "b": cirrusSearch, "c": refreshLinks, "d": refreshLinks,
		"e": htmlCache, "f": refreshLinks, "g": refreshLinks, "h": refreshLinks,
	}
	if fmt.Sprint(target) != fmt.Sprint(want) {
		t.Fatalf("recorded %v, want %v", target, want)
	}
}

// TestReplayRate: 30 events at -rate 20 cannot take less than 1.4s (the
// limiter's burst is 2), whatever the machine.
func TestReplayRate(t *testing.T) {
	const n, perSecond = 30, 20
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cluster, cfg := replayCluster(t, ctx)
	var vs [][]byte
	var evs []testErrorEvent
	for i := range n {
		e := testErrorEvent{
			id: fmt.Sprintf("r%02d", i), rule: "refreshLinks", status: 503,
			dt: time.Now().UTC(), topic: refreshLinks, raw: fmt.Sprintf(`{"n":%d}`, i),
		}
		evs = append(evs, e)
		vs = append(vs, e.value(t))
	}
	produceValues(t, ctx, cluster, errorTopic, vs...)

	start := time.Now()
	r := runReplay(t, "-config", cfg, "-rate", strconv.Itoa(perSecond))
	elapsed := time.Since(start)
	r.wantCounts(t, n, 0, n, 0, n)
	if min := time.Duration(n-perSecond/10) * time.Second / perSecond; elapsed < min {
		t.Fatalf("%d events at -rate %d took %v, less than %v", n, perSecond, elapsed, min)
	}
	if got, want := values(t, ctx, cluster, refreshLinks), sortedRaw(evs...); !slices.Equal(got, want) {
		t.Fatalf("%s holds %q, want %q", refreshLinks, got, want)
	}
}

func TestReplayMissingErrorTopic(t *testing.T) {
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{})
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, replayConfig, cluster.Addr()), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runReplay(t, "-config", cfg)
	if r.code != 1 || !strings.Contains(r.stderr, errorTopic+": topic does not exist") {
		t.Fatalf("exit %d, want 1 naming %s\nstderr:\n%s", r.code, errorTopic, r.stderr)
	}
}

func TestReplayFlagErrors(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, replayConfig, "127.0.0.1:1"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-status", "5x"}, `bad -status "5x"`},
		{[]string{"-status", "500,abc"}, `bad -status "abc"`},
		{[]string{"-status", "5000"}, `bad -status "5000"`},
		{[]string{"-since", "yesterday"}, `bad -since "yesterday"`},
		{[]string{"-until", "2026-03-01"}, `bad -until "2026-03-01"`},
		{[]string{"-since", "2026-03-02T00:00:00Z", "-until", "2026-03-01T00:00:00Z"}, "is not before -until"},
		{[]string{"-rate", "-1"}, "bad -rate"},
		{[]string{"-rate", "fast"}, "invalid value"},
		{[]string{"-log-level", "loud"}, "bad -log-level"},
		{[]string{"-bogus"}, "flag provided but not defined"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := runReplay(t, append([]string{"-config", cfg}, tc.args...)...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, want 2 with %q\nstderr:\n%s", r.code, tc.want, r.stderr)
			}
		})
	}
	if r := runReplay(t, "-rule", "x"); r.code != 2 || !strings.Contains(r.stderr, "-config is required") {
		t.Fatalf("without -config: exit %d\n%s", r.code, r.stderr)
	}
}

func TestReplayFilter(t *testing.T) {
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	ev := func(rule string, status int, dt string) *errorEvent {
		e := &errorEvent{Rule: rule, dt: at(dt)}
		e.Details.Status = status
		return e
	}
	for _, tc := range []struct {
		rule, status, since, until string
		ev                         *errorEvent
		want                       bool
	}{
		{ev: ev("a", 0, "2026-01-01T00:00:00Z"), want: true},
		{rule: "a", ev: ev("a", 500, "2026-01-01T00:00:00Z"), want: true},
		{rule: "b", ev: ev("a", 500, "2026-01-01T00:00:00Z"), want: false},
		{status: "503", ev: ev("a", 503, "2026-01-01T00:00:00Z"), want: true},
		{status: "503", ev: ev("a", 502, "2026-01-01T00:00:00Z"), want: false},
		{status: "5xx", ev: ev("a", 599, "2026-01-01T00:00:00Z"), want: true},
		{status: "5XX", ev: ev("a", 500, "2026-01-01T00:00:00Z"), want: true},
		{status: "5xx", ev: ev("a", 429, "2026-01-01T00:00:00Z"), want: false},
		{status: "50x", ev: ev("a", 504, "2026-01-01T00:00:00Z"), want: true},
		{status: "50x", ev: ev("a", 510, "2026-01-01T00:00:00Z"), want: false},
		{status: "xxx", ev: ev("a", 0, "2026-01-01T00:00:00Z"), want: false},
		{status: "429,5xx", ev: ev("a", 429, "2026-01-01T00:00:00Z"), want: true},
		{since: "2026-01-01T00:00:00Z", ev: ev("a", 500, "2026-01-01T00:00:00Z"), want: true},
		{since: "2026-01-01T00:00:01Z", ev: ev("a", 500, "2026-01-01T00:00:00Z"), want: false},
		{until: "2026-01-01T00:00:00Z", ev: ev("a", 500, "2026-01-01T00:00:00Z"), want: false},
		{until: "2026-01-01T01:00:00+01:00", ev: ev("a", 500, "2025-12-31T23:59:59Z"), want: true},
	} {
		f, err := newReplayFilter(tc.rule, tc.status, tc.since, tc.until)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.match(tc.ev); got != tc.want {
			t.Errorf("rule=%q status=%q since=%q until=%q: match(%+v) = %v, want %v",
				tc.rule, tc.status, tc.since, tc.until, *tc.ev, got, tc.want)
		}
	}
}

func TestReplayTarget(t *testing.T) {
	for _, tc := range []struct{ dc, topic, want string }{
		// consume_dc codfw, produce_dc eqiad: a retry goes back to codfw's topic.
		{"eqiad/codfw", "eqiad.cpjobqueue.retry.mediawiki.job.refreshLinks", "codfw.mediawiki.job.refreshLinks"},
		{"", "mediawiki.job.refreshLinks", "mediawiki.job.refreshLinks"},
		{"", "cpjobqueue.retry.mediawiki.job.refreshLinks", "mediawiki.job.refreshLinks"},
		{"eqiad", "eqiad.cpjobqueue.retry.mediawiki.job.refreshLinks", "eqiad.mediawiki.job.refreshLinks"},
		{"eqiad", "eqiad.mediawiki.job.refreshLinks", "eqiad.mediawiki.job.refreshLinks"},
		// Another service's or dc's retry topic is not ours to unwrap.
		{"eqiad", "codfw.cpjobqueue.retry.mediawiki.job.refreshLinks", "codfw.cpjobqueue.retry.mediawiki.job.refreshLinks"},
		{"", "other.retry.mediawiki.job.refreshLinks", "other.retry.mediawiki.job.refreshLinks"},
	} {
		produce, consume, ok := strings.Cut(tc.dc, "/")
		if !ok {
			consume = produce
		}
		names := dispatch.Names{ServiceName: "cpjobqueue", DC: produce, ConsumeDC: consume}
		if got := replayTarget(names, tc.topic); got != tc.want {
			t.Errorf("dc %q: replayTarget(%q) = %q, want %q", tc.dc, tc.topic, got, tc.want)
		}
	}
}

// TestReplaySkipsExcerpts: an error event whose raw_event is only an
// excerpt (raw_event_bytes set) is invalid for replay; the same event
// without it is accepted.
func TestReplaySkipsExcerpts(t *testing.T) {
	ev := `{"$schema":"/error/0.0.3","meta":{"id":"x","dt":"2026-03-01T00:00:00Z"},"topic":"t","raw_event":"{\"meta\":{}"%s}`
	if _, err := parseErrorEvent(fmt.Appendf(nil, ev, "")); err != nil {
		t.Fatalf("whole raw_event: %v", err)
	}
	if _, err := parseErrorEvent(fmt.Appendf(nil, ev, `,"raw_event_bytes":10485760`)); err == nil || !strings.Contains(err.Error(), "excerpt") {
		t.Fatalf("excerpt: %v, want an error naming the excerpt", err)
	}
}
