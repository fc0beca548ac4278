package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"changeprop/breaker"
	"changeprop/dispatch"
	"changeprop/dispatch/kafka"
	"changeprop/rules"
)

// service is every rule's Runner, wired to Kafka and one HTTP sender.
type service struct {
	cfg      *rules.Config
	log      zerolog.Logger
	sender   *dispatch.HTTPSender
	producer *kafka.Producer
	// failed is the producer's failure for good (the producer; a test's
	// own otherwise).
	failed interface {
		Fatal() <-chan struct{}
		FatalError() error
	}
	stores   *stores
	breakers *breakerSets
	runners  []*dispatch.Runner
	// partitioners run the partitioner rules (partitioner.go).
	partitioners []*dispatch.Repartitioner
}

// topicRefresh is how often rules look for new topics (their retry topics,
// topics matching a /regex/).
const topicRefresh = 30 * time.Second

// newService creates the producer and a consumer per rule, in group
// <service_name>-<rule>.
func newService(cfg *rules.Config, log zerolog.Logger, options ...serviceOption) (*service, error) {
	opts := serviceOptions{queueKB: kafka.QueueKBytesFor(consumers(cfg))}
	for _, o := range options {
		o(&opts)
	}
	producer, err := kafka.NewProducer(kafka.ProducerConfig{
		Brokers:    cfg.Kafka.Brokers,
		Properties: cfg.ProducerProperties(),
		Log:        log.With().Str("client", "producer").Logger(),
	})
	if err != nil {
		return nil, err
	}
	if err := checkKafka(cfg, producer, log); err != nil {
		producer.Close(time.Second)
		return nil, err
	}
	sender := dispatch.NewHTTPSender(dispatch.HTTPOptions{
		MaxResponseBody:        cfg.Limits.MaxResponseBodyBytes,
		MaxResponseHeaderBytes: cfg.Limits.MaxResponseHeaderBytes,
	})
	st, err := newStores(cfg, log)
	if err != nil {
		producer.Close(time.Second)
		return nil, err
	}
	s := &service{cfg: cfg, log: log, sender: sender, producer: producer, failed: producer, stores: st}
	names := dispatch.NamesFor(cfg)
	breakers := newBreakers(cfg, log)
	s.breakers = breakers
	for _, r := range cfg.Rules {
		if r.Partition != nil {
			// A partitioner rule forwards events (partitioner.go).
			p, err := newPartitioner(cfg, r, opts, log)
			if err != nil {
				s.closeUnstarted()
				return nil, fmt.Errorf("rule %s: %w", r.Name, err)
			}
			s.partitioners = append(s.partitioners, p)
			continue
		}
		// A purge rule runs one instance per cache (rules.Rule.Instances).
		for _, r := range r.Instances() {
			runner, err := s.newRunner(cfg, r, names, opts)
			if err != nil {
				s.closeUnstarted()
				return nil, fmt.Errorf("rule %s: %w", r.Name, err)
			}
			s.runners = append(s.runners, runner)
		}
	}
	return s, nil
}

// consumers counts the consumer-group members the service runs: one per
// rule, one per cache of a purge rule. They share the prefetch budget
// (kafka.QueueKBytesFor).
func consumers(cfg *rules.Config) int {
	n := 0
	for _, r := range cfg.Rules {
		if r.Partition != nil {
			n++
			continue
		}
		n += len(r.Instances())
	}
	return n
}

// newRunner is the Runner of rule r, in group <service_name>-<rule>.
func (s *service) newRunner(cfg *rules.Config, r *rules.Rule, names dispatch.Names, opts serviceOptions) (*dispatch.Runner, error) {
	src, err := kafka.NewConsumer(kafka.ConsumerConfig{
		Brokers:        cfg.Kafka.Brokers,
		GroupID:        cfg.ServiceName + "-" + r.Name,
		Properties:     cfg.ConsumerProperties(r),
		CommitInterval: cfg.Kafka.CommitInterval,
		QueueKBytes:    opts.queueKB,
		Log:            s.log.With().Str("rule", r.Name).Logger(),
	})
	if err != nil {
		return nil, err
	}
	return dispatch.NewRunner(dispatch.RunnerConfig{
		Rule:            r,
		Resolve:         dispatch.Subscription(cfg, r),
		TopicRefresh:    topicRefresh,
		Source:          src,
		Sender:          s.sender,
		Producer:        s.producer,
		Breakers:        s.breakers.forRule(r),
		Dedupe:          s.stores.dedupe,
		Metrics:         opts.metrics,
		AllowHost:       allowHost(cfg),
		Limits:          cfg.Limits,
		MaxProduceBytes: maxProduceBytes(cfg),
		Limiter:         s.stores.limiter,
		Names:           names,
		Partitioned:     dispatch.PartitionedStreams(cfg),
		UserAgent:       cfg.UserAgent,
		CommitInterval:  cfg.Kafka.CommitInterval,
		ShutdownTimeout: cfg.ShutdownTimeout,
		Log:             s.log,
	}), nil
}

// startCheck bounds how long the start waits for Kafka's and Redis's first
// answer.
const startCheck = 5 * time.Second

// checkKafka fails the start when the brokers refuse the credentials or the
// TLS handshake; brokers that do not answer yet are only logged, since the
// clients keep trying.
func checkKafka(cfg *rules.Config, p *kafka.Producer, log zerolog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), startCheck)
	defer cancel()
	err := p.Check(ctx)
	switch {
	case errors.Is(err, kafka.ErrRefused):
		return fmt.Errorf("kafka %s: %w (check kafka.properties security.protocol, sasl.* and ssl.*, and the password: kafka.sasl_password_file or %s)",
			cfg.Kafka.Brokers, err, rules.EnvKafkaSASLPassword)
	case err != nil:
		log.Warn().Err(err).Msg("kafka does not answer yet; starting anyway, the clients keep trying")
	}
	return nil
}

func (s *service) closeUnstarted() {
	for _, r := range s.all() {
		_ = r.Close()
	}
	s.producer.Close(5 * time.Second)
	s.stores.close()
}

// stopSlack is how long past shutdown_timeout the service waits for its
// rules to stop: a Runner takes at most 10 s more (5 s for cancelled jobs
// to report, 5 s for the last commit and close, dispatch's CloseTimeout);
// a partitioner's transaction in progress is bounded only by its own 30 s.
const stopSlack = 15 * time.Second

// run runs every rule until ctx ends, or until one rule fails, which stops
// the others too. It returns after every rule has drained and committed.
func (s *service) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	all := s.all()
	errs := make([]error, len(all))
	stopped := make(chan int, len(all))
	for i, r := range all {
		go func() {
			if err := r.Run(ctx); err != nil {
				s.log.Error().Err(err).Str("rule", r.Name()).Msg("rule stopped")
				errs[i] = err
				cancel()
			}
			stopped <- i
		}()
	}
	running := len(all)
	done := make([]bool, len(all))
	var fatal error
	for running > 0 && ctx.Err() == nil {
		select {
		case i := <-stopped:
			done[i] = true
			running--
		case <-s.failed.Fatal():
			// No retry, error or produced event can be written any more:
			// stop, so that a restart gets a new producer. What was not
			// produced is not committed and is read again.
			fatal = s.failed.FatalError()
			s.log.Error().Err(fatal).Msg("the producer failed for good; stopping")
			cancel()
		case <-ctx.Done():
		}
	}
	// Every rule drains within shutdown_timeout and closes within its own
	// bound; a rule still running past that (a librdkafka call that waits
	// for brokers that are gone) is left behind rather than holding the
	// process until it is killed.
	var timedOut error
	deadline := time.NewTimer(s.cfg.ShutdownTimeout + stopSlack)
	defer deadline.Stop()
	for running > 0 {
		select {
		case i := <-stopped:
			done[i] = true
			running--
			continue
		case <-deadline.C:
		}
		var left []string
		for i, r := range all {
			if !done[i] {
				left = append(left, r.Name())
			}
		}
		s.log.Error().Strs("rules", left).Dur("waited", s.cfg.ShutdownTimeout+stopSlack).
			Msg("rules did not stop in time (is Kafka reachable?); exiting without them: what they did not commit will be read again")
		timedOut = fmt.Errorf("rules %v did not stop within %v", left, s.cfg.ShutdownTimeout+stopSlack)
		break
	}
	s.sender.CloseIdle()
	if timedOut != nil {
		// A rule left behind may still use the producer and the stores:
		// flush what is queued, close nothing, the process is exiting.
		s.producer.Flush(10 * time.Second)
	} else {
		s.producer.Close(10 * time.Second)
		s.stores.close()
	}
	// Only the rules that stopped: one left behind may still write its slot.
	out := []error{fatal, timedOut}
	for i, err := range errs {
		if done[i] {
			out = append(out, err)
		}
	}
	return errors.Join(out...)
}

// breakerSets holds the circuit breakers: one Set for the rules that use
// the top-level settings, one per rule that overrides them.
type breakerSets struct {
	shared *breaker.Set
	byRule map[string]*breaker.Set
	all    []*breaker.Set
}

func newBreakers(cfg *rules.Config, log zerolog.Logger) *breakerSets {
	onChange := breaker.OnStateChange(func(dest string, from, to breaker.State) {
		log.Warn().Str("destination", dest).Str("from", from.String()).Str("to", to.String()).Msg("circuit breaker")
	})
	b := &breakerSets{byRule: map[string]*breaker.Set{}}
	b.shared = breaker.NewSet(breakerSettings(cfg.Breaker), onChange)
	b.all = append(b.all, b.shared)
	for _, base := range cfg.Rules {
		own := base.Breaker
		own.Key = nil
		if own != cfg.Breaker || base.Breaker.Key != nil {
			for _, r := range base.Instances() {
				set := breaker.NewSet(breakerSettings(r.Breaker), onChange)
				b.byRule[r.Name] = set
				b.all = append(b.all, set)
			}
		}
	}
	return b
}

func (b *breakerSets) forRule(r *rules.Rule) *breaker.Set {
	if s, ok := b.byRule[r.Name]; ok {
		return s
	}
	return b.shared
}

func breakerSettings(b rules.Breaker) breaker.Settings {
	return breaker.Settings{
		FailureRatio:     b.FailureRatio,
		MinRequests:      b.MinRequests,
		Interval:         b.Interval,
		OpenTimeout:      b.OpenTimeout,
		HalfOpenRequests: b.HalfOpenRequests,
	}
}

// maxProduceBytes is the largest retry or error event the producer takes:
// its message.max.bytes less room for librdkafka's framing (64 KiB, or a
// quarter of a smaller limit), or dispatch's default.
func maxProduceBytes(cfg *rules.Config) int {
	v := ""
	for _, l := range cfg.ProducerProperties() {
		if s, ok := l["message.max.bytes"]; ok {
			v = s
		}
	}
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return n - min(64<<10, n/4)
	}
	return dispatch.DefaultMaxProduceBytes
}

// allowHost is the allowed_hosts check, or nil when every host is allowed.
func allowHost(cfg *rules.Config) func(string) bool {
	if len(cfg.AllowedHosts) == 0 {
		return nil
	}
	return cfg.HostAllowed
}
