package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"

	"changeprop/dispatch"
)

// TxnConfig configures a Txn: a consumer-group member and the
// transactional producer its reads are committed with.
type TxnConfig struct {
	Brokers string
	GroupID string
	// TransactionalID must be stable for one member across restarts and
	// unique among the running ones: a restarted process that takes the
	// same id fences its dead predecessor and aborts the transaction it
	// left open, instead of leaving read_committed consumers stuck behind
	// it until transaction.timeout.ms. With KIP-447 (offsets sent with the
	// consumer's group metadata) one id per process and rule is enough,
	// whatever partitions it is assigned.
	TransactionalID string
	// ConsumerProperties and ProducerProperties are librdkafka properties
	// over the defaults, as in ConsumerConfig and ProducerConfig.
	ConsumerProperties []map[string]string
	ProducerProperties []map[string]string
	// QueueKBytes is the consumer's, as in ConsumerConfig.
	QueueKBytes int
	Log         zerolog.Logger
}

// Txn is a dispatch.TxnSource over a librdkafka consumer and transactional
// producer. Like the TxnSource contract says, it is used from one
// goroutine only.
type Txn struct {
	c    *Consumer
	p    *ck.Producer
	adm  *ck.AdminClient
	log  zerolog.Logger
	done chan struct{}
}

var _ dispatch.TxnSource = (*Txn)(nil)

// txnRetryBackoff is the pause between attempts of a retriable
// transaction call.
const txnRetryBackoff = 100 * time.Millisecond

// NewTxn creates the clients and initialises the producer's transactions
// (fencing an earlier producer with the same transactional.id), waiting at
// most until ctx ends. The consumer joins the group on Subscribe.
func NewTxn(ctx context.Context, cfg TxnConfig) (*Txn, error) {
	if cfg.TransactionalID == "" {
		return nil, errors.New("new transactional client: empty transactional id")
	}
	c, err := NewConsumer(ConsumerConfig{
		Brokers:     cfg.Brokers,
		GroupID:     cfg.GroupID,
		Properties:  cfg.ConsumerProperties,
		QueueKBytes: cfg.QueueKBytes,
		Log:         cfg.Log,
	})
	if err != nil {
		return nil, err
	}
	cm := configMap(producerDefaults, cfg.ProducerProperties, map[string]string{
		"bootstrap.servers":  cfg.Brokers,
		"transactional.id":   cfg.TransactionalID,
		"enable.idempotence": "true",
		"acks":               "all",
	})
	producerBinding(cm)
	p, err := ck.NewProducer(cm)
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("new transactional producer %s: %w", cfg.TransactionalID, err)
	}
	log := cfg.Log.With().Str("group", cfg.GroupID).Str("transactional_id", cfg.TransactionalID).Logger()
	t := &Txn{c: c, p: p, log: log, done: make(chan struct{})}
	go forwardLogs(log, p.Logs())
	go t.reports()
	if err := retry(ctx, p.InitTransactions); err != nil {
		_ = t.Close()
		return nil, fmt.Errorf("init transactions of %s: %w", cfg.TransactionalID, err)
	}
	if t.adm, err = ck.NewAdminClientFromProducer(p); err != nil {
		_ = t.Close()
		return nil, fmt.Errorf("admin client: %w", err)
	}
	return t, nil
}

// reports drains the delivery reports (always: Flush, and so
// CommitTransaction, counts unread ones as outstanding). A failed delivery
// needs no action here: it makes CommitTransaction fail.
func (t *Txn) reports() {
	defer close(t.done)
	for ev := range t.p.Events() {
		switch e := ev.(type) {
		case *ck.Message:
			if e.TopicPartition.Error != nil {
				t.log.Debug().Err(e.TopicPartition.Error).Str("to", topicName(e.TopicPartition)).Msg("transactional delivery failed")
			}
		case ck.Error:
			t.log.Warn().Err(e).Bool("fatal", e.IsFatal()).Msg("transactional producer")
		}
	}
}

// Subscribe implements dispatch.TxnSource.
func (t *Txn) Subscribe(topics []string, rl dispatch.RebalanceListener) error {
	return t.c.Subscribe(topics, rl)
}

// Topics implements dispatch.TxnSource.
func (t *Txn) Topics(timeout time.Duration) ([]string, error) { return t.c.Topics(timeout) }

// Poll implements dispatch.TxnSource.
func (t *Txn) Poll(timeout time.Duration) (*dispatch.Message, error) { return t.c.Poll(timeout) }

// HighWatermark implements dispatch.TxnSource.
func (t *Txn) HighWatermark(tp dispatch.TopicPartition) (int64, bool) {
	return t.c.HighWatermark(tp)
}

// metadataTimeout bounds one metadata request of TopicPartitions.
const metadataTimeout = 10 * time.Second

// TopicPartitions implements dispatch.TxnSource with the admin client. It
// lists every topic rather than asking for one, which could auto-create it.
func (t *Txn) TopicPartitions(ctx context.Context, topic string, create int32) (int32, error) {
	n, err := t.partitions(topic)
	if !errors.Is(err, dispatch.ErrNoTopic) || create <= 0 {
		return n, err
	}
	res, err := t.adm.CreateTopics(ctx, []ck.TopicSpecification{{Topic: topic, NumPartitions: int(create)}})
	if err != nil {
		return 0, fmt.Errorf("create topic %s: %w", topic, err)
	}
	for _, r := range res {
		if c := r.Error.Code(); c != ck.ErrNoError && c != ck.ErrTopicAlreadyExists {
			return 0, fmt.Errorf("create topic %s with %d partitions: %w", topic, create, r.Error)
		}
	}
	t.log.Info().Str("topic", topic).Int32("partitions", create).Msg("created topic")
	// The metadata may lag behind the creation for a moment.
	tick := time.NewTicker(txnRetryBackoff)
	defer tick.Stop()
	for {
		n, err := t.partitions(topic)
		if !errors.Is(err, dispatch.ErrNoTopic) {
			return n, err
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return 0, fmt.Errorf("topic %s created but not visible: %w", topic, context.Cause(ctx))
		}
	}
}

func (t *Txn) partitions(topic string) (int32, error) {
	md, err := t.adm.GetMetadata(nil, true, int(metadataTimeout/time.Millisecond))
	if err != nil {
		return 0, fmt.Errorf("metadata: %w", err)
	}
	tm, ok := md.Topics[topic]
	if !ok || tm.Error.Code() == ck.ErrUnknownTopicOrPart || tm.Error.Code() == ck.ErrUnknownTopic {
		return 0, fmt.Errorf("%w: %s", dispatch.ErrNoTopic, topic)
	}
	if tm.Error.Code() != ck.ErrNoError {
		return 0, fmt.Errorf("metadata of %s: %w", topic, tm.Error)
	}
	return int32(len(tm.Partitions)), nil
}

// Begin implements dispatch.TxnSource.
func (t *Txn) Begin() error { return classify(t.p.BeginTransaction()) }

// Produce implements dispatch.TxnSource. A partition < 0 lets the
// producer choose.
func (t *Txn) Produce(topic string, partition int32, key, value []byte) error {
	if partition < 0 {
		partition = ck.PartitionAny
	}
	err := t.p.Produce(&ck.Message{
		TopicPartition: ck.TopicPartition{Topic: &topic, Partition: partition},
		Key:            key,
		Value:          value,
	}, nil)
	if err != nil {
		return fmt.Errorf("produce to %s/%d: %w", topic, partition, classify(err))
	}
	return nil
}

// CommitTxn implements dispatch.TxnSource: the offsets go in with the
// consumer's group metadata (generation and member id), so a member that
// was fenced by a rebalance cannot commit them (KIP-447).
func (t *Txn) CommitTxn(ctx context.Context, offsets []dispatch.Offset) error {
	md, err := t.c.c.GetConsumerGroupMetadata()
	if err != nil {
		return fmt.Errorf("group metadata: %w", err)
	}
	list := make([]ck.TopicPartition, len(offsets))
	for i, o := range offsets {
		topic := o.Topic
		list[i] = ck.TopicPartition{Topic: &topic, Partition: o.Partition, Offset: ck.Offset(o.Offset)}
	}
	if len(list) > 0 {
		err := retry(ctx, func(ctx context.Context) error { return t.p.SendOffsetsToTransaction(ctx, list, md) })
		if err != nil {
			return fmt.Errorf("send offsets to transaction: %w", err)
		}
	}
	if err := retry(ctx, t.p.CommitTransaction); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

// Abort implements dispatch.TxnSource. AbortTransaction purges what was
// queued and not sent; the seek drops what the consumer had fetched
// beyond the rewind point.
func (t *Txn) Abort(ctx context.Context, rewind []dispatch.Offset) error {
	if err := retry(ctx, t.p.AbortTransaction); err != nil {
		return fmt.Errorf("abort transaction: %w", err)
	}
	if len(rewind) == 0 {
		return nil
	}
	list := make([]ck.TopicPartition, len(rewind))
	for i, o := range rewind {
		topic := o.Topic
		list[i] = ck.TopicPartition{Topic: &topic, Partition: o.Partition}
	}
	timeout := metadataTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	committed, err := t.c.c.Committed(list, int(timeout/time.Millisecond))
	if err != nil {
		return fmt.Errorf("rewind: committed offsets: %w", err)
	}
	for i := range committed {
		if committed[i].Error != nil {
			return fmt.Errorf("rewind: committed offset of %s/%d: %w", topicName(committed[i]), committed[i].Partition, committed[i].Error)
		}
		if committed[i].Offset < 0 {
			// No commit yet: back to where the aborted transaction
			// started reading.
			committed[i].Offset = ck.Offset(rewind[i].Offset)
		}
	}
	res, err := t.c.c.SeekPartitions(committed)
	if err != nil {
		return fmt.Errorf("rewind: seek: %w", err)
	}
	for _, tp := range res {
		if tp.Error != nil {
			return fmt.Errorf("rewind: seek %s/%d to %d: %w", topicName(tp), tp.Partition, tp.Offset, tp.Error)
		}
	}
	t.log.Info().Int("partitions", len(committed)).Msg("transaction aborted; partitions rewound to the committed offsets")
	return nil
}

// Close implements dispatch.TxnSource. The consumer goes first: leaving
// the group calls the rebalance listener, which may still commit through
// the producer.
func (t *Txn) Close() error {
	err := t.c.Close()
	if t.adm != nil {
		t.adm.Close()
	}
	t.p.Close()
	closeLogs(t.p.Logs())
	<-t.done
	return err
}

// retry calls f until it succeeds, fails with an error that is not
// retriable, or ctx ends.
func retry(ctx context.Context, f func(context.Context) error) error {
	tm := time.NewTimer(0)
	<-tm.C
	for {
		err := f(ctx)
		var ke ck.Error
		if err == nil || !errors.As(err, &ke) || !ke.IsRetriable() || ke.IsFatal() || ke.TxnRequiresAbort() {
			return classify(err)
		}
		tm.Reset(txnRetryBackoff)
		select {
		case <-tm.C:
		case <-ctx.Done():
			return err
		}
	}
}

// classify marks fatal client errors (the producer was fenced by a newer
// instance with the same transactional.id, or its state is lost) with
// dispatch.ErrFatal: the rule must stop. Every other error is abortable:
// the caller aborts the transaction and starts again.
func classify(err error) error {
	var ke ck.Error
	if errors.As(err, &ke) && ke.IsFatal() {
		return fmt.Errorf("%w: %w", dispatch.ErrFatal, err)
	}
	return err
}
