package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"

	"changeprop/dispatch"
)

// ErrTopicNotFound is returned (wrapped, with the topic's name) by
// ReadTopic for a topic that does not exist.
var ErrTopicNotFound = errors.New("topic does not exist")

// ReaderConfig configures ReadTopic.
type ReaderConfig struct {
	Brokers string
	// Properties are librdkafka properties applied in order over the
	// defaults (e.g. the config's kafka.consumer).
	Properties []map[string]string
	// Topic is the topic to read.
	Topic string
	// Timeout bounds each metadata and watermark request; 0 means 10s.
	Timeout time.Duration
	Log     zerolog.Logger
}

// readerDefaults may be overridden by configuration. The group id is never
// joined (ReadTopic assigns partitions itself and commits nothing);
// librdkafka merely insists on one.
var readerDefaults = map[string]string{
	"group.id":            "changeprop-reader",
	"enable.metrics.push": "false",
	"client.id":           "changeprop",
	// If retention moves the log start past the first offset before it is
	// fetched, read what is left instead of jumping to the end.
	"auto.offset.reset": "earliest",
}

// readerForced are not overridable: nothing is committed, the end of each
// partition is reported, and asking about a topic never creates it.
var readerForced = map[string]string{
	"enable.auto.commit":       "false",
	"enable.auto.offset.store": "false",
	"enable.partition.eof":     "true",
	"allow.auto.create.topics": "false",
}

const defaultReaderTimeout = 10 * time.Second

// ReadTopic calls fn with every record of cfg.Topic from each partition's
// log start up to its high watermark at the time of the call, then
// returns: records produced after the call started are not read. It uses
// no consumer group (partitions are assigned, not subscribed) and commits
// nothing, so any number of readers may read the same topic.
//
// fn is called from the calling goroutine, in offset order within a
// partition; partitions are interleaved. An error from fn stops the read
// and is returned, wrapped with the record's coordinates. A topic that does
// not exist is an error wrapping ErrTopicNotFound; a topic whose partitions
// are all empty returns nil without calling fn. Under read_committed (the
// librdkafka default) records of aborted transactions are skipped and a
// partition ends at its last stable offset.
func ReadTopic(ctx context.Context, cfg ReaderConfig, fn func(dispatch.Message) error) error {
	topic := cfg.Topic
	if topic == "" {
		return errors.New("read topic: no topic given")
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = defaultReaderTimeout
	}
	cm := configMap(readerDefaults, cfg.Properties, withBrokers(readerForced, cfg.Brokers))
	c, err := ck.NewConsumer(cm)
	if err != nil {
		return fmt.Errorf("read topic %s: new consumer: %w", topic, err)
	}
	log := cfg.Log.With().Str("topic", topic).Logger()
	go forwardLogs(log, c.Logs())
	defer func() {
		if err := c.Close(); err != nil {
			log.Warn().Err(err).Msg("close reader")
		}
		closeLogs(c.Logs())
	}()

	ends, err := assignAll(ctx, c, topic, timeout)
	if err != nil {
		return err
	}
	if len(ends) == 0 {
		return nil
	}
	return readUntil(ctx, c, topic, ends, fn, log)
}

func withBrokers(forced map[string]string, brokers string) map[string]string {
	m := make(map[string]string, len(forced)+1)
	for k, v := range forced {
		m[k] = v
	}
	m["bootstrap.servers"] = brokers
	return m
}

// span is the part of a partition to read: [from, end).
type span struct{ from, end int64 }

// assignAll assigns every non-empty partition of topic at its log start and
// returns the high watermark of each, as of now.
func assignAll(ctx context.Context, c *ck.Consumer, topic string, timeout time.Duration) (map[int32]int64, error) {
	md, err := c.GetMetadata(&topic, false, timeoutMs(ctx, timeout))
	if err != nil {
		return nil, fmt.Errorf("read topic %s: metadata: %w", topic, err)
	}
	tm, ok := md.Topics[topic]
	if !ok {
		return nil, fmt.Errorf("read topic %s: %w", topic, ErrTopicNotFound)
	}
	switch tm.Error.Code() {
	case ck.ErrNoError:
	case ck.ErrUnknownTopicOrPart, ck.ErrUnknownTopic:
		return nil, fmt.Errorf("read topic %s: %w", topic, ErrTopicNotFound)
	default:
		return nil, fmt.Errorf("read topic %s: metadata: %w", topic, tm.Error)
	}
	if len(tm.Partitions) == 0 {
		return nil, fmt.Errorf("read topic %s: %w (no partitions)", topic, ErrTopicNotFound)
	}

	spans := make(map[int32]span, len(tm.Partitions))
	for _, p := range tm.Partitions {
		low, high, err := c.QueryWatermarkOffsets(topic, p.ID, timeoutMs(ctx, timeout))
		if err != nil {
			return nil, fmt.Errorf("read topic %s: watermarks of partition %d: %w", topic, p.ID, err)
		}
		if high > low {
			spans[p.ID] = span{from: low, end: high}
		}
	}
	if len(spans) == 0 {
		return nil, nil
	}
	parts := make([]int32, 0, len(spans))
	for p := range spans {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	tps := make([]ck.TopicPartition, 0, len(parts))
	ends := make(map[int32]int64, len(parts))
	for _, p := range parts {
		tps = append(tps, ck.TopicPartition{Topic: &topic, Partition: p, Offset: ck.Offset(spans[p].from)})
		ends[p] = spans[p].end
	}
	if err := c.Assign(tps); err != nil {
		return nil, fmt.Errorf("read topic %s: assign %d partitions: %w", topic, len(tps), err)
	}
	return ends, nil
}

// pollInterval is how long one Poll waits; ctx is checked between polls.
const pollInterval = 100 * time.Millisecond

// readUntil polls until every partition in ends (partition -> offset to stop
// before) is done: its record at end-1 was read, or the library reported the
// end of the partition (which also covers a log that ends in transaction
// markers, and the last stable offset under read_committed).
func readUntil(ctx context.Context, c *ck.Consumer, topic string, ends map[int32]int64, fn func(dispatch.Message) error, log zerolog.Logger) error {
	for len(ends) > 0 {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read topic %s: %d partitions unfinished: %w", topic, len(ends), context.Cause(ctx))
		}
		switch e := c.Poll(int(pollInterval / time.Millisecond)).(type) {
		case *ck.Message:
			p, off := e.TopicPartition.Partition, int64(e.TopicPartition.Offset)
			if e.TopicPartition.Error != nil {
				return fmt.Errorf("read topic %s: partition %d: %w", topic, p, e.TopicPartition.Error)
			}
			end, reading := ends[p]
			if !reading || off >= end {
				continue // produced after the call started
			}
			m := dispatch.Message{
				TopicPartition: dispatch.TopicPartition{Topic: topic, Partition: p},
				Offset:         off,
				Key:            e.Key,
				Value:          e.Value,
				Timestamp:      e.Timestamp,
			}
			if err := fn(m); err != nil {
				return fmt.Errorf("%s/%d@%d: %w", topic, p, off, err)
			}
			if off >= end-1 {
				delete(ends, p)
			}
		case ck.PartitionEOF:
			delete(ends, e.Partition)
		case ck.Error:
			switch {
			case e.IsFatal(), e.Code() == ck.ErrUnknownTopicOrPart, e.Code() == ck.ErrUnknownPartition:
				return fmt.Errorf("read topic %s: %w", topic, e)
			default:
				// Transport and broker errors: librdkafka retries them.
				log.Warn().Err(e).Msg("reader")
			}
		}
	}
	return nil
}

// timeoutMs is timeout, or less if ctx ends sooner, in milliseconds (at
// least 1).
func timeoutMs(ctx context.Context, timeout time.Duration) int {
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < timeout {
			timeout = left
		}
	}
	return max(1, int(timeout/time.Millisecond))
}
