package kafka_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
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

// TestHeaderInjectionRefused: an event whose field, templated into a
// header, holds a line break (which would let it write headers or a
// request of its own) is not sent and goes to the error topic at once,
// without waiting on the destination; the others are posted.
func TestHeaderInjectionRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{jobTopic: 1, errorTopic: 1}})
	sc := newScript(func(string, int) (int, http.Header) { return 200, nil })
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{Respond: sc.respond})
	cfg, err := rules.Load(fmt.Appendf(nil, `
service_name: cpjobqueue
kafka:
  brokers: %s
  consumer: {auto.offset.reset: earliest}
rules:
  job:
    topic: mediawiki.job.refreshLinks
    exec:
      method: post
      uri: '%s/rpc/RunSingleJob.php'
      headers: {host: '{{message.meta.domain}}', x-title: '{{message.title}}'}
      body: '{{globals.message}}'
`, cluster.Addr(), jr.URL()), nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := func(id, domain, title string) testkit.Record {
		return testkit.Record{Topic: jobTopic, Partition: 0, Value: fmt.Appendf(nil,
			`{"meta":{"id":%q,"domain":%q,"uri":"https://x/","stream":"mediawiki.job.refreshLinks"},"title":%q,"type":"t"}`, id, domain, title)}
	}
	if err := cluster.Produce(ctx,
		ev("ok", "en.wikipedia.org", "Main_Page"),
		ev("header", "en.wikipedia.org", "A\r\nX-Injected: 1"),
		ev("request", "en.wikipedia.org", "A\r\n\r\nGET /admin HTTP/1.1"),
		ev("vhost", "en.wikipedia.org\r\nX-Injected: 1", "B"),
		ev("ok2", "de.wikipedia.org", "Other"),
	); err != nil {
		t.Fatal(err)
	}
	r, stop := startRunner(t, cfg, cfg.Rules[0])
	waitFor(t, ctx, "all five", func() bool { return r.Stats().Finished() == 5 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]int{"ok": 1, "ok2": 1, "header": 0, "request": 0, "vhost": 0} {
		if got := sc.count(id); got != want {
			t.Errorf("%s posted %d times, want %d", id, got, want)
		}
	}
	errs := errorEvents(t, ctx, cluster)
	for _, id := range []string{"header", "request", "vhost"} {
		if e, ok := errs[id]; !ok || !strings.Contains(e.Message, "request not sent") {
			t.Errorf("error event for %s: %+v, want one saying the request was not sent", id, e)
		}
	}
}
