package testkit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// AnyPartition as Record.Partition lets the producer pick the partition:
// by hash of the key, or sticky batches for records without a key.
const AnyPartition int32 = -1

// Record is a record to produce or one read back by ReadAll.
type Record struct {
	Topic string
	// Partition is the partition to write to; AnyPartition (-1) lets the
	// client pick. Note the zero value means partition 0.
	Partition int32
	Key       []byte
	Value     []byte
	// Headers are written in key order; ReadAll keeps the last value of a
	// repeated header key.
	Headers map[string]string
	// Offset is set by ReadAll and ignored by Produce.
	Offset int64
	// Timestamp is set by ReadAll; for Produce the zero value means now.
	Timestamp time.Time
}

// Produce writes recs through the shared idempotent client (acks=all) and
// returns once every record is acknowledged, or with the first error. A
// record with an explicit partition needs its topic to exist and have
// that partition; with AnyPartition a missing topic is auto-created with
// kfake's default of 10 partitions.
func (c *Cluster) Produce(ctx context.Context, recs ...Record) error {
	if err := c.checkPartitions(ctx, recs); err != nil {
		return err
	}
	krs := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		kr := &kgo.Record{
			Topic:     r.Topic,
			Partition: r.Partition,
			Key:       r.Key,
			Value:     r.Value,
			Timestamp: r.Timestamp,
		}
		keys := make([]string, 0, len(r.Headers))
		for k := range r.Headers {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: k, Value: []byte(r.Headers[k])})
		}
		krs[i] = kr
	}
	var errs []error
	for _, res := range c.prod.ProduceSync(ctx, krs...) {
		if res.Err != nil {
			errs = append(errs, fmt.Errorf("topic %q partition %d: %w", res.Record.Topic, res.Record.Partition, res.Err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("testkit: produce: %w", err)
	}
	return nil
}

// checkPartitions rejects explicit partitions the topic does not have:
// kgo would panic on a partitioner answer out of range.
func (c *Cluster) checkPartitions(ctx context.Context, recs []Record) error {
	want := make(map[string]int32) // topic -> highest explicit partition
	for _, r := range recs {
		if r.Topic == "" {
			return errors.New("testkit: produce: record without a topic")
		}
		if r.Partition < AnyPartition {
			return fmt.Errorf("testkit: produce: topic %q: invalid partition %d", r.Topic, r.Partition)
		}
		if r.Partition >= 0 && r.Partition >= want[r.Topic] {
			want[r.Topic] = r.Partition + 1
		}
	}
	if len(want) == 0 {
		return nil
	}
	topics := make([]string, 0, len(want))
	for t := range want {
		topics = append(topics, t)
	}
	details, err := c.adm.ListTopics(ctx, topics...)
	if err != nil {
		return fmt.Errorf("testkit: produce: metadata: %w", err)
	}
	for t, n := range want {
		d, ok := details[t]
		switch {
		case !ok || d.Err != nil:
			return fmt.Errorf("testkit: produce: topic %q must exist to produce to an explicit partition: %v", t, d.Err)
		case int32(len(d.Partitions)) < n:
			return fmt.Errorf("testkit: produce: topic %q has %d partitions, record wants partition %d", t, len(d.Partitions), n-1)
		}
	}
	return nil
}

// partitioner honours an explicit Record.Partition and otherwise defers
// to kgo's sticky key partitioner (murmur2 of the key, like the Java
// client; sticky batches for nil keys).
type partitioner struct{ inner kgo.Partitioner }

func newPartitioner() kgo.Partitioner {
	return partitioner{inner: kgo.StickyKeyPartitioner(nil)}
}

func (p partitioner) ForTopic(topic string) kgo.TopicPartitioner {
	return &topicPartitioner{inner: p.inner.ForTopic(topic)}
}

type topicPartitioner struct{ inner kgo.TopicPartitioner }

func (p *topicPartitioner) RequiresConsistency(r *kgo.Record) bool {
	return r.Partition >= 0 || p.inner.RequiresConsistency(r)
}

func (p *topicPartitioner) Partition(r *kgo.Record, n int) int {
	if r.Partition >= 0 {
		// checkPartitions has made sure the partition exists; partitions
		// only grow, so this is in range.
		return int(r.Partition) % n
	}
	return p.inner.Partition(r, n)
}

func (p *topicPartitioner) OnNewBatch() {
	if nb, ok := p.inner.(kgo.TopicPartitionerOnNewBatch); ok {
		nb.OnNewBatch()
	}
}

// ReadAll returns every record in topic from the log start up to the end
// offsets at the time of the call, ordered by partition and offset. It
// reads like a read_uncommitted consumer: records of aborted transactions
// are included, transaction markers are not.
func (c *Cluster) ReadAll(ctx context.Context, topic string) ([]Record, error) {
	ends, err := c.EndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	return c.readRange(ctx, topic, ends, "read")
}

// readRange reads every partition of topic from its log start up to (not
// including) its offset in ends, ordered by partition and offset.
// Transaction markers are read (they advance the position like records
// do) but not returned. opts add to the client's options.
func (c *Cluster) readRange(ctx context.Context, topic string, ends map[int32]int64, what string, opts ...kgo.Opt) ([]Record, error) {
	starts, err := c.startOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	from := make(map[int32]kgo.Offset)
	last := make(map[int32]int64) // partition -> offset of the last record to read
	for p, end := range ends {
		if start := starts[p]; end > start {
			from[p] = kgo.NewOffset().At(start)
			last[p] = end - 1
		}
	}
	if len(from) == 0 {
		return nil, nil
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.KeepControlRecords(),
	}, c.copts...), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("testkit: %s %q: client: %w", what, topic, err)
	}
	defer cl.Close()

	byPart := make(map[int32][]Record, len(from))
	for len(last) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("testkit: %s %q: %d partitions unfinished: %w", what, topic, len(last), err)
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			ferr = errors.Join(ferr, fmt.Errorf("partition %d: %w", p, err))
		})
		if ferr != nil {
			return nil, fmt.Errorf("testkit: %s %q: %w", what, topic, ferr)
		}
		fetches.EachRecord(func(kr *kgo.Record) {
			stop, reading := last[kr.Partition]
			if !reading || kr.Offset > stop {
				return
			}
			if kr.Offset == stop {
				delete(last, kr.Partition)
			}
			if kr.Attrs.IsControl() {
				return
			}
			byPart[kr.Partition] = append(byPart[kr.Partition], fromKgo(kr))
		})
	}

	parts := make([]int32, 0, len(byPart))
	for p := range byPart {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	var out []Record
	for _, p := range parts {
		out = append(out, byPart[p]...)
	}
	return out, nil
}

func fromKgo(kr *kgo.Record) Record {
	r := Record{
		Topic:     kr.Topic,
		Partition: kr.Partition,
		Key:       kr.Key,
		Value:     kr.Value,
		Offset:    kr.Offset,
		Timestamp: kr.Timestamp,
	}
	if len(kr.Headers) > 0 {
		r.Headers = make(map[string]string, len(kr.Headers))
		for _, h := range kr.Headers {
			r.Headers[h.Key] = string(h.Value)
		}
	}
	return r
}
