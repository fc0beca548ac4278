package dispatch

import (
	"errors"
	"fmt"
	"time"
)

// TopicPartition names one partition of one topic.
type TopicPartition struct {
	Topic     string
	Partition int32
}

func (tp TopicPartition) String() string { return fmt.Sprintf("%s/%d", tp.Topic, tp.Partition) }

// Offset is a position to commit: the offset of the next message to read.
type Offset struct {
	TopicPartition
	Offset int64
}

// Message is one record read from a Source.
type Message struct {
	TopicPartition
	Offset    int64
	Key       []byte
	Value     []byte
	Timestamp time.Time
}

// RebalanceListener is told about assignment changes. A Source calls it from
// inside Poll, on the goroutine that owns the Source, before the change takes
// effect: Revoked runs while the partitions are still owned, so the listener
// can commit their offsets.
type RebalanceListener interface {
	Assigned(tps []TopicPartition)
	Revoked(tps []TopicPartition, lost bool)
}

// Source is a consumer-group member. It is owned by one goroutine: none of
// its methods may be called concurrently.
type Source interface {
	// Subscribe joins the group for the given topics, replacing any earlier
	// subscription; an empty list leaves the group.
	Subscribe(topics []string, rl RebalanceListener) error
	// Topics lists the cluster's topics, waiting at most timeout.
	Topics(timeout time.Duration) ([]string, error)
	// Poll waits at most timeout for the next message. It returns (nil, nil)
	// on timeout. Errors are informational unless they wrap ErrFatal.
	Poll(timeout time.Duration) (*Message, error)
	Pause(tps []TopicPartition) error
	Resume(tps []TopicPartition) error
	// Commit synchronously commits the given offsets.
	Commit(offsets []Offset) error
	// Store hands offsets to the client to commit in the background: it
	// returns without waiting for the broker. A Source without background
	// commits commits them synchronously. Offsets stored and not yet
	// committed when a partition is revoked or the Source closes are
	// committed then.
	Store(offsets []Offset) error
	// HighWatermark returns the last known end offset of a partition without
	// a network round trip; ok is false when it is not known yet.
	HighWatermark(tp TopicPartition) (high int64, ok bool)
	// Close leaves the group and releases the client.
	Close() error
}

// ErrFatal marks an error of a Source or a Producer after which it cannot
// be used.
var ErrFatal = errors.New("fatal Kafka client error")
