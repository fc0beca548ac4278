package kafka_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"changeprop/dispatch"
	"changeprop/dispatch/kafka"
	"changeprop/internal/testkit"
)

// listener records what a Consumer was told of its assignment.
type listener struct {
	mu       sync.Mutex
	assigned map[dispatch.TopicPartition]bool
}

func (l *listener) Assigned(tps []dispatch.TopicPartition) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, tp := range tps {
		l.assigned[tp] = true
	}
}

func (l *listener) Revoked(tps []dispatch.TopicPartition, _ bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, tp := range tps {
		delete(l.assigned, tp)
	}
}

func (l *listener) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.assigned)
}

// TestAssignedPartitionsAreNotLeftPaused: a partition paused, revoked by
// a rebalance and assigned again is read again. librdkafka keeps the pause
// of a partition across the revoke and the new assignment, while the
// Runner starts every assigned partition afresh, unpaused: without the
// Consumer resuming what it is assigned, such a partition was never read
// again (a rule that had paused a busy partition just before a rebalance).
func TestAssignedPartitionsAreNotLeftPaused(t *testing.T) {
	const topic = "mediawiki.job.refreshLinks"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{topic: 2}})
	newConsumer := func() (*kafka.Consumer, *listener) {
		c, err := kafka.NewConsumer(kafka.ConsumerConfig{
			Brokers: cluster.Addr(), GroupID: "paused",
			Properties: []map[string]string{{"auto.offset.reset": "earliest", "partition.assignment.strategy": "range"}},
			Log:        zerolog.Nop(),
		})
		if err != nil {
			t.Fatal(err)
		}
		l := &listener{assigned: map[dispatch.TopicPartition]bool{}}
		if err := c.Subscribe([]string{topic}, l); err != nil {
			t.Fatal(err)
		}
		return c, l
	}
	// poll polls each consumer in turn (this goroutine owns both) until
	// cond holds; nothing has been produced yet.
	poll := func(what string, cond func() bool, cs ...*kafka.Consumer) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %s", what)
			}
			for _, c := range cs {
				_, _ = c.Poll(20 * time.Millisecond)
			}
		}
	}
	c1, l1 := newConsumer()
	defer c1.Close()
	poll("the first assignment", func() bool { return l1.count() == 2 }, c1)
	both := []dispatch.TopicPartition{{Topic: topic, Partition: 0}, {Topic: topic, Partition: 1}}
	if err := c1.Pause(both); err != nil {
		t.Fatal(err)
	}
	// A second member joins (everything is revoked and shared out) and
	// leaves again (everything comes back to the first).
	c2, l2 := newConsumer()
	poll("the second member's share", func() bool { return l2.count() == 1 && l1.count() == 1 }, c1, c2)
	if err := c2.Close(); err != nil {
		t.Fatal(err)
	}
	poll("everything back to the first member", func() bool { return l1.count() == 2 }, c1)

	var recs []testkit.Record
	for i := range 10 {
		recs = append(recs, testkit.Record{Topic: topic, Partition: int32(i % 2), Value: fmt.Appendf(nil, `{"n":%d}`, i)})
	}
	if err := cluster.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	seen := map[int32]int{}
	for seen[0] == 0 || seen[1] == 0 {
		if ctx.Err() != nil {
			t.Fatalf("read %v after the rebalances, want messages of both partitions", seen)
		}
		if m, _ := c1.Poll(20 * time.Millisecond); m != nil {
			seen[m.Partition]++
		}
	}
}
