package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"changeprop/dispatch"
	"changeprop/dispatch/kafka"
	"changeprop/rules"
)

// service is every rule's Runner, wired to Kafka and one HTTP sender.
type service struct {
	cfg     *rules.Config
	log     zerolog.Logger
	sender  *dispatch.HTTPSender
	runners []*dispatch.Runner
}

// newService creates a consumer per rule, in group <service_name>-<rule>.
func newService(cfg *rules.Config, log zerolog.Logger) (*service, error) {
	s := &service{cfg: cfg, log: log, sender: dispatch.NewHTTPSender(dispatch.HTTPOptions{})}
	for _, r := range cfg.Rules {
		topics, excluded := subscription(cfg, r)
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
			Topics:          topics,
			ExcludeTopics:   excluded,
			Source:          src,
			Sender:          s.sender,
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
		r.Close()
	}
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
	return errors.Join(errs...)
}

// subscription is the rule's librdkafka subscription with the dc prefix
// applied: literal topic names, and "^..." regexes for topics written
// /regex/. Excluded topics come back prefixed too.
func subscription(cfg *rules.Config, r *rules.Rule) (topics, excluded []string) {
	for _, t := range r.Topics {
		if t.Regex == nil {
			topics = append(topics, cfg.Topic(t.Name))
			continue
		}
		src := strings.TrimPrefix(t.Regex.String(), "^")
		prefix := ""
		if cfg.DC != "" {
			prefix = regexp.QuoteMeta(cfg.DC + ".")
		}
		topics = append(topics, "^"+prefix+src)
	}
	for _, t := range r.ExcludeTopics {
		excluded = append(excluded, cfg.Topic(t))
	}
	return topics, excluded
}
