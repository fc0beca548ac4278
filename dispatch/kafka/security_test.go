package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"changeprop/dispatch/kafka"
	"changeprop/internal/testkit"
	"changeprop/rules"
)

// Users of the TLS+SASL cluster: one per mechanism changeprop supports.
var saslUsers = []testkit.SASLUser{
	{Mechanism: "SCRAM-SHA-512", User: "admin", Password: "kafka-admin-pw-5b1e"},
	{Mechanism: "SCRAM-SHA-256", User: "cp-scram256", Password: "kafka-scram256-pw-77ad"},
	{Mechanism: "SCRAM-SHA-512", User: "cp-scram512", Password: "kafka-scram512-pw-c3f0"},
	{Mechanism: "PLAIN", User: "cp-plain", Password: "kafka-plain-pw-19e4"},
}

// secureCluster is a kfake cluster that takes only TLS connections and
// SASL-authenticated clients.
func secureCluster(t *testing.T, topics map[string]int) (*testkit.Cluster, *testkit.CA) {
	t.Helper()
	ca, err := testkit.NewCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{
		Brokers: 1, Topics: topics, TLS: ca.Server, ClientTLS: ca.Client, SASL: saslUsers,
	})
	return cluster, ca
}

// secureConfig is a job rule's config for user u of the cluster, the
// password in a file (sasl_password_file).
func secureConfig(t *testing.T, cluster *testkit.Cluster, ca *testkit.CA, u testkit.SASLUser, password, target string) *rules.Config {
	t.Helper()
	pwFile := filepath.Join(t.TempDir(), "kafka-password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := rules.LoadEnv(fmt.Appendf(nil, `
service_name: cpjobqueue
kafka:
  brokers: %s
  properties:
    security.protocol: SASL_SSL
    sasl.mechanism: %s
    sasl.username: %s
    ssl.ca.location: %s
  sasl_password_file: %s
  consumer: {auto.offset.reset: earliest}
  commit_interval: 100ms
rules:
  job:
    topic: %s
    exec: {method: post, uri: '%s/rpc/RunSingleJob.php', body: '{{globals.message}}'}
`, cluster.Addr(), u.Mechanism, u.User, ca.CAFile, pwFile, jobTopic, target), rules.Environment{ReadFile: os.ReadFile})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestKafkaTLSAndSASL runs a job rule through librdkafka against a cluster
// that takes only TLS and SASL, once per mechanism (SCRAM-SHA-256,
// SCRAM-SHA-512, PLAIN): every job is posted, an event that is not JSON
// reaches the error topic through the producer, and the offsets are
// committed.
func TestKafkaTLSAndSASL(t *testing.T) {
	cluster, ca := secureCluster(t, map[string]int{jobTopic: 2})
	for i, u := range saslUsers[1:] {
		t.Run(u.Mechanism+"/"+u.User, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			sc := newScript(func(string, int) (int, http.Header) { return 200, nil })
			jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{Respond: sc.respond})
			cfg := secureConfig(t, cluster, ca, u, u.Password, jr.URL())
			// Each user's rule reads its own events: a group of its own.
			cfg.ServiceName = fmt.Sprintf("cpjobqueue%d", i)
			ids := []string{}
			var recs []testkit.Record
			for n := range 5 {
				id := fmt.Sprintf("%s-%d", u.User, n)
				ids = append(ids, id)
				recs = append(recs, testkit.Record{Topic: jobTopic, Partition: int32(n % 2),
					Value: fmt.Appendf(nil, `{"meta":{"id":%q,"stream":%q,"domain":"en.wikipedia.org"},"type":"t"}`, id, jobTopic)})
			}
			recs = append(recs, testkit.Record{Topic: jobTopic, Partition: 0, Value: []byte("not json " + u.User)})
			if err := cluster.Produce(ctx, recs...); err != nil {
				t.Fatal(err)
			}
			// Run's errors name why; the log is where librdkafka's land.
			r, stop := startRunner(t, cfg, cfg.Rules[0])
			waitFor(t, ctx, "every event finished", func() bool { return r.Stats().Finished() >= 6 })
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				if sc.count(id) != 1 {
					t.Errorf("job %s posted %d times, want 1", id, sc.count(id))
				}
			}
			errs, err := cluster.ReadAll(ctx, cfg.ServiceName+".error")
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, e := range errs {
				found = found || strings.Contains(string(e.Value), "not json "+u.User)
			}
			if !found {
				t.Error("the unusable event's error event is not on the error topic")
			}
			committed, err := cluster.Committed(ctx, cfg.ServiceName+"-job", jobTopic)
			if err != nil {
				t.Fatal(err)
			}
			if committed[0] == 0 && committed[1] == 0 {
				t.Errorf("nothing committed: %v", committed)
			}
		})
	}
}

// TestKafkaRefusalIsClear: a wrong password, or a CA the brokers'
// certificate is not signed by, makes Producer.Check fail at once with
// ErrRefused and librdkafka's reason; the right ones pass it.
func TestKafkaRefusalIsClear(t *testing.T) {
	cluster, ca := secureCluster(t, map[string]int{jobTopic: 1})
	other, err := testkit.NewCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	u := saslUsers[2]
	tests := []struct {
		name     string
		password string
		ca       *testkit.CA
		want     string // in the error; "" for success
	}{
		{"right credentials", u.Password, ca, ""},
		{"wrong password", "not-the-password", ca, "uthentication"},
		{"untrusted certificate", u.Password, other, "SSL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cfg := secureConfig(t, cluster, tt.ca, u, tt.password, "http://127.0.0.1:1")
			var logs testkit.Buffer
			p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: cfg.Kafka.Brokers, Properties: cfg.ProducerProperties(), Log: zerolog.New(&logs)})
			if err != nil {
				t.Fatal(err)
			}
			err = p.Check(ctx)
			p.Close(time.Second)
			if strings.Contains(logs.String(), tt.password) || err != nil && strings.Contains(err.Error(), tt.password) {
				t.Errorf("the password is in the log or the error:\n%s\n%v", logs.String(), err)
			}
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Check = %v, want nil", err)
			case tt.want != "" && (!errors.Is(err, kafka.ErrRefused) || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Check = %v, want ErrRefused naming %q", err, tt.want)
			case ctx.Err() != nil:
				t.Fatal("Check waited for its context instead of failing at once")
			}
			if err != nil {
				t.Logf("Check: %v", err)
			}
		})
	}
}
