package kafka

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"

	"changeprop/dispatch"
)

// ProducerConfig configures the producer that writes everything changeprop
// produces.
type ProducerConfig struct {
	Brokers string
	// Properties are librdkafka properties applied over the defaults (the
	// config's kafka.producer).
	Properties []map[string]string
	Log        zerolog.Logger
}

var producerDefaults = map[string]string{
	"enable.idempotence":  "true",
	"acks":                "all",
	"linger.ms":           "5",
	"compression.type":    "snappy",
	"enable.metrics.push": "false",
	"client.id":           "changeprop",
}

// Producer writes messages and reports each one's acknowledgement. It is
// safe for concurrent use.
type Producer struct {
	p    *ck.Producer
	log  zerolog.Logger
	done chan struct{}
	// denied is the last authentication or TLS error the client reported
	// (check.go).
	denied atomic.Pointer[ck.Error]
	// fatal is closed when the client reports a fatal error (an idempotent
	// producer that lost its sequence): every produce fails from then on.
	fatal     chan struct{}
	fatalOnce sync.Once
	fatalErr  atomic.Pointer[ck.Error]
}

// Fatal is closed once the producer has failed for good; FatalError says
// why. The service stops then: what was not produced is not committed.
func (p *Producer) Fatal() <-chan struct{} { return p.fatal }

// FatalError returns the fatal error (wrapping dispatch.ErrFatal), or nil.
// It asks the client when none was reported yet: a failed delivery may be
// reported before the error event.
func (p *Producer) FatalError() error {
	if e := p.fatalErr.Load(); e != nil {
		return fmt.Errorf("%w: %w", dispatch.ErrFatal, *e)
	}
	if err := p.p.GetFatalError(); err != nil {
		if e, ok := err.(ck.Error); ok {
			p.setFatal(e)
			return fmt.Errorf("%w: %w", dispatch.ErrFatal, e)
		}
	}
	return nil
}

func (p *Producer) setFatal(e ck.Error) {
	p.fatalOnce.Do(func() {
		p.fatalErr.Store(&e)
		close(p.fatal)
	})
}

// NewProducer creates an idempotent (acks=all) producer.
func NewProducer(cfg ProducerConfig) (*Producer, error) {
	cm := configMap(producerDefaults, cfg.Properties, map[string]string{
		"bootstrap.servers": cfg.Brokers,
	})
	producerBinding(cm)
	p, err := ck.NewProducer(cm)
	if err != nil {
		return nil, fmt.Errorf("new producer: %w", err)
	}
	pr := &Producer{p: p, log: cfg.Log, done: make(chan struct{}), fatal: make(chan struct{})}
	go forwardLogs(cfg.Log, p.Logs())
	go pr.reports()
	return pr, nil
}

// reports drains the delivery reports, always: Flush counts unread reports
// as outstanding.
func (p *Producer) reports() {
	defer close(p.done)
	for ev := range p.p.Events() {
		switch e := ev.(type) {
		case *ck.Message:
			if cb, ok := e.Opaque.(func(error)); ok {
				err := e.TopicPartition.Error
				if err != nil && p.FatalError() != nil {
					err = fmt.Errorf("%w: %w", dispatch.ErrFatal, err)
				}
				cb(err)
			}
		case ck.Error:
			if refusal(e) {
				p.denied.Store(&e)
			}
			if e.IsFatal() {
				p.setFatal(e)
				p.log.Error().Err(e).Msg("producer failed for good")
				continue
			}
			p.log.Warn().Err(e).Msg("producer")
		}
	}
}

// ProduceAsync queues a message; done is called with its acknowledgement
// (nil) or failure from the delivery-report goroutine. A partition < 0 lets
// the partitioner choose from the key.
func (p *Producer) ProduceAsync(topic string, partition int32, key, value []byte, done func(error)) error {
	if partition < 0 {
		partition = ck.PartitionAny
	}
	err := p.p.Produce(&ck.Message{
		TopicPartition: ck.TopicPartition{Topic: &topic, Partition: partition},
		Key:            key,
		Value:          value,
		Opaque:         done,
	}, nil)
	if err != nil {
		if fe := p.FatalError(); fe != nil {
			return fmt.Errorf("produce to %s: %w", topic, fe)
		}
		return fmt.Errorf("produce to %s: %w", topic, err)
	}
	return nil
}

// Produce writes one message and waits until it is acknowledged or ctx ends.
func (p *Producer) Produce(ctx context.Context, topic string, key, value []byte) error {
	res := make(chan error, 1)
	if err := p.ProduceAsync(topic, -1, key, value, func(err error) { res <- err }); err != nil {
		return err
	}
	select {
	case err := <-res:
		if err != nil {
			return fmt.Errorf("produce to %s: %w", topic, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("produce to %s: %w", topic, context.Cause(ctx))
	}
}

// Flush waits up to timeout for queued messages to be delivered.
func (p *Producer) Flush(timeout time.Duration) {
	if n := p.p.Flush(int(timeout / time.Millisecond)); n > 0 {
		p.log.Warn().Int("unsent", n).Msg("producer flushed with messages unsent")
	}
}

// Close waits up to timeout for queued messages, then closes the client.
func (p *Producer) Close(timeout time.Duration) {
	if n := p.p.Flush(int(timeout / time.Millisecond)); n > 0 {
		p.log.Warn().Int("unsent", n).Msg("producer closed with messages unsent")
	}
	p.p.Close()
	closeLogs(p.p.Logs())
	<-p.done
}
