package dispatch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"changeprop/partition"
	"changeprop/rules"
)

// TxnSource is a consumer-group member paired with a transactional
// producer: what a Repartitioner reads through and writes through, so that
// what it writes and the offsets it consumed commit together or not at all
// (Kafka's consume-transform-produce). Like a Source it is owned by one
// goroutine; rebalance callbacks run inside Poll on it.
type TxnSource interface {
	// Subscribe, Topics, Poll and HighWatermark are those of Source.
	Subscribe(topics []string, rl RebalanceListener) error
	Topics(timeout time.Duration) ([]string, error)
	Poll(timeout time.Duration) (*Message, error)
	HighWatermark(tp TopicPartition) (high int64, ok bool)
	// TopicPartitions returns the partition count of topic. A missing
	// topic is created with create partitions when create > 0, and is an
	// error wrapping ErrNoTopic otherwise.
	TopicPartitions(ctx context.Context, topic string, create int32) (int32, error)
	// Begin opens a transaction.
	Begin() error
	// Produce adds a message to the open transaction. It copies key and
	// value: the caller may reuse them once it returns.
	Produce(topic string, partition int32, key, value []byte) error
	// CommitTxn adds offsets (of the consumer's group: the next offsets to
	// read) to the open transaction and commits it. Retriable errors are
	// retried until ctx ends. An error wrapping ErrFatal means the
	// TxnSource cannot be used any more; after any other error the caller
	// must Abort.
	CommitTxn(ctx context.Context, offsets []Offset) error
	// Abort aborts the open transaction, dropping what it produced, and
	// moves every partition in rewind back to the group's committed offset
	// (to rewind's offset where the group has none), so that the aborted
	// messages are read again.
	Abort(ctx context.Context, rewind []Offset) error
	// Close leaves the group and releases the clients.
	Close() error
}

// ErrNoTopic is wrapped by TxnSource.TopicPartitions for a topic that does
// not exist.
var ErrNoTopic = errors.New("topic does not exist")

// RepartitionerConfig is what one partitioner rule needs. Zero durations
// and sizes take the defaults noted on each field.
type RepartitionerConfig struct {
	Rule *rules.Rule // Rule.Partition must be set
	// Topics and Resolve are as in RunnerConfig. Use
	// PartitionerSubscription for Resolve: a partitioner reads no retry
	// topics.
	Topics       []string
	Resolve      func(all []string) []string
	TopicRefresh time.Duration // default 30s
	Source       TxnSource
	Names        Names // dc prefix, error topic, retry topics
	// CreateTopics creates a missing partitioned topic (and its retry
	// topic) with the partitions it needs; without it a missing or too
	// small topic stops the rule with an error naming the topic and the
	// count it needs.
	CreateTopics bool
	// CommitInterval is the longest a transaction stays open: the latency
	// the repartitioning adds. Default 1s.
	CommitInterval time.Duration
	// MaxBatch is the most messages in one transaction. Default 1000.
	MaxBatch int
	// TxnTimeout bounds one commit or abort. Default 30s.
	TxnTimeout time.Duration
	// CloseTimeout bounds the last commit and the TxnSource's Close at
	// shutdown, together (default 5s), as RunnerConfig.CloseTimeout. A
	// transaction left open is never visible to read_committed readers and
	// its offsets are not committed: it is read again.
	CloseTimeout time.Duration
	// MaxEventBytes, when positive, sends larger events to the error topic
	// instead of forwarding them (limits.max_event_bytes).
	MaxEventBytes int
	// MaxProduceBytes is the largest message produced (default
	// DefaultMaxProduceBytes): an event that would be larger once
	// forwarded goes to the error topic (a produce refused every time would
	// abort every transaction), and error events are cut to fit it.
	MaxProduceBytes int
	Log             zerolog.Logger
}

// Repartitioner runs a partitioner rule (rules.md "Repartitioning"): it
// reads the rule's topics and writes each event, unchanged except
// meta.stream, to [dc.]<partition_stream> at the partition PartitionFor
// chooses, keyed by the partition key's value. Exactly once: the events
// written and the source offsets they came from are committed in one Kafka
// transaction, every CommitInterval or MaxBatch messages; a transaction that
// fails is aborted and its partitions rewound to the committed offsets, so
// they are read and written again. Consumers of the partitioned topic must
// read committed (isolation.level=read_committed).
//
// Run owns the TxnSource, like Runner.Run owns its Source: no lock.
type Repartitioner struct {
	cfg   RepartitionerConfig
	p     *rules.Partitioner
	stats Stats
	log   zerolog.Logger

	// Owned by Run's goroutine.
	assigned   map[TopicPartition]bool
	dests      map[string]int32 // checked destination topic -> partitions
	batch      txnBatch
	subscribed []string
	value      []byte // scratch for the rewritten event; Produce copies it
	err        error  // fatal: Run stops

	ready atomic.Bool
}

// txnBatch is what the open transaction holds.
type txnBatch struct {
	open     bool
	deadline time.Time
	first    map[TopicPartition]int64 // first offset read into the transaction
	next     map[TopicPartition]int64 // offset after the last one
	n        int
	failed   int // of n, written to the error topic
}

// NewRepartitioner returns a Repartitioner for cfg.
func NewRepartitioner(cfg RepartitionerConfig) *Repartitioner {
	if cfg.TopicRefresh <= 0 {
		cfg.TopicRefresh = 30 * time.Second
	}
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = time.Second
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 1000
	}
	if cfg.TxnTimeout <= 0 {
		cfg.TxnTimeout = 30 * time.Second
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = 5 * time.Second
	}
	if cfg.MaxProduceBytes <= 0 {
		cfg.MaxProduceBytes = DefaultMaxProduceBytes
	}
	return &Repartitioner{
		cfg:      cfg,
		p:        cfg.Rule.Partition,
		log:      cfg.Log.With().Str("rule", cfg.Rule.Name).Logger(),
		assigned: make(map[TopicPartition]bool),
		dests:    make(map[string]int32),
		batch:    txnBatch{first: make(map[TopicPartition]int64), next: make(map[TopicPartition]int64)},
	}
}

// Name is the rule's name.
func (r *Repartitioner) Name() string { return r.cfg.Rule.Name }

// Stats are the rule's counters: Consumed, Done (written and committed),
// Failed (written to the error topic and committed), Cancelled (read into
// a transaction that was aborted; read again), InFlight (in the open
// transaction) and Lag.
func (r *Repartitioner) Stats() *Stats { return &r.stats }

// Subscribed reports whether the rule has subscribed.
func (r *Repartitioner) Subscribed() bool { return r.ready.Load() }

// Close releases the TxnSource of a Repartitioner that was never run.
func (r *Repartitioner) Close() error { return r.cfg.Source.Close() }

// Run checks the destination topics it can name in advance (creating them
// with CreateTopics), subscribes, and repartitions until ctx ends; it then
// commits the open transaction and closes the TxnSource. It returns nil
// after a clean shutdown, and an error when a topic is missing or too
// small or the transactional client failed for good.
func (r *Repartitioner) Run(ctx context.Context) error {
	if err := r.checkTopics(ctx); err != nil {
		_ = r.cfg.Source.Close()
		return fmt.Errorf("rule %s: %w", r.Name(), err)
	}
	if r.cfg.Resolve == nil {
		if err := r.subscribe(r.cfg.Topics); err != nil {
			_ = r.cfg.Source.Close()
			return fmt.Errorf("rule %s: %w", r.Name(), err)
		}
	}
	var refreshAt time.Time
	for ctx.Err() == nil && r.err == nil {
		msg, err := r.cfg.Source.Poll(100 * time.Millisecond)
		switch {
		case errors.Is(err, ErrFatal):
			r.fail(err)
		case err != nil:
			r.log.Warn().Err(err).Msg("consumer")
		}
		if msg != nil && r.err == nil {
			r.add(ctx, msg)
		}
		now := time.Now()
		if r.batch.open && r.err == nil && (r.batch.n >= r.cfg.MaxBatch || !now.Before(r.batch.deadline)) {
			r.commit()
		}
		if r.cfg.Resolve != nil && r.err == nil && !now.Before(refreshAt) {
			refreshAt = now.Add(r.refreshTopics())
		}
	}
	// The last commit and the close (leaving the group runs Revoked, which
	// finds no open transaction), bounded as a Runner's.
	err, ok := closeWithin(r.cfg.CloseTimeout, r.log, func() error {
		if r.batch.open && r.err == nil {
			r.commit()
		}
		cerr := r.cfg.Source.Close()
		if r.err != nil {
			return r.err
		}
		return cerr
	})
	switch {
	case !ok:
		return fmt.Errorf("rule %s: last commit and close did not finish within %v", r.Name(), r.cfg.CloseTimeout)
	case err != nil:
		return fmt.Errorf("rule %s: %w", r.Name(), err)
	}
	return nil
}

// fail records the first fatal error; Run stops after it.
func (r *Repartitioner) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *Repartitioner) subscribe(topics []string) error {
	if err := r.cfg.Source.Subscribe(topics, r); err != nil {
		return fmt.Errorf("subscribe %v: %w", topics, err)
	}
	r.subscribed = topics
	r.ready.Store(true)
	r.log.Info().Strs("topics", topics).Msg("subscribed")
	return nil
}

// refreshTopics is Runner.refreshTopics.
func (r *Repartitioner) refreshTopics() time.Duration {
	all, err := r.cfg.Source.Topics(topicListTimeout)
	if err != nil {
		r.log.Warn().Err(err).Msg("list topics")
		return min(time.Second, r.cfg.TopicRefresh)
	}
	want := r.cfg.Resolve(all)
	slices.Sort(want)
	want = slices.Compact(want)
	if slices.Equal(want, r.subscribed) {
		return r.cfg.TopicRefresh
	}
	if err := r.subscribe(want); err != nil {
		r.log.Warn().Err(err).Msg("subscribe")
		return min(time.Second, r.cfg.TopicRefresh)
	}
	return r.cfg.TopicRefresh
}

// checkTopics checks the destination of every plain source topic (that
// exists) before anything is read.
func (r *Repartitioner) checkTopics(ctx context.Context) error {
	for _, t := range r.cfg.Rule.Topics {
		if t.Regex != nil {
			continue
		}
		stream, ok := partitionStream(r.p, t.Name)
		if !ok {
			continue
		}
		source := r.cfg.Names.prefixed(t.Name)
		if _, err := r.cfg.Source.TopicPartitions(ctx, source, 0); errors.Is(err, ErrNoTopic) {
			continue // checked when its first event arrives
		}
		if _, err := r.destination(ctx, r.cfg.Names.prefixed(stream), source); err != nil {
			return err
		}
	}
	return nil
}

// Needed is the fewest partitions a partitioned topic can have for p: one
// more than the highest partition partition_map or partition_default names.
func Needed(p *rules.Partitioner) int32 {
	n := p.Default
	for _, v := range p.Map {
		n = max(n, v)
	}
	return int32(n) + 1
}

// PartitionFor is the partition of an event whose partition key has the
// value key, in a topic of n partitions: partition_map[key], else
// partition_default; with no map, Kafka's murmur2 of the key modulo n
// (partition.ForKey), and partition_default for an event without the key.
func PartitionFor(p *rules.Partitioner, key string, n int32) int32 {
	if p.Map != nil {
		if v, ok := p.Map[key]; ok {
			return int32(v)
		}
		return int32(p.Default)
	}
	if key == "" {
		return int32(p.Default) % n
	}
	return partition.ForKey([]byte(key), n)
}

// destination returns the partition count of the partitioned topic dest,
// fed from source, checking it (and its retry topic) the first time.
func (r *Repartitioner) destination(ctx context.Context, dest, source string) (int32, error) {
	if n, ok := r.dests[dest]; ok {
		return n, nil
	}
	need := Needed(r.p)
	create := need
	if r.p.Map == nil {
		// Hashed: as many partitions as the source topic.
		if sn, err := r.cfg.Source.TopicPartitions(ctx, source, 0); err == nil {
			create = max(create, sn)
		}
	}
	if !r.cfg.CreateTopics {
		create = 0
	}
	n, err := r.ensure(ctx, dest, need, create)
	if err != nil {
		return 0, err
	}
	// Retries keep their partition, so the retry topic needs as many.
	retry := r.cfg.Names.Retry(r.cfg.Names.Stream(dest))
	if !r.cfg.CreateTopics {
		create = 0
	} else {
		create = n
	}
	if _, err := r.ensure(ctx, retry, n, create); err != nil {
		return 0, err
	}
	r.dests[dest] = n
	return n, nil
}

func (r *Repartitioner) ensure(ctx context.Context, topic string, need, create int32) (int32, error) {
	n, err := r.cfg.Source.TopicPartitions(ctx, topic, create)
	switch {
	case errors.Is(err, ErrNoTopic):
		return 0, fmt.Errorf("partitioned topic %s does not exist: create it with %d partitions, or start with -create-topics", topic, need)
	case err != nil:
		return 0, fmt.Errorf("partitioned topic %s: %w", topic, err)
	case n < need:
		return 0, fmt.Errorf("partitioned topic %s has %d partitions, needs at least %d (partition_map and partition_default of rule %s)", topic, n, need, r.Name())
	}
	if create > 0 {
		r.log.Info().Str("topic", topic).Int32("partitions", n).Msg("partitioned topic checked")
	}
	return n, nil
}

// add writes msg into the open transaction (opening one first).
func (r *Repartitioner) add(ctx context.Context, msg *Message) {
	if !r.assigned[msg.TopicPartition] {
		return // a stale fetch around a rebalance: the owner reads it
	}
	if next, ok := r.batch.next[msg.TopicPartition]; ok && msg.Offset < next {
		return // already in the transaction
	}
	topic, part, key, value, failed, err := r.route(ctx, msg)
	if err != nil {
		r.fail(err)
		return
	}
	r.stats.Consumed.Add(1)
	if !r.batch.open {
		if err := r.cfg.Source.Begin(); err != nil {
			r.fail(fmt.Errorf("begin transaction: %w", err))
			return
		}
		r.batch.open = true
		r.batch.deadline = time.Now().Add(r.cfg.CommitInterval)
	}
	if _, ok := r.batch.first[msg.TopicPartition]; !ok {
		r.batch.first[msg.TopicPartition] = msg.Offset
	}
	r.batch.next[msg.TopicPartition] = msg.Offset + 1
	r.batch.n++
	if failed {
		r.batch.failed++
	}
	r.stats.InFlight.Store(int64(r.batch.n))
	if err := r.cfg.Source.Produce(topic, part, key, value); err != nil {
		r.log.Warn().Err(err).Str("to", topic).Msg("produce failed; aborting the transaction")
		r.abort(nil)
	}
}

// maxKeptValue bounds the scratch buffer a Repartitioner keeps between
// events: a rare large event is not held for good.
const maxKeptValue = 64 << 10

// route decides where msg goes: its partitioned topic, partition, key and
// rewritten value (in r.value, good until the next route); or the error
// topic (failed) when it is not an event or its partition_stream does not
// expand to a topic name. err is a topic check that failed: the rule
// cannot go on.
func (r *Repartitioner) route(ctx context.Context, msg *Message) (topic string, part int32, key, value []byte, failed bool, err error) {
	fault := func(ev *rules.Event, reason string) (string, int32, []byte, []byte, bool, error) {
		r.log.Warn().Str("topic", msg.Topic).Int32("partition", msg.Partition).Int64("offset", msg.Offset).
			Str("reason", reason).Msg("to error topic")
		b := newErrorEvent(msg, ev, msg.Value, failure{message: reason}, r.Name(),
			r.cfg.Names.Emitter(r.Name()), r.cfg.Names.ErrorStream(), time.Now(), r.cfg.MaxProduceBytes)
		return r.cfg.Names.Error(), -1, nil, b, true, nil
	}
	if reason := oversizedEvent(msg, r.cfg.MaxEventBytes); reason != "" {
		return fault(nil, reason)
	}
	ev, perr := r.cfg.Rule.ParseEvent(msg.Value)
	if perr != nil {
		return fault(nil, perr.Error())
	}
	stream, terr := r.p.Stream.Text(ev.Scope())
	if terr != nil {
		return fault(ev, "partition_stream: "+terr.Error())
	}
	if !validTopic(r.cfg.Names.prefixed(stream)) {
		return fault(ev, fmt.Sprintf("partition_stream: %q is not a topic name", stream))
	}
	dest := r.cfg.Names.prefixed(stream)
	n, err := r.destination(ctx, dest, msg.Topic)
	if err != nil {
		return "", 0, nil, nil, false, err
	}
	k := r.p.KeyValue(ev)
	value, serr := AppendMetaStream(r.value[:0], msg.Value, ev.MetaOffset(), stream)
	if serr != nil {
		return fault(ev, serr.Error())
	}
	if cap(value) <= maxKeptValue {
		r.value = value
	}
	if reason := overProducerLimit("event", len(value), r.cfg.MaxProduceBytes); reason != "" {
		return fault(ev, reason)
	}
	if k != "" {
		key = []byte(k)
	}
	return dest, PartitionFor(r.p, k, n), key, value, false, nil
}

// offsets lists a per-partition offset map.
func offsets(m map[TopicPartition]int64, skip []TopicPartition) []Offset {
	out := make([]Offset, 0, len(m))
	for tp, o := range m {
		if !slices.Contains(skip, tp) {
			out = append(out, Offset{TopicPartition: tp, Offset: o})
		}
	}
	return out
}

// commit commits the open transaction with the offsets after what it read;
// when that fails, the transaction is aborted.
func (r *Repartitioner) commit() {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.TxnTimeout)
	defer cancel()
	err := r.cfg.Source.CommitTxn(ctx, offsets(r.batch.next, nil))
	switch {
	case err == nil:
		r.stats.Done.Add(int64(r.batch.n - r.batch.failed))
		r.stats.Failed.Add(int64(r.batch.failed))
		r.updateLag()
		r.reset()
	case errors.Is(err, ErrFatal):
		r.stats.Cancelled.Add(int64(r.batch.n))
		r.reset()
		r.fail(err)
	default:
		r.log.Warn().Err(err).Int("messages", r.batch.n).Msg("commit failed; aborting the transaction")
		r.abort(nil)
	}
}

// abort aborts the open transaction and rewinds its partitions, except
// those in gone (revoked: their next owner reads from the committed
// offsets).
func (r *Repartitioner) abort(gone []TopicPartition) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.TxnTimeout)
	defer cancel()
	err := r.cfg.Source.Abort(ctx, offsets(r.batch.first, gone))
	r.stats.Cancelled.Add(int64(r.batch.n))
	r.reset()
	if err != nil {
		// Without the rewind the aborted messages would be skipped.
		r.fail(fmt.Errorf("abort transaction: %w", err))
	}
}

func (r *Repartitioner) reset() {
	clear(r.batch.first)
	clear(r.batch.next)
	r.batch.open, r.batch.n, r.batch.failed = false, 0, 0
	r.stats.InFlight.Store(0)
}

// updateLag sums, over the partitions just committed, how far the
// committed offset is behind the end.
func (r *Repartitioner) updateLag() {
	var lag int64
	for tp, next := range r.batch.next {
		if high, ok := r.cfg.Source.HighWatermark(tp); ok && high > next {
			lag += high - next
		}
	}
	r.stats.Lag.Store(lag)
}

// Assigned implements RebalanceListener.
func (r *Repartitioner) Assigned(tps []TopicPartition) {
	for _, tp := range tps {
		r.assigned[tp] = true
	}
}

// Revoked implements RebalanceListener: the open transaction is committed
// while the partitions are still owned (aborted when they were lost).
func (r *Repartitioner) Revoked(tps []TopicPartition, lost bool) {
	if r.batch.open && r.err == nil {
		if lost {
			r.abort(tps)
		} else {
			r.commit()
		}
	}
	for _, tp := range tps {
		delete(r.assigned, tp)
	}
}

// validTopic reports whether s is a legal Kafka topic name.
func validTopic(s string) bool {
	if s == "" || len(s) > 249 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// partitionStream expands p's partition_stream for an event of stream
// (meta.stream set, nothing else): the destination of a source topic, when
// the template depends on the stream only.
func partitionStream(p *rules.Partitioner, stream string) (string, bool) {
	s, err := p.Stream.Text(rules.Scope{Message: map[string]any{"meta": map[string]any{"stream": stream}}})
	if err != nil || !validTopic(s) || s[len(s)-1] == '.' {
		return "", false
	}
	return s, true
}

// PartitionedStreams returns the streams (without the dc prefix) that cfg's
// partitioner rules write, as far as the configuration names them: each
// rule's partition_stream expanded for each of its plain (not /regex/)
// topics.
func PartitionedStreams(cfg *rules.Config) map[string]bool {
	out := make(map[string]bool)
	for _, r := range cfg.Rules {
		if r.Partition == nil {
			continue
		}
		for _, t := range r.Topics {
			if t.Regex != nil {
				continue
			}
			if s, ok := partitionStream(r.Partition, t.Name); ok {
				out[s] = true
			}
		}
	}
	return out
}

// KeepPartition is the partition to write a copy of m to (its retry, or a
// delayed job written back): m's own partition when stream, the event's
// meta.stream, is a partitioned stream, so that the copy stays in its
// database section (its retry topic is partitioned the same way); else -1,
// the producer's choice.
func KeepPartition(partitioned map[string]bool, stream string, m *Message) int32 {
	if partitioned[stream] {
		return m.Partition
	}
	return -1
}

// PartitionerSubscription is Subscription without the retry topics: a
// partitioner rule forwards events and never writes retries, so it reads
// only the topics its rule names.
func PartitionerSubscription(cfg *rules.Config, r *rules.Rule) func(all []string) []string {
	names := NamesFor(cfg)
	prefix := names.RetryPrefix()
	sub := Subscription(cfg, r)
	return func(all []string) []string {
		var out []string
		for _, t := range sub(all) {
			if len(t) >= len(prefix) && t[:len(prefix)] == prefix && !r.Subscribes(cfg.TopicName(t)) {
				continue
			}
			out = append(out, t)
		}
		return out
	}
}
