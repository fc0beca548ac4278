package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"changeprop/internal/jobgen"
	"changeprop/internal/testkit"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := testkit.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// adminToken is the admin.token of the tests' configs.
const adminToken = "admin-token-for-tests-0b6f"

// post is a POST with a bearer token (none when token is empty).
func post(url, token, contentType, body string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return http.DefaultClient.Do(req)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAdminEndpoints runs `changeprop run` and checks the operations
// endpoints: /readyz is not ready while a rule has no topic to subscribe
// to, /metrics carries service.md's metrics, and a pause through the API
// shows in /v1/rules and stops the rule reading.
func TestAdminEndpoints(t *testing.T) {
	const topic = "mediawiki.job.refreshLinks"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{topic: 2}})
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{})
	addr := freeAddr(t)
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	write := func(extraRule string) {
		if err := os.WriteFile(cfgFile, fmt.Appendf(nil, `
service_name: cpjobqueue
kafka: {brokers: '%s', consumer: {auto.offset.reset: earliest}}
listen: %s
admin: {token: %s}
rules:
  job:
    topic: %s
    exec: {method: post, uri: '%s/rpc/RunSingleJob.php', body: '{{globals.message}}'}
%s`, cluster.Addr(), addr, adminToken, topic, jr.URL(), extraRule), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := "http://" + addr

	// A rule whose regex matches no topic never subscribes: not ready.
	write("  nothing:\n    topic: '/^nothing\\..*/'\n    exec: {uri: 'http://127.0.0.1:1/'}\n")
	var logs syncBuffer
	cp := startChangeprop(t, ctx, &logs, "run", "-config", cfgFile)
	waitFor(t, ctx, "the listener", func() bool {
		select {
		case <-cp.ctx.Done():
			t.Fatalf("changeprop exited:\n%s", logs.String())
		default:
		}
		code, _ := get(t, base+"/healthz")
		return code == 200
	})
	waitFor(t, cp.ctx, "the job rule to subscribe", func() bool { return strings.Contains(logs.String(), `"subscribed"`) })
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "nothing") {
		t.Errorf("/readyz = %d %q, want 503 naming the rule that is not subscribed", code, body)
	}
	if err := cp.stop(); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}

	write("")
	cp = startChangeprop(t, ctx, &logs, "run", "-config", cfgFile)
	waitFor(t, cp.ctx, "ready", func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })
	gen := jobgen.New(3)
	gen.Distinct = true
	var recs []testkit.Record
	for range 50 {
		recs = append(recs, testkit.Record{Topic: topic, Partition: testkit.AnyPartition, Value: gen.NextOfType("refreshLinks")})
	}
	if err := cluster.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	if err := jr.WaitFor(cp.ctx, 50); err != nil {
		t.Fatal(err)
	}
	waitFor(t, cp.ctx, "metrics", func() bool {
		_, body := get(t, base+"/metrics")
		for _, m := range []string{
			`changeprop_events_consumed_total{rule="job",topic="mediawiki.job.refreshLinks"} 50`,
			`changeprop_dispatch_total{outcome="done",rule="job"} 50`,
			`changeprop_dispatch_duration_seconds_count{rule="job"} 50`,
			`changeprop_event_delay_seconds_count{rule="job"} 50`,
			`changeprop_inflight{rule="job"} 0`,
			`changeprop_partition_lag{partition="0",rule="job",topic="mediawiki.job.refreshLinks"}`,
			`changeprop_committed_offset{partition="0",rule="job",topic="mediawiki.job.refreshLinks"}`,
			`changeprop_retries_produced_total{rule="job"} 0`,
			`changeprop_errors_produced_total{rule="job"} 0`,
			`changeprop_breaker_state{destination="` + jr.URL() + `"} 0`,
			`go_sched_latencies_seconds_count `,
		} {
			if !strings.Contains(body, m) {
				return false
			}
		}
		return true
	})

	resp, err := post(base+"/v1/rules/job/pause", adminToken, "", "")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("pause: %v %v", resp, err)
	}
	resp.Body.Close()
	var rules []struct {
		Name, State string
		Consumed    int64
	}
	waitFor(t, cp.ctx, "paused in /v1/rules", func() bool {
		_, body := get(t, base+"/v1/rules")
		if err := json.Unmarshal([]byte(body), &rules); err != nil {
			t.Fatalf("/v1/rules: %v\n%s", err, body)
		}
		return len(rules) == 1 && rules[0].State == "paused"
	})
	more := make([]testkit.Record, 10)
	for i := range more {
		more[i] = testkit.Record{Topic: topic, Partition: testkit.AnyPartition, Value: gen.NextOfType("refreshLinks")}
	}
	if err := cluster.Produce(ctx, more...); err != nil { // while paused
		t.Fatal(err)
	}
	hold := time.NewTimer(2 * time.Second)
	<-hold.C
	_, body := get(t, base+"/v1/rules")
	_ = json.Unmarshal([]byte(body), &rules)
	if rules[0].Consumed != 50 {
		t.Errorf("a paused rule read %d messages, want the 50 before the pause", rules[0].Consumed)
	}
	resp, err = post(base+"/v1/rules/job/resume", adminToken, "", "")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitFor(t, cp.ctx, "reading again", func() bool {
		_, body := get(t, base+"/v1/rules")
		_ = json.Unmarshal([]byte(body), &rules)
		return rules[0].State == "running" && rules[0].Consumed == 60
	})

	// POST /v1/events produces with meta.id and meta.dt filled in.
	resp, err = post(base+"/v1/events", adminToken, "application/json",
		`[{"meta":{"stream":"mediawiki.job.refreshLinks","domain":"en.wikipedia.org"},"type":"refreshLinks","database":"enwiki"}, {"type":"x","meta":{}}]`)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(b), "events[1].meta.stream: required") {
		t.Errorf("POST /v1/events with an event without meta.stream = %d %s", resp.StatusCode, b)
	}
	resp, err = post(base+"/v1/events", adminToken, "application/json",
		`{"meta":{"stream":"mediawiki.job.refreshLinks","domain":"en.wikipedia.org"},"type":"refreshLinks","database":"enwiki"}`)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("POST /v1/events: %v %v", resp, err)
	}
	resp.Body.Close()
	waitFor(t, cp.ctx, "the posted event run", func() bool { return jr.Succeeded() >= 61 })
	if err := cp.stop(); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
}
