package kafka

import (
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"

	"changeprop/dispatch"
)

// ConsumerConfig configures one consumer-group member.
type ConsumerConfig struct {
	Brokers string
	GroupID string
	// Properties are librdkafka properties applied in order over the
	// defaults (e.g. the config's kafka.consumer, then the rule's consumer).
	Properties []map[string]string
	// CommitInterval, when set, makes Store hand offsets to librdkafka,
	// which commits them in the background this often (and on a revoke
	// and Close). Zero means no background commits: Store commits
	// synchronously, and a transactional consumer commits through its
	// producer.
	CommitInterval time.Duration
	// QueueKBytes, when positive, replaces the default
	// queued.max.messages.kbytes (1024) beneath Properties: the share of
	// the process's prefetch budget (QueueKBytesFor).
	QueueKBytes int
	Log         zerolog.Logger
}

// PrefetchBudgetKB is what the consumers of one process prefetch together
// by default: each gets an equal share, at least 256 KB and at most the
// 1 MB that keeps one busy rule's pipeline full. With 30 rules the shares
// are 256 KB (25 MB less resident than 1 MB each, the same jobs/s:
// docs/benchmarks.md).
const PrefetchBudgetKB = 8 << 10

// QueueKBytesFor is a consumer's default queued.max.messages.kbytes when
// the process runs n consumers.
func QueueKBytesFor(n int) int {
	return min(1024, max(256, PrefetchBudgetKB/max(n, 1)))
}

// consumerDefaults may be overridden by configuration.
var consumerDefaults = map[string]string{
	"partition.assignment.strategy": "cooperative-sticky",
	"enable.metrics.push":           "false",
	"session.timeout.ms":            "45000",
	"max.poll.interval.ms":          "300000",
	"client.id":                     "changeprop",
	// Partitioned topics are written in transactions: read only what
	// was committed.
	"isolation.level": "read_committed",
	// A resumed partition waits for the fetch in flight; keep that short
	// so that pausing a partition (a full backlog, an open breaker) costs
	// little when it resumes.
	"fetch.wait.max.ms": "100",
	// Bound what each consumer prefetches (librdkafka's defaults allow
	// 64 MB and 100,000 messages per consumer, and there is one consumer
	// per rule): a megabyte keeps one busy rule's pipeline full; with many
	// rules each gets a share of PrefetchBudgetKB instead (QueueKBytes).
	// When the rule is
	// busy the runner stops taking messages and this queue fills; fetching
	// resumes 10ms after it has room again (the default waits a second).
	"queued.max.messages.kbytes": "1024",
	"queued.min.messages":        "10000",
	// A fetch response stays in memory while any of its messages does:
	// bound each (after a 30-rule drain the process kept 167 MB resident
	// with 4 MB fetches, 125 MB with these; docs/benchmarks.md).
	// fetch.max.bytes may not be below message.max.bytes.
	"fetch.max.bytes":           "1048576",
	"max.partition.fetch.bytes": "262144",
	"fetch.queue.backoff.ms":    "10",
}

// Consumer is a dispatch.Source over a librdkafka consumer. Like the Source
// contract says, it is used from one goroutine only.
type Consumer struct {
	c          *ck.Consumer
	rl         dispatch.RebalanceListener
	log        zerolog.Logger
	tps        []ck.TopicPartition // scratch for Pause/Resume/Commit
	closed     bool
	background bool // librdkafka commits stored offsets (CommitInterval)
}

// NewConsumer creates the client; it joins the group on Subscribe.
func NewConsumer(cfg ConsumerConfig) (*Consumer, error) {
	c, err := ck.NewConsumer(consumerConfigMap(cfg))
	if err != nil {
		return nil, fmt.Errorf("new consumer for group %s: %w", cfg.GroupID, err)
	}
	log := cfg.Log.With().Str("group", cfg.GroupID).Logger()
	go forwardLogs(log, c.Logs())
	return &Consumer{c: c, log: log, background: cfg.CommitInterval > 0}, nil
}

// consumerConfigMap is the client's configuration: the defaults (with
// QueueKBytes), the Properties over them, and what dispatch needs.
func consumerConfigMap(cfg ConsumerConfig) *ck.ConfigMap {
	forced := map[string]string{
		"bootstrap.servers": cfg.Brokers,
		"group.id":          cfg.GroupID,
		// Only offsets that dispatch stores, those up to finished events,
		// are committed: by dispatch itself, or by librdkafka's background
		// commit of the stored offsets.
		"enable.auto.commit":       "false",
		"enable.auto.offset.store": "false",
	}
	if cfg.CommitInterval > 0 {
		forced["enable.auto.commit"] = "true"
		forced["auto.commit.interval.ms"] = strconv.FormatInt(max(cfg.CommitInterval.Milliseconds(), 1), 10)
	}
	defaults := consumerDefaults
	if cfg.QueueKBytes > 0 {
		defaults = maps.Clone(consumerDefaults)
		defaults["queued.max.messages.kbytes"] = strconv.Itoa(cfg.QueueKBytes)
	}
	return configMap(defaults, cfg.Properties, forced)
}

// Subscribe implements dispatch.Source.
func (c *Consumer) Subscribe(topics []string, rl dispatch.RebalanceListener) error {
	c.rl = rl
	if len(topics) == 0 {
		return c.c.Unsubscribe()
	}
	return c.c.SubscribeTopics(topics, c.rebalance)
}

// Topics implements dispatch.Source with a metadata request. Internal
// topics (those starting with "__") are left out.
func (c *Consumer) Topics(timeout time.Duration) ([]string, error) {
	md, err := c.c.GetMetadata(nil, true, int(timeout/time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	out := make([]string, 0, len(md.Topics))
	for name, t := range md.Topics {
		if strings.HasPrefix(name, "__") || t.Error.Code() != ck.ErrNoError {
			continue
		}
		out = append(out, name)
	}
	return out, nil
}

// rebalance runs inside Poll (or Close). New partitions are assigned here
// (incrementally under the cooperative protocol) and resumed before the
// listener hears of them: librdkafka keeps a partition's pause across a
// revoke and a new assignment, so a partition the Runner had paused
// before it went would come back paused, and never be read, while the
// Runner's fresh state says it is not. Revoked partitions are told to the
// listener first; then the library applies the change.
func (c *Consumer) rebalance(kc *ck.Consumer, ev ck.Event) error {
	if c.rl == nil {
		return nil
	}
	switch e := ev.(type) {
	case ck.AssignedPartitions:
		var err error
		if kc.GetRebalanceProtocol() == "COOPERATIVE" {
			err = kc.IncrementalAssign(e.Partitions)
		} else {
			err = kc.Assign(e.Partitions)
		}
		if err != nil {
			c.log.Warn().Err(err).Int("partitions", len(e.Partitions)).Msg("assign")
		}
		if err := kc.Resume(e.Partitions); err != nil {
			c.log.Warn().Err(err).Int("partitions", len(e.Partitions)).Msg("resume assigned partitions")
		}
		c.rl.Assigned(fromKafka(e.Partitions))
	case ck.RevokedPartitions:
		c.rl.Revoked(fromKafka(e.Partitions), kc.AssignmentLost())
	}
	return nil
}

// Poll implements dispatch.Source.
func (c *Consumer) Poll(timeout time.Duration) (*dispatch.Message, error) {
	switch e := c.c.Poll(int(timeout / time.Millisecond)).(type) {
	case *ck.Message:
		if e.TopicPartition.Error != nil {
			return nil, fmt.Errorf("fetch %s/%d: %w", topicName(e.TopicPartition), e.TopicPartition.Partition, e.TopicPartition.Error)
		}
		return &dispatch.Message{
			TopicPartition: dispatch.TopicPartition{Topic: topicName(e.TopicPartition), Partition: e.TopicPartition.Partition},
			Offset:         int64(e.TopicPartition.Offset),
			Key:            e.Key,
			Value:          e.Value,
			Timestamp:      e.Timestamp,
		}, nil
	case ck.Error:
		if e.IsFatal() {
			return nil, fmt.Errorf("%w: %w", dispatch.ErrFatal, e)
		}
		return nil, e
	default:
		return nil, nil
	}
}

// Pause implements dispatch.Source.
func (c *Consumer) Pause(tps []dispatch.TopicPartition) error {
	return c.c.Pause(c.toKafka(tps))
}

// Resume implements dispatch.Source.
func (c *Consumer) Resume(tps []dispatch.TopicPartition) error {
	return c.c.Resume(c.toKafka(tps))
}

// Commit implements dispatch.Source: a synchronous commit that fails if any
// partition's commit failed. With background commits the offsets are
// stored first: librdkafka commits the stored offsets again when the
// client closes, and must not put an older one back.
func (c *Consumer) Commit(offsets []dispatch.Offset) error {
	list := offsetList(offsets)
	if c.background {
		if res, err := c.c.StoreOffsets(list); err != nil {
			return fmt.Errorf("store offsets of %d partitions: %w", len(offsets), err)
		} else if err := firstError("store offset", res); err != nil {
			return err
		}
	}
	res, err := c.c.CommitOffsets(list)
	if err != nil {
		return fmt.Errorf("commit %d partitions: %w", len(offsets), err)
	}
	return firstError("commit", res)
}

// Store implements dispatch.Source: with a CommitInterval the offsets are
// stored in the client, which commits them in the background; without,
// they are committed at once.
func (c *Consumer) Store(offsets []dispatch.Offset) error {
	if !c.background {
		return c.Commit(offsets)
	}
	res, err := c.c.StoreOffsets(offsetList(offsets))
	if err != nil {
		return fmt.Errorf("store offsets of %d partitions: %w", len(offsets), err)
	}
	return firstError("store offset", res)
}

func offsetList(offsets []dispatch.Offset) []ck.TopicPartition {
	list := make([]ck.TopicPartition, len(offsets))
	for i, o := range offsets {
		t := o.Topic
		list[i] = ck.TopicPartition{Topic: &t, Partition: o.Partition, Offset: ck.Offset(o.Offset)}
	}
	return list
}

// firstError returns the first partition's error of a commit or store.
func firstError(op string, res []ck.TopicPartition) error {
	for _, tp := range res {
		if tp.Error != nil {
			return fmt.Errorf("%s %s/%d at %d: %w", op, topicName(tp), tp.Partition, tp.Offset, tp.Error)
		}
	}
	return nil
}

// HighWatermark implements dispatch.Source from the client's cached
// watermarks (updated by fetches), without a request.
func (c *Consumer) HighWatermark(tp dispatch.TopicPartition) (int64, bool) {
	_, high, err := c.c.GetWatermarkOffsets(tp.Topic, tp.Partition)
	if err != nil || high < 0 {
		return 0, false
	}
	return high, true
}

// Close implements dispatch.Source. It leaves the group; the final revoke
// reaches the listener first.
func (c *Consumer) Close() error {
	if c.closed {
		return errors.New("consumer already closed")
	}
	c.closed = true
	err := c.c.Close()
	closeLogs(c.c.Logs())
	return err
}

func (c *Consumer) toKafka(tps []dispatch.TopicPartition) []ck.TopicPartition {
	c.tps = c.tps[:0]
	for _, tp := range tps {
		t := tp.Topic
		c.tps = append(c.tps, ck.TopicPartition{Topic: &t, Partition: tp.Partition})
	}
	return c.tps
}

func fromKafka(tps []ck.TopicPartition) []dispatch.TopicPartition {
	out := make([]dispatch.TopicPartition, 0, len(tps))
	for _, tp := range tps {
		out = append(out, dispatch.TopicPartition{Topic: topicName(tp), Partition: tp.Partition})
	}
	return out
}

func topicName(tp ck.TopicPartition) string {
	if tp.Topic == nil {
		return ""
	}
	return *tp.Topic
}
