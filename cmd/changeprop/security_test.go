package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"changeprop/internal/jobgen"
	"changeprop/internal/testkit"
	"changeprop/rules"
)

// secured is a TLS+SASL Kafka cluster, a Redis with TLS and an ACL user,
// and the secrets of a changeprop config for them, in files and the
// environment as an operator would keep them.
type secured struct {
	dir                    string
	ca                     *testkit.CA
	cluster                *testkit.Cluster
	redis                  *testkit.RedisServer
	kafkaPW, redisPW       string
	token, apiKey, uriPW   string
	kafkaPWFile, tokenFile string
}

const securedTopic = "mediawiki.job.refreshLinks"

func newSecured(t *testing.T) *secured {
	t.Helper()
	s := &secured{
		dir: t.TempDir(), kafkaPW: testSecret("kafka"), redisPW: testSecret("redis"),
		token: testSecret("admin"), apiKey: testSecret("apikey"), uriPW: testSecret("uri"),
	}
	var err error
	if s.ca, err = testkit.NewCA(s.dir); err != nil {
		t.Fatal(err)
	}
	s.cluster = testkit.NewCluster(t, testkit.ClusterOptions{
		Brokers: 1, TLS: s.ca.Server, ClientTLS: s.ca.Client,
		Topics: map[string]int{securedTopic: 2, "cpjobqueue.error": 1},
		SASL: []testkit.SASLUser{
			{Mechanism: "SCRAM-SHA-512", User: "admin", Password: testSecret("kafka-admin")},
			{Mechanism: "SCRAM-SHA-512", User: "changeprop", Password: s.kafkaPW},
		},
	})
	s.redis = testkit.StartRedisWith(t, testkit.RedisOptions{TLS: s.ca, Password: testSecret("redis-default"), User: "changeprop", UserPassword: s.redisPW})
	s.kafkaPWFile = s.writeFile(t, "kafka-password", s.kafkaPW+"\n")
	s.tokenFile = s.writeFile(t, "admin-token", s.token)
	return s
}

func (s *secured) writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(s.dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// config is the service's config file: the Kafka password in a file, the
// Redis password in the environment (env), the admin token in a file, an
// API key header and a URI password in the rule. librdkafka's security
// and broker debug lines are on, so the log holds all that goes on around
// the secrets.
func (s *secured) config(t *testing.T, kafkaPWFile, listen, runner string) string {
	t.Helper()
	host := strings.TrimPrefix(runner, "http://")
	return s.writeFile(t, "config.yaml", fmt.Sprintf(`
service_name: cpjobqueue
kafka:
  brokers: %s
  properties:
    security.protocol: SASL_SSL
    sasl.mechanism: SCRAM-SHA-512
    sasl.username: changeprop
    ssl.ca.location: %s
    debug: security,broker
  sasl_password_file: %s
  consumer: {auto.offset.reset: earliest}
  commit_interval: 100ms
redis:
  addr: %s
  username: changeprop
  tls: {ca_file: %s}
admin: {token_file: %s}
listen: %s
rules:
  job:
    topic: %s
    exec:
      method: post
      uri: 'http://changeprop:%s@%s/rpc/RunSingleJob.php'
      headers: {content-type: application/json, x-api-key: %s}
      body: '{{globals.message}}'
`, s.cluster.Addr(), s.ca.CAFile, kafkaPWFile, s.redis.Addr, s.ca.CAFile, s.tokenFile, listen, securedTopic, s.uriPW, host, s.apiKey))
}

func (s *secured) env() []string { return []string{rules.EnvRedisPassword + "=" + s.redisPW} }

// TestSecuredServiceLeaksNoSecret runs `changeprop run` at debug level
// against TLS+SASL Kafka and TLS+ACL Redis with every kind of secret, and
// exercises what could show one: deliveries, dedupe through Redis, failed
// jobs whose responses set cookies, an unusable event, admin calls without,
// with a wrong and with the right token, GET /v1/rules, /metrics, pprof,
// and validate of the file and of a broken copy. Every secret works (the
// job runner gets the API key and URI password, dedupe answers, the token
// opens the mutations), and none appears in the log, the answers, the
// error events or validate's output; TestMain checks the whole package's
// captured output again.
func TestSecuredServiceLeaksNoSecret(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := newSecured(t)
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{KeepBodies: true, Respond: func(r *http.Request, body []byte) (int, http.Header, []byte, bool) {
		if bytes.Contains(body, []byte(`"type":"fail"`)) {
			return 400, http.Header{"Set-Cookie": {"session=" + testSecret("cookie")}}, []byte(`{"error":"bad job"}`), true
		}
		return 0, nil, nil, false
	}})
	addr := freeAddr(t)
	base := "http://" + addr
	cfgFile := s.config(t, s.kafkaPWFile, addr, jr.URL())

	var logs syncBuffer
	cp := startChangepropEnv(t, ctx, &logs, s.env(), "run", "-config", cfgFile, "-log-level", "debug")
	waitFor(t, cp.ctx, "ready", func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })

	gen := jobgen.New(5)
	gen.Distinct = true
	var recs []testkit.Record
	for range 20 {
		recs = append(recs, testkit.Record{Topic: securedTopic, Partition: testkit.AnyPartition, Value: gen.NextOfType("refreshLinks")})
	}
	recs = append(recs,
		testkit.Record{Topic: securedTopic, Partition: 0, Value: []byte(`{"meta":{"id":"f1","domain":"en.wikipedia.org","stream":"x"},"type":"fail"}`)},
		testkit.Record{Topic: securedTopic, Partition: 1, Value: []byte(`not an event`)})
	if err := s.cluster.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	if err := jr.WaitFor(cp.ctx, 20); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	// A copy of a job already done is a duplicate when Redis answers. The
	// first calls may miss the dedupe store's deadline on a busy machine
	// (the job then runs without it), so copies go on until one is
	// recognised.
	var answers bytes.Buffer // every answer of the endpoints
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var metrics string
	for copies := 0; ; copies++ {
		_, metrics = get(t, base+"/metrics")
		if strings.Contains(metrics, `changeprop_dispatch_total{outcome="dedupe",rule="job"}`) &&
			strings.Contains(metrics, `changeprop_errors_produced_total{rule="job"} 2`) {
			break
		}
		if copies == 30 {
			t.Fatalf("no duplicate recognised or no error events after %d copies:\n%s\n%s", copies, metrics, logs.String())
		}
		if err := s.cluster.Produce(ctx, recs[copies%20]); err != nil {
			t.Fatal(err)
		}
		select {
		case <-tick.C:
		case <-cp.ctx.Done():
			t.Fatalf("changeprop exited:\n%s", logs.String())
		}
	}
	for _, r := range jr.Requests() {
		if r.Header.Get("X-Api-Key") != s.apiKey || !strings.HasPrefix(r.Header.Get("Authorization"), "Basic ") {
			t.Fatalf("the job runner got X-Api-Key %q, Authorization %q", r.Header.Get("X-Api-Key"), r.Header.Get("Authorization"))
		}
	}

	call := func(method, path, token, body string, want int) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Fprintf(&answers, "%s %s %d %s\n%s\n", method, path, resp.StatusCode, resp.Header, b)
		if resp.StatusCode != want {
			t.Errorf("%s %s = %d %s, want %d", method, path, resp.StatusCode, b, want)
		}
	}
	event := `{"meta":{"stream":"mediawiki.job.refreshLinks","domain":"en.wikipedia.org"},"type":"refreshLinks"}`
	nearMiss := testSecret("near-miss")
	call("POST", "/v1/events", "", event, 401)
	call("POST", "/v1/events", nearMiss, event, 401)
	call("POST", "/v1/rules/job/pause", nearMiss, "", 401)
	call("GET", "/debug/pprof/cmdline", "", "", 401)
	call("POST", "/v1/rules/job/pause", s.token, "", 200)
	call("POST", "/v1/rules/job/resume", s.token, "", 200)
	call("GET", "/debug/pprof/cmdline", s.token, "", 200)
	call("GET", "/v1/rules", "", "", 200)
	call("GET", "/metrics", "", "", 200)
	before := jr.Succeeded()
	call("POST", "/v1/events", s.token, event, 201)
	waitFor(t, cp.ctx, "the posted event", func() bool { return jr.Succeeded() > before })
	if err := cp.stop(); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}

	errEvents, err := s.cluster.ReadAll(ctx, "cpjobqueue.error")
	if err != nil {
		t.Fatal(err)
	}
	var topic bytes.Buffer
	for _, r := range errEvents {
		topic.Write(r.Value)
		topic.WriteByte('\n')
	}
	if !strings.Contains(topic.String(), `"set-cookie":"[redacted]"`) || !strings.Contains(topic.String(), "changeprop:xxxxx@") {
		t.Errorf("error events lack the redacted cookie and URI password:\n%s", topic.String())
	}

	t.Setenv(rules.EnvRedisPassword, s.redisPW)
	var validate bytes.Buffer
	if code := run([]string{"validate", "-config", cfgFile}, nil, &validate, &validate); code != 0 {
		t.Errorf("validate: exit %d\n%s", code, validate.String())
	}
	broken, _ := os.ReadFile(cfgFile)
	broken = bytes.Replace(broken, []byte("  username: changeprop\n"), []byte("  username: changeprop\n  password: "+s.redisPW+"\n  bogus: "+testSecret("bogus")+"\n"), 1)
	brokenFile := s.writeFile(t, "broken.yaml", string(broken))
	if code := run([]string{"validate", "-config", brokenFile}, nil, &validate, &validate); code != 1 || !strings.Contains(validate.String(), "redis.bogus: unknown key") {
		t.Errorf("validate of the broken file: exit %d\n%s", code, validate.String())
	}

	// What a leak would sit next to is in the capture.
	log := logs.String()
	for _, want := range []string{"changeprop", "SCRAM-SHA-512", `"to error topic"`, "admin request refused", `"admin_token":true`} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q: it does not show what the check looks at", want)
		}
	}
	for name, out := range map[string]string{"log": log, "answers": answers.String(), "error topic": topic.String(), "validate": validate.String()} {
		fmt.Fprint(&suiteOutput, out)
		if found := leaks(out); len(found) > 0 {
			t.Errorf("%s holds secrets:\n%s", name, strings.Join(found, "\n"))
		}
	}
}

// TestWrongCredentialsFailTheStart: `changeprop run` with a wrong Kafka
// password, or a wrong Redis password, exits 1 at start with an error that
// names what was refused and where to look, and not the password.
func TestWrongCredentialsFailTheStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := newSecured(t)
	tests := []struct {
		name  string
		cfg   func() string
		env   []string
		wants []string
	}{
		{"kafka", func() string {
			return s.config(t, s.writeFile(t, "wrong-kafka", testSecret("wrong-kafka")), freeAddr(t), "http://127.0.0.1:1")
		}, s.env(), []string{"kafka refused the connection", "SASL authentication", "sasl_password_file"}},
		{"redis", func() string { return s.config(t, s.kafkaPWFile, freeAddr(t), "http://127.0.0.1:1") },
			[]string{rules.EnvRedisPassword + "=" + testSecret("wrong-redis")}, []string{"redis", "refused the connection", "WRONGPASS", rules.EnvRedisPassword}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs syncBuffer
			cp := startChangepropEnv(t, ctx, &logs, tt.env, "run", "-config", tt.cfg())
			err := <-cp.done
			if err == nil || cp.cmd.ProcessState.ExitCode() != 1 {
				t.Fatalf("exit %v, want 1\n%s", err, logs.String())
			}
			for _, want := range tt.wants {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("the log lacks %q:\n%s", want, logs.String())
				}
			}
			if found := leaks(logs.String()); len(found) > 0 {
				t.Errorf("the log holds secrets:\n%s", strings.Join(found, "\n"))
			}
		})
	}
}
