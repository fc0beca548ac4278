package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"changeprop/dispatch"
	"changeprop/internal/testkit"
	"changeprop/rules"
)

// TestAllowedHostsGuard: with allowed_hosts set, an event whose fields
// would send its request to another host (meta.domain of 169.254.169.254,
// a host header of evil.example/..) is never sent and goes to the error
// topic with the reason; allowed events are posted.
func TestAllowedHostsGuard(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{jobTopic: 1, errorTopic: 1}})
	sc := newScript(func(string, int) (int, http.Header) { return 200, nil })
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{Respond: sc.respond})
	runnerHost := strings.TrimPrefix(jr.URL(), "http://")
	cfg, err := rules.Load(fmt.Appendf(nil, `
service_name: cpjobqueue
kafka:
  brokers: %s
  consumer: {auto.offset.reset: earliest}
allowed_hosts: ['%s', '*.wikipedia.org']
rules:
  job:
    topic: mediawiki.job.refreshLinks
    exec:
      method: post
      uri: 'http://{{message.target}}/rpc/RunSingleJob.php'
      headers: {host: '{{message.meta.domain}}'}
      body: '{{globals.message}}'
`, cluster.Addr(), runnerHost), nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := func(id, domain, target string) testkit.Record {
		return testkit.Record{Topic: jobTopic, Partition: 0, Value: fmt.Appendf(nil,
			`{"meta":{"id":%q,"domain":%q,"uri":"https://x/","stream":"mediawiki.job.refreshLinks"},"target":%q,"type":"t"}`, id, domain, target)}
	}
	if err := cluster.Produce(ctx,
		ev("ok", "en.wikipedia.org", runnerHost),
		ev("metadata", "en.wikipedia.org", "169.254.169.254"),
		ev("vhost", "evil.example/..", runnerHost),
		ev("ok2", "de.wikipedia.org", runnerHost),
	); err != nil {
		t.Fatal(err)
	}
	r, stop := startRunner(t, cfg, cfg.Rules[0], func(rc *dispatch.RunnerConfig) { rc.AllowHost = cfg.HostAllowed })
	waitFor(t, ctx, "all four", func() bool { return r.Stats().Finished() == 4 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if sc.count("ok") != 1 || sc.count("ok2") != 1 || sc.count("metadata") != 0 || sc.count("vhost") != 0 {
		t.Errorf("posted: ok %d, ok2 %d, metadata %d, vhost %d; want 1, 1, 0, 0",
			sc.count("ok"), sc.count("ok2"), sc.count("metadata"), sc.count("vhost"))
	}
	errs := errorEvents(t, ctx, cluster)
	for id, want := range map[string]string{"metadata": `host "169.254.169.254"`, "vhost": `host header "evil.example/.."`} {
		if e, ok := errs[id]; !ok || !strings.Contains(e.Message, want) {
			t.Errorf("error event for %s: %+v, want a message naming %s", id, e, want)
		}
	}
}

// TestSSRFThroughEveryTemplatedField sends events whose fields try to move
// a request elsewhere through each templated part of an exec: the URI's
// host, its path written raw ({{}}) and encoded ({}), its query, the host
// header, another header, and a whole URI taken from the event. Every
// attempt is refused before anything is sent and lands on the error topic
// with its reason; the harmless events of each kind reach the job runner,
// encoded values intact.
func TestSSRFThroughEveryTemplatedField(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{jobTopic: 1, errorTopic: 1}})
	type seen struct{ path, query, host, wiki string }
	var mu sync.Mutex
	got := map[string]seen{}
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{Respond: func(r *http.Request, body []byte) (int, http.Header, []byte, bool) {
		var ev struct{ Meta struct{ ID string } }
		_ = json.Unmarshal(body, &ev)
		mu.Lock()
		got[ev.Meta.ID] = seen{r.URL.EscapedPath(), r.URL.RawQuery, r.Host, r.Header.Get("X-Wiki")}
		mu.Unlock()
		return 200, nil, []byte(`{}`), true
	}})
	runner := strings.TrimPrefix(jr.URL(), "http://")
	exec := func(uri, extra string) string {
		return fmt.Sprintf("{method: post, uri: '%s', body: '{{globals.message}}'%s}", uri, extra)
	}
	cfg, err := rules.Load(fmt.Appendf(nil, `
service_name: cpjobqueue
kafka:
  brokers: %s
  consumer: {auto.offset.reset: earliest}
allowed_hosts: ['%s', '*.wikipedia.org']
rules:
  job:
    topic: %s
    cases:
      - {match: {type: host}, exec: %s}
      - {match: {type: rawpath}, exec: %s}
      - {match: {type: path}, exec: %s}
      - {match: {type: query}, exec: %s}
      - {match: {type: vhost}, exec: %s}
      - {match: {type: header}, exec: %s}
      - {match: {type: uri}, exec: %s}
`, cluster.Addr(), runner, jobTopic,
		exec("http://{{message.v}}/rpc", ""),
		exec("http://"+runner+"{{message.v}}", ""),
		exec("http://"+runner+"/rpc/{message.v}", ""),
		exec("http://"+runner+"/rpc", ", query: {q: '{{message.v}}'}"),
		exec("http://"+runner+"/rpc", ", headers: {host: '{{message.v}}'}"),
		exec("http://"+runner+"/rpc", ", headers: {x-wiki: '{{message.v}}'}"),
		exec("{{message.v}}", "")), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id, kind, value string
		refused         string // in the error event's message; "" when it is sent
		want            seen   // what the job runner saw, when sent
	}{
		{"host-metadata", "host", "169.254.169.254", `host "169.254.169.254"`, seen{}},
		{"host-other-port", "host", "127.0.0.1:6379", `host "127.0.0.1:6379"`, seen{}},
		{"host-ok", "host", runner, "", seen{path: "/rpc", host: runner}},
		{"rawpath-userinfo", "rawpath", "@evil.example/", `host "evil.example"`, seen{}},
		{"rawpath-subdomain", "rawpath", ".evil.example/x", "is not an http(s) URI", seen{}},
		{"rawpath-port", "rawpath", ":6379/", "is not an http(s) URI", seen{}},
		{"rawpath-ok", "rawpath", "/rpc/x", "", seen{path: "/rpc/x", host: runner}},
		{"path-encoded", "path", "../../admin?x=1#@evil.example/", "",
			seen{path: "/rpc/..%2F..%2Fadmin%3Fx%3D1%23%40evil.example%2F", host: runner}},
		{"query-injection", "query", "x&admin=1#@evil.example", "",
			seen{path: "/rpc", query: "q=x%26admin%3D1%23%40evil.example", host: runner}},
		{"vhost-metadata", "vhost", "169.254.169.254", `host header "169.254.169.254"`, seen{}},
		{"vhost-path", "vhost", "evil.example/..", `host header "evil.example/.."`, seen{}},
		{"vhost-crlf", "vhost", "en.wikipedia.org\r\nX-Evil: 1", "header host holds the control character", seen{}},
		{"vhost-ok", "vhost", "en.wikipedia.org", "", seen{path: "/rpc", host: "en.wikipedia.org"}},
		{"header-crlf", "header", "enwiki\r\nHost: evil.example", "header x-wiki holds the control character", seen{}},
		{"header-ok", "header", "enwiki", "", seen{path: "/rpc", host: runner, wiki: "enwiki"}},
		{"uri-metadata", "uri", "http://169.254.169.254/latest/meta-data/", `host "169.254.169.254"`, seen{}},
		{"uri-file", "uri", "file:///etc/passwd", "is not an http(s) URI", seen{}},
		{"uri-gopher", "uri", "gopher://" + runner + "/", "is not an http(s) URI", seen{}},
		{"uri-ok", "uri", jr.URL() + "/rpc", "", seen{path: "/rpc", host: runner}},
	}
	var recs []testkit.Record
	for _, tt := range tests {
		v, _ := json.Marshal(map[string]any{"meta": map[string]any{"id": tt.id, "stream": jobTopic}, "type": tt.kind, "v": tt.value})
		recs = append(recs, testkit.Record{Topic: jobTopic, Partition: 0, Value: v})
	}
	if err := cluster.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	r, stop := startRunner(t, cfg, cfg.Rules[0], func(rc *dispatch.RunnerConfig) { rc.AllowHost = cfg.HostAllowed })
	waitFor(t, ctx, "every event", func() bool { return r.Stats().Finished() == int64(len(tests)) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	errs := errorEvents(t, ctx, cluster)
	mu.Lock()
	defer mu.Unlock()
	for _, tt := range tests {
		s, sent := got[tt.id]
		e, failed := errs[tt.id]
		switch {
		case tt.refused != "" && sent:
			t.Errorf("%s: sent (%+v), want it refused", tt.id, s)
		case tt.refused != "" && (!failed || !strings.Contains(e.Message, tt.refused)):
			t.Errorf("%s: error event %+v, want a message with %q", tt.id, e, tt.refused)
		case tt.refused == "" && (!sent || s != tt.want):
			t.Errorf("%s: the job runner saw %+v (sent %v), want %+v; error event %q", tt.id, s, sent, tt.want, e.Message)
		}
	}
}
