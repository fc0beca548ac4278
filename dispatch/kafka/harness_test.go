package kafka_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"changeprop/dispatch"
	"changeprop/dispatch/kafka"
	"changeprop/internal/testkit"
	"changeprop/rules"
)

// newProducer is a librdkafka producer for the test's cluster.
func newProducer(t *testing.T, cfg *rules.Config) *kafka.Producer {
	t.Helper()
	p, err := kafka.NewProducer(kafka.ProducerConfig{
		Brokers:    cfg.Kafka.Brokers,
		Properties: cfg.ProducerProperties(),
		Log:        failureLog(t, "producer"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(5 * time.Second) })
	return p
}

// failureLog is a logger (info and up) whose lines the test prints, the
// last 300 of them, only when it fails.
func failureLog(t *testing.T, who string) zerolog.Logger {
	var buf testkit.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			t.Logf("%s log, last lines:\n%s", who, strings.Join(lines[max(0, len(lines)-300):], "\n"))
		}
	})
	return zerolog.New(&buf).Level(zerolog.InfoLevel).With().Timestamp().Logger()
}

// startRunner runs rule r of cfg against the cluster through librdkafka, as
// cmd/changeprop wires it, and returns a function that stops it and
// returns Run's error. The subscription is resolved every 500ms.
func startRunner(t *testing.T, cfg *rules.Config, r *rules.Rule, opts ...func(*dispatch.RunnerConfig)) (*dispatch.Runner, func() error) {
	t.Helper()
	src, err := kafka.NewConsumer(kafka.ConsumerConfig{
		Brokers:        cfg.Kafka.Brokers,
		GroupID:        cfg.ServiceName + "-" + r.Name,
		Properties:     cfg.ConsumerProperties(r),
		CommitInterval: cfg.Kafka.CommitInterval,
		Log:            failureLog(t, "consumer"),
	})
	if err != nil {
		t.Fatal(err)
	}
	rc := dispatch.RunnerConfig{
		Rule: r, Source: src,
		Sender:          dispatch.NewHTTPSender(dispatch.HTTPOptions{}),
		Producer:        newProducer(t, cfg),
		Names:           dispatch.NamesFor(cfg),
		UserAgent:       cfg.UserAgent,
		CommitInterval:  cfg.Kafka.CommitInterval,
		ShutdownTimeout: 30 * time.Second,
		TopicRefresh:    500 * time.Millisecond,
		Log:             failureLog(t, "runner"),
	}
	rc.Resolve = dispatch.Subscription(cfg, r)
	for _, o := range opts {
		o(&rc)
	}
	runner := dispatch.NewRunner(rc)
	return runner, runInBackground(t, runner.Run)
}

// runInBackground runs run on its own goroutine and returns a function
// that cancels its context and returns its error (once; later calls return
// the same error). The test's cleanup calls it too.
func runInBackground(t *testing.T, run func(context.Context) error) func() error {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-errc
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
