package testkit

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ReadCommitted returns the records of topic that a read_committed
// consumer sees, from the log start up to the last stable offset at the
// time of the call, ordered by partition and offset: records of aborted
// transactions are left out, so are those of transactions still open.
// Call it when the writers are done to see everything.
func (c *Cluster) ReadCommitted(ctx context.Context, topic string) ([]Record, error) {
	listed, err := c.adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("testkit: read committed %q: last stable offsets: %w", topic, err)
	}
	if err := listed.Error(); err != nil {
		return nil, fmt.Errorf("testkit: read committed %q: last stable offsets: %w", topic, err)
	}
	starts, err := c.startOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	from := make(map[int32]kgo.Offset)
	last := make(map[int32]int64) // partition -> last offset below the LSO
	for p, o := range listed[topic] {
		if start := starts[p]; o.Offset > start {
			from[p] = kgo.NewOffset().At(start)
			last[p] = o.Offset - 1
		}
	}
	if len(from) == 0 {
		return nil, nil
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(c.addrs...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers come through, so the position is known
		// even when the last records before the LSO were aborted.
		kgo.KeepControlRecords(),
	)
	if err != nil {
		return nil, fmt.Errorf("testkit: read committed %q: client: %w", topic, err)
	}
	defer cl.Close()

	byPart := make(map[int32][]Record, len(from))
	for len(last) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("testkit: read committed %q: %d partitions unfinished: %w", topic, len(last), err)
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			ferr = errors.Join(ferr, fmt.Errorf("partition %d: %w", p, err))
		})
		if ferr != nil {
			return nil, fmt.Errorf("testkit: read committed %q: %w", topic, ferr)
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
