package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"

	"changeprop/dispatch"
	"changeprop/dispatch/kafka"
	"changeprop/rules"
)

// ruleRunner is what the service runs for one rule: a dispatch.Runner, or
// a dispatch.Repartitioner for a partitioner rule.
type ruleRunner interface {
	Run(ctx context.Context) error
	Name() string
	Stats() *dispatch.Stats
	Subscribed() bool
	Close() error
}

// serviceOption changes how newService wires the rules.
type serviceOption func(*serviceOptions)

type serviceOptions struct {
	createTopics bool
	metrics      *dispatch.Metrics
	queueKB      int // each consumer's share of the prefetch budget, set by newService
}

// withCreateTopics makes partitioner rules create their partitioned
// topics (and the retry topics of those) when missing (`run
// -create-topics`).
func withCreateTopics(on bool) serviceOption {
	return func(o *serviceOptions) { o.createTopics = on }
}

// withMetrics records the rules' metrics.
func withMetrics(m *dispatch.Metrics) serviceOption {
	return func(o *serviceOptions) { o.metrics = m }
}

// initTimeout bounds InitTransactions of a partitioner's producer.
const initTimeout = 30 * time.Second

// newPartitioner wires a partitioner rule: a consumer in group
// <service_name>-<rule> and a transactional producer whose id is the group
// and the instance (transactionalInstance).
func newPartitioner(cfg *rules.Config, r *rules.Rule, opts serviceOptions, log zerolog.Logger) (*dispatch.Repartitioner, error) {
	group := cfg.ServiceName + "-" + r.Name
	ctx, cancel := context.WithTimeout(context.Background(), initTimeout)
	defer cancel()
	src, err := kafka.NewTxn(ctx, kafka.TxnConfig{
		Brokers:            cfg.Kafka.Brokers,
		GroupID:            group,
		TransactionalID:    group + "-" + transactionalInstance(cfg, r),
		ConsumerProperties: cfg.ConsumerProperties(r),
		ProducerProperties: cfg.ProducerProperties(),
		QueueKBytes:        opts.queueKB,
		Log:                log.With().Str("rule", r.Name).Logger(),
	})
	if err != nil {
		return nil, err
	}
	return dispatch.NewRepartitioner(dispatch.RepartitionerConfig{
		Rule:            r,
		Resolve:         dispatch.PartitionerSubscription(cfg, r),
		TopicRefresh:    topicRefresh,
		Source:          src,
		Names:           dispatch.NamesFor(cfg),
		CreateTopics:    opts.createTopics,
		CommitInterval:  cfg.Kafka.CommitInterval,
		MaxEventBytes:   cfg.Limits.MaxEventBytes,
		MaxProduceBytes: maxProduceBytes(cfg),
		Log:             log,
	}), nil
}

// transactionalInstance names this process among the group's members, the
// same after a restart: the consumer's group.instance.id when set (static
// membership), else the host name (a StatefulSet pod's name is stable).
// A restart that changes it still loses nothing: the dead instance's open
// transaction is aborted at transaction.timeout.ms, holding back
// read_committed consumers of the partitioned topic until then.
func transactionalInstance(cfg *rules.Config, r *rules.Rule) string {
	if id := r.Consumer["group.instance.id"]; id != "" {
		return id
	}
	if id := cfg.Kafka.Consumer["group.instance.id"]; id != "" {
		return id
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return fmt.Sprintf("pid%d", os.Getpid())
}

// all lists every rule's runner, partitioners included.
func (s *service) all() []ruleRunner {
	out := make([]ruleRunner, 0, len(s.runners)+len(s.partitioners))
	for _, r := range s.runners {
		out = append(out, r)
	}
	for _, p := range s.partitioners {
		out = append(out, p)
	}
	return out
}
