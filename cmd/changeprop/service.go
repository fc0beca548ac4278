package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

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
	runners  []*dispatch.Runner
}

// topicRefresh is how often rules look for new topics (their retry topics,
// topics matching a /regex/).
const topicRefresh = 30 * time.Second

// newService creates the producer and a consumer per rule, in group
// <service_name>-<rule>.
func newService(cfg *rules.Config, log zerolog.Logger) (*service, error) {
	producer, err := kafka.NewProducer(kafka.ProducerConfig{
		Brokers:    cfg.Kafka.Brokers,
		Properties: []map[string]string{cfg.Kafka.Producer},
		Log:        log.With().Str("client", "producer").Logger(),
	})
	if err != nil {
		return nil, err
	}
	s := &service{cfg: cfg, log: log, sender: dispatch.NewHTTPSender(dispatch.HTTPOptions{}), producer: producer}
	names := dispatch.Names{ServiceName: cfg.ServiceName, DC: cfg.DC}
	for _, r := range cfg.Rules {
		group := cfg.ServiceName + "-" + r.Name
		src, err := kafka.NewConsumer(kafka.ConsumerConfig{
			Brokers:    cfg.Kafka.Brokers,
			GroupID:    group,
			Properties: []map[string]string{cfg.Kafka.Consumer, r.Consumer},
			Log:        log.With().Str("rule", r.Name).Logger(),
		})
		if err != nil {
			s.closeUnstarted()
			return nil, fmt.Errorf("rule %s: %w", r.Name, err)
		}
		s.runners = append(s.runners, dispatch.NewRunner(dispatch.RunnerConfig{
			Rule:            r,
			Resolve:         dispatch.Subscription(cfg, r),
			TopicRefresh:    topicRefresh,
			Source:          src,
			Sender:          s.sender,
			Producer:        producer,
			Names:           names,
			UserAgent:       cfg.UserAgent,
			CommitInterval:  cfg.Kafka.CommitInterval,
			ShutdownTimeout: cfg.ShutdownTimeout,
			Log:             log,
		}))
	}
	return s, nil
}

func (s *service) closeUnstarted() {
	for _, r := range s.runners {
		_ = r.Close()
	}
	s.producer.Close(5 * time.Second)
}

// run runs every rule until ctx ends, or until one rule fails, which stops
// the others too. It returns after every rule has drained and committed.
func (s *service) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(s.runners))
	for i, r := range s.runners {
		wg.Go(func() {
			if err := r.Run(ctx); err != nil {
				s.log.Error().Err(err).Str("rule", r.Name()).Msg("rule stopped")
				errs[i] = err
				cancel()
			}
		})
	}
	wg.Wait()
	s.sender.CloseIdle()
	s.producer.Close(10 * time.Second)
	return errors.Join(errs...)
}
