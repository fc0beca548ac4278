package rules

import (
	"net"
	"strings"
	"testing"
	"time"
)

const minimal = `
service_name: cpjobqueue
kafka: {brokers: 127.0.0.1:9092}
rules:
  basic:
    topic: mediawiki.job.basic
    exec:
      method: post
      uri: http://jobrunner.svc:9005/rpc/RunSingleJob.php
      headers:
        content-type: application/json
        host: '{{globals.message.meta.domain}}'
      body: '{{globals.message}}'
`

func mustLoad(t testing.TB, src string) *Config {
	t.Helper()
	c, err := Load([]byte(src), nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	recorder.rules(c.Rules)
	return c
}

func TestLoadDefaults(t *testing.T) {
	c := mustLoad(t, minimal)
	if c.Listen != DefaultListen || c.UserAgent != DefaultUserAgent || c.ShutdownTimeout != 30*time.Second {
		t.Errorf("service defaults: %+v", c)
	}
	if c.Kafka.CommitInterval != time.Second || c.Kafka.ClientLogs != ClientLogsForward || c.Redis != nil || c.Breaker != DefaultBreaker {
		t.Errorf("kafka/redis/breaker defaults: %+v %+v %+v", c.Kafka, c.Redis, c.Breaker)
	}
	r := c.Rules[0]
	want := Rule{Name: "basic", Concurrency: 30, PartitionConcurrency: 30, Timeout: 7 * time.Minute,
		RetryDelay: time.Minute, RetryFactor: 6, RetryLimit: 2, ReenqueueDelay: 20 * time.Second,
		DiscardCanaryEvents: true}
	if r.Name != want.Name || r.Concurrency != want.Concurrency || r.PartitionConcurrency != want.PartitionConcurrency ||
		r.Timeout != want.Timeout || r.RetryDelay != want.RetryDelay || r.RetryFactor != want.RetryFactor ||
		r.RetryLimit != want.RetryLimit || r.ReenqueueDelay != want.ReenqueueDelay || !r.DiscardCanaryEvents {
		t.Errorf("rule defaults: %+v", r)
	}
	if len(r.Topics) != 1 || r.Topics[0].Name != "mediawiki.job.basic" || r.Topics[0].Regex != nil {
		t.Errorf("topics: %+v", r.Topics)
	}
	if !r.RetryOn.Matches(503, nil) || r.RetryOn.Matches(510, nil) || !r.Ignore.Matches(412, nil) {
		t.Errorf("conditions")
	}
	if r.Breaker != DefaultBreaker {
		t.Errorf("rule breaker: %+v", r.Breaker)
	}
}

func TestLoadAllKeys(t *testing.T) {
	c := mustLoad(t, `
service_name: cp
dc: eqiad
kafka:
  brokers: [a:9092, b:9092]
  consumer: {fetch.wait.max.ms: 5, enable.auto.commit: false}
  producer: {compression.codec: snappy}
  commit_interval: 500
  client_logs: stderr
redis: {addr: r:6379, password: pw, db: 2}
listen: 0.0.0.0:8080
user_agent: UA
allowed_hosts: ['*.svc', 'localhost:8080']
shutdown_timeout: 10s
breaker: {failure_ratio: 0.25, min_requests: 3, interval: 1s, open_timeout: 2000, half_open_requests: 1}
defaults:
  concurrency: 7
  retry_limit: 5
  timeout: 1000
rules:
  r1:
    topics: ['/^mediawiki\.job\..*/', plain.topic]
    exclude_topics: [mediawiki.job.x]
    retry_limit: 0
    retry_delay: 2s
    retry_factor: 2
    reenqueue_delay: 5
    claim_ttl: 3600
    root_claim_ttl: 2h
    partition_concurrency: 3
    discard_canary_events: false
    disable_delayed_execution: true
    disable_blacklist: false
    disable_ratelimit: true
    consumer: {max.poll.interval.ms: 600000}
    consumer_batch_size: 50
    concurrency_key: '{{message.database}}'
    key_concurrency: {default: 2, overrides: {enwiki: 5}}
    ordered: true
    rate_limit: {rate: 2.5, key: '{{message.meta.domain}}'}
    breaker: {min_requests: 50}
    limiters: {blacklist: 'html:{message.meta.uri}'}
    blacklist: {en.wikipedia.org: ['User:Foo', '/^Bar/']}
    sample: {rate: 0.5, hash_template: '{{message.meta.id}}'}
    retry_on: {status: ['5xx', 429]}
    ignore: {status: 412, headers: {x-reason: '/^gone/'}}
    exec: {uri: 'http://x.svc/a'}
  part:
    topic: mediawiki.job.refreshLinks
    partition_stream: 'cpjobqueue.partitioned.{{message.meta.stream}}'
    partition_key: database
    partition_map: {enwiki: 1, dewiki: 2}
    partition_default: 0
`)
	if c.DC != "eqiad" || c.Topic("t") != "eqiad.t" || c.Kafka.Brokers != "a:9092,b:9092" {
		t.Errorf("dc/brokers: %q %q", c.Topic("t"), c.Kafka.Brokers)
	}
	if c.Kafka.Consumer["fetch.wait.max.ms"] != "5" || c.Kafka.Consumer["enable.auto.commit"] != "false" || c.Kafka.CommitInterval != 500*time.Millisecond || c.Kafka.ClientLogs != ClientLogsStderr {
		t.Errorf("kafka: %+v", c.Kafka)
	}
	if c.Redis == nil || c.Redis.Addr != "r:6379" || c.Redis.Prefix != "CPJQ" || c.Redis.DB != 2 || c.Redis.Password != "pw" {
		t.Errorf("redis: %+v", c.Redis)
	}
	if c.Breaker.OpenTimeout != 2*time.Second || c.Breaker.FailureRatio != 0.25 {
		t.Errorf("breaker: %+v", c.Breaker)
	}
	r := c.Rule("r1")
	if r.Concurrency != 7 || r.RetryLimit != 0 || r.Timeout != time.Second || r.RetryDelay != 2*time.Second ||
		r.RetryFactor != 2 || r.ReenqueueDelay != 5*time.Second || r.ClaimTTL != time.Hour || r.RootClaimTTL != 2*time.Hour ||
		r.PartitionConcurrency != 3 || r.DiscardCanaryEvents || !r.DisableDelayedExecution || !r.DisableRatelimit ||
		r.ConsumerBatchSize != 50 || r.Consumer["max.poll.interval.ms"] != "600000" || !r.Ordered {
		t.Errorf("rule: %+v", r)
	}
	if r.Topics[0].Regex == nil || !r.Topics[0].Regex.MatchString("mediawiki.job.foo") || r.Topics[1].Name != "plain.topic" {
		t.Errorf("topics: %+v", r.Topics)
	}
	if r.KeyConcurrency.Limit("enwiki") != 5 || r.KeyConcurrency.Limit("dewiki") != 2 {
		t.Errorf("key concurrency: %+v", r.KeyConcurrency)
	}
	if r.RateLimit.Rate != 2.5 || r.RateLimit.Burst != 3 || r.RateLimit.Key.String() != "{{message.meta.domain}}" {
		t.Errorf("rate limit: %+v", r.RateLimit)
	}
	if r.Breaker.MinRequests != 50 || r.Breaker.FailureRatio != 0.25 {
		t.Errorf("rule breaker: %+v", r.Breaker)
	}
	if len(r.Limiters) != 1 || r.Limiters[0].Type != "blacklist" {
		t.Errorf("limiters: %+v", r.Limiters)
	}
	if !r.Blacklisted("en.wikipedia.org", "User:Foo") || !r.Blacklisted("en.wikipedia.org", "Barbaz") || r.Blacklisted("de.wikipedia.org", "User:Foo") {
		t.Errorf("blacklist")
	}
	if r.Sample == nil || r.Sample.Rate != 0.5 || r.Cases[0].Sample != r.Sample {
		t.Errorf("sample: %+v", r.Sample)
	}
	if !r.RetryOn.Matches(429, nil) || !r.RetryOn.Matches(599, nil) || r.RetryOn.Matches(404, nil) {
		t.Errorf("retry_on")
	}
	gone := func(string) string { return "gone away" }
	if !r.Ignore.Matches(412, gone) || r.Ignore.Matches(412, nil) {
		t.Errorf("ignore with headers")
	}
	if !c.HostAllowed("x.svc") || !c.HostAllowed("x.svc:9005") || !c.HostAllowed("localhost:8080") || c.HostAllowed("localhost:80") || c.HostAllowed("evil.com") {
		t.Errorf("HostAllowed")
	}
	pt := c.Rule("part").Partition
	if pt == nil || pt.Key != "database" || pt.Map["dewiki"] != 2 || pt.Stream == nil {
		t.Fatalf("partitioner: %+v", pt)
	}
	ev := mustEvent(t, `{"meta":{"stream":"mediawiki.job.refreshLinks"},"database":"enwiki"}`)
	if s, _ := pt.Stream.Text(ev.Scope()); s != "cpjobqueue.partitioned.mediawiki.job.refreshLinks" || pt.KeyValue(ev) != "enwiki" {
		t.Errorf("partition stream %q key %q", s, pt.KeyValue(ev))
	}
}

func TestLoadEnv(t *testing.T) {
	env := map[string]string{EnvKafkaBrokers: "k:1", EnvRedisAddr: "r:2"}
	c, err := Load([]byte(strings.Replace(minimal, "kafka: {brokers: 127.0.0.1:9092}", "", 1)), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Kafka.Brokers != "k:1" || c.Redis == nil || c.Redis.Addr != "r:2" || c.Redis.Prefix != "CPJQ" {
		t.Errorf("env: %+v %+v", c.Kafka, c.Redis)
	}
}

func TestLoadProblems(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"unknown keys everywhere", `
service_name: s
kafka: {brokers: b, bogus: 1, client_logs: syslog}
whatever: 1
rules:
  r:
    topic: t
    colour: blue
    exec: [{uri: 'http://a/', metod: post}]
    retry_on: {status: [500], body: x}
`, []string{"kafka.bogus: unknown key", `kafka.client_logs: "syslog": want "forward" or "stderr"`, "whatever: unknown key", "rules.r.colour: unknown key",
			"rules.r.exec[0].metod: unknown key", "rules.r.retry_on.body: unknown key"}},
		{"missing things", `
rules:
  refreshLinks:
    exec: [{method: post}, {uri: '  '}]
`, []string{"service_name: required", "kafka.brokers: required", "rules.refreshLinks.topic: required",
			"rules.refreshLinks.exec[0].uri: required", "rules.refreshLinks.exec[1].uri: required"}},
		{"bad values", `
service_name: s
kafka: {brokers: b}
rules:
  x:
    topic: t
    concurrency: 0
    retry_limit: -1
    retry_delay: soon
    timeout: -5
    sample: {rate: 1.5}
    retry_on: {status: [500, '5y0']}
    match: {meta: {uri: '/(a)(?<b>c)/', domain: '/[/'}}
    exec: {uri: 'http://a/{message.'}
`, []string{"rules.x.concurrency: must be at least 1, got 0", "rules.x.retry_limit: must not be negative",
			`rules.x.retry_delay: bad duration "soon"`, "rules.x.timeout: must not be negative",
			"rules.x.sample.rate: invalid sample rate 1.5", `rules.x.retry_on.status[1]: bad status pattern "5y0"`,
			"rules.x.match.meta.uri: regex /(a)(?<b>c)/ mixes named and unnamed capture groups",
			"rules.x.match.meta.domain: bad regex /[/", "rules.x.exec.uri: template"}},
		{"defaults problems reported once", `
service_name: s
kafka: {brokers: b}
defaults: {concurrency: nope, shiny: true}
rules:
  a: {topic: t}
  b: {topic: u}
`, []string{`defaults.concurrency: must be an integer, not "nope"`, "defaults.shiny: unknown key"}},
		{"exclusive keys", `
service_name: s
kafka: {brokers: b}
rules:
  a:
    topic: t
    topics: [u]
    match: {a: 1}
    cases: [{exec: {uri: 'http://a/'}}]
    ordered: true
    partition_map: {a: 1}
`, []string{"rules.a.topics: use topic or topics, not both", "rules.a.match: not allowed with cases",
			"rules.a.ordered: needs concurrency_key", "rules.a.partition_map: needs partition_stream"}},
		{"allowed hosts", `
service_name: s
kafka: {brokers: b}
allowed_hosts: [jobrunner.svc]
rules:
  a:
    topic: t
    cases:
      - exec: [{uri: 'http://jobrunner.svc:9005/x'}, {uri: 'https://evil.example/{message.x}'}]
`, []string{`rules.a.cases[0].exec[1].uri: host "evil.example" is not in allowed_hosts`}},
		{"no rules", `
service_name: s
kafka: {brokers: b}
`, []string{"rules: at least one rule is required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load([]byte(tt.src), nil)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("missing %q in:\n%s", w, msg)
				}
			}
			if tt.name == "defaults problems reported once" && strings.Count(msg, "defaults.shiny") != 1 {
				t.Errorf("defaults problem repeated:\n%s", msg)
			}
		})
	}
}

func TestLoadRetryLimitZeroFromDefaults(t *testing.T) {
	c := mustLoad(t, `
service_name: s
kafka: {brokers: b}
defaults: {retry_limit: 0, concurrency: 3}
rules:
  a: {topic: t}
  b: {topic: u, retry_limit: 4, concurrency: 9}
`)
	if a := c.Rule("a"); a.RetryLimit != 0 || a.Concurrency != 3 || a.PartitionConcurrency != 3 {
		t.Errorf("a: %d %d %d", a.RetryLimit, a.Concurrency, a.PartitionConcurrency)
	}
	if b := c.Rule("b"); b.RetryLimit != 4 || b.Concurrency != 9 {
		t.Errorf("b: %d %d", b.RetryLimit, b.Concurrency)
	}
	if c.Rules[0].Name != "a" || c.Rules[1].Name != "b" {
		t.Errorf("order")
	}
}

func TestLoadYAMLAnchors(t *testing.T) {
	c := mustLoad(t, `
service_name: s
kafka: {brokers: b}
rules:
  a: &job
    topic: t
    concurrency: 4
  b:
    <<: *job
    topic: u
`)
	if b := c.Rule("b"); b.Concurrency != 4 || b.Topics[0].Name != "u" {
		t.Errorf("merge: %+v", b)
	}
}

// TestSplitHostPort: what net.SplitHostPort splits, splitHostPort splits
// the same way; the rest is a host without a port.
func TestSplitHostPort(t *testing.T) {
	for _, hp := range []string{"host", "host:80", "Host.SVC:9005", "[::1]:7231", "[::1]", "::1", "2001:db8::1",
		"host:", ":80", "", "a:b:c", "[::1]:", "[bad:80", "x]:80", "*.wikipedia.org", "*.svc:8080"} {
		host, port := splitHostPort(hp)
		wh, wp, err := net.SplitHostPort(hp)
		if err != nil {
			wh, wp = hp, ""
		}
		if host != wh || port != wp {
			t.Errorf("splitHostPort(%q) = %q, %q; net.SplitHostPort gives %q, %q", hp, host, port, wh, wp)
		}
	}
	c := &Config{AllowedHosts: []string{"[::1]:7231", "*.wikipedia.org"}}
	if !c.HostAllowed("[::1]:7231") || c.HostAllowed("[::1]:80") || !c.HostAllowed("EN.wikipedia.org") ||
		!c.HostAllowed("en.wikipedia.org:443") || c.HostAllowed("wikipedia.org.evil") {
		t.Errorf("HostAllowed with IPv6 and wildcard patterns")
	}
}

// TestClientLogsLayers: kafka.client_logs: stderr puts the binding's log
// channel off beneath every client's properties, where kafka.properties
// may still turn it on; forward (the default) adds nothing.
func TestClientLogsLayers(t *testing.T) {
	effective := func(layers []map[string]string) (string, bool) {
		v, ok := "", false
		for _, l := range layers {
			if s, set := l[LogsChannelProperty]; set {
				v, ok = s, true
			}
		}
		return v, ok
	}
	for _, tc := range []struct {
		kafka string
		want  string
		set   bool
	}{
		{"{brokers: b}", "", false},
		{"{brokers: b, client_logs: forward}", "", false},
		{"{brokers: b, client_logs: stderr}", "false", true},
		{"{brokers: b, client_logs: stderr, properties: {go.logs.channel.enable: 'true'}}", "true", true},
	} {
		c := mustLoad(t, "service_name: s\nkafka: "+tc.kafka+"\nrules:\n  r:\n    topic: t\n")
		for name, layers := range map[string][]map[string]string{
			"consumer": c.ConsumerProperties(c.Rules[0]), "reader": c.ConsumerProperties(nil), "producer": c.ProducerProperties(),
		} {
			if v, ok := effective(layers); v != tc.want || ok != tc.set {
				t.Errorf("%q: %s's %s = %q (set %v), want %q (set %v)", tc.kafka, name, LogsChannelProperty, v, ok, tc.want, tc.set)
			}
		}
	}
}
