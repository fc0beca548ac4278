package testkit

import (
	"context"
	"fmt"

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
	ends := make(map[int32]int64, len(listed[topic]))
	for p, o := range listed[topic] {
		ends[p] = o.Offset
	}
	return c.readRange(ctx, topic, ends, "read committed", kgo.FetchIsolationLevel(kgo.ReadCommitted()))
}
