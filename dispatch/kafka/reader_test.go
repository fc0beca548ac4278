package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"changeprop/dispatch"
	"changeprop/dispatch/kafka"
	"changeprop/internal/testkit"
)

// read is one record as ReadTopic handed it over.
type read struct {
	Partition int32
	Offset    int64
	Key       string
	Value     string
}

func readerConfig(c *testkit.Cluster, topic string) kafka.ReaderConfig {
	return kafka.ReaderConfig{Brokers: c.Addr(), Topic: topic, Log: zerolog.Nop()}
}

// TestReadTopicStopsAtTheEndOffsetsOfTheCall: three partitions, one of
// them empty; records produced while the read is under way are not read,
// and a later read sees them.
func TestReadTopicStopsAtTheEndOffsetsOfTheCall(t *testing.T) {
	const topic = "reader.test"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{topic: 3}})

	var want []read
	var recs []testkit.Record
	for _, p := range []int32{0, 2} { // partition 1 stays empty
		for i := range 3 + int(p) {
			k, v := fmt.Sprintf("k%d-%d", p, i), fmt.Sprintf("v%d-%d", p, i)
			recs = append(recs, testkit.Record{Topic: topic, Partition: p, Key: []byte(k), Value: []byte(v)})
			want = append(want, read{Partition: p, Offset: int64(i), Key: k, Value: v})
		}
	}
	if err := cluster.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}

	late := []testkit.Record{
		{Topic: topic, Partition: 0, Value: []byte("late0")},
		{Topic: topic, Partition: 1, Value: []byte("late1")},
		{Topic: topic, Partition: 2, Value: []byte("late2")},
	}
	var got []read
	err := kafka.ReadTopic(ctx, readerConfig(cluster, topic), func(m dispatch.Message) error {
		if m.Topic != topic {
			t.Errorf("record of topic %q", m.Topic)
		}
		if len(got) == 0 {
			// The end offsets were taken before the first record: these
			// must not be read.
			if err := cluster.Produce(ctx, late...); err != nil {
				return err
			}
		}
		got = append(got, read{m.Partition, m.Offset, string(m.Key), string(m.Value)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sortReads(got)
	if !slices.Equal(got, want) {
		t.Fatalf("read\n%v\nwant\n%v", got, want)
	}

	// A new read sees the late records too.
	got = got[:0]
	if err := kafka.ReadTopic(ctx, readerConfig(cluster, topic), func(m dispatch.Message) error {
		got = append(got, read{m.Partition, m.Offset, string(m.Key), string(m.Value)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want)+len(late) {
		t.Fatalf("second read: %d records, want %d: %v", len(got), len(want)+len(late), got)
	}
}

func sortReads(rs []read) {
	slices.SortFunc(rs, func(a, b read) int {
		if a.Partition != b.Partition {
			return int(a.Partition - b.Partition)
		}
		return int(a.Offset - b.Offset)
	})
}

func TestReadTopicEmptyTopic(t *testing.T) {
	const topic = "reader.empty"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{topic: 4}})
	err := kafka.ReadTopic(ctx, readerConfig(cluster, topic), func(m dispatch.Message) error {
		t.Errorf("read %s/%d@%d from an empty topic", m.Topic, m.Partition, m.Offset)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReadTopicMissingTopic: a clear error naming the topic, and asking
// did not create it.
func TestReadTopicMissingTopic(t *testing.T) {
	const topic = "reader.missing"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{})
	err := kafka.ReadTopic(ctx, readerConfig(cluster, topic), func(dispatch.Message) error {
		t.Error("fn called for a missing topic")
		return nil
	})
	if !errors.Is(err, kafka.ErrTopicNotFound) || !strings.Contains(err.Error(), topic) {
		t.Fatalf("err = %v, want ErrTopicNotFound naming %s", err, topic)
	}
	if ends, err := cluster.EndOffsets(ctx, topic); err == nil {
		t.Fatalf("reading created the topic: end offsets %v", ends)
	}
}

// TestReadTopicStopsOnCallbackError: fn's error ends the read, wrapped
// with the record's coordinates.
func TestReadTopicStopsOnCallbackError(t *testing.T) {
	const topic = "reader.stop"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{topic: 1}})
	if err := cluster.Produce(ctx,
		testkit.Record{Topic: topic, Value: []byte("a")},
		testkit.Record{Topic: topic, Value: []byte("b")},
		testkit.Record{Topic: topic, Value: []byte("c")},
	); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	calls := 0
	err := kafka.ReadTopic(ctx, readerConfig(cluster, topic), func(m dispatch.Message) error {
		calls++
		if m.Offset == 1 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), topic+"/0@1") {
		t.Fatalf("err = %v, want boom at %s/0@1", err, topic)
	}
	if calls != 2 {
		t.Fatalf("fn called %d times, want 2", calls)
	}
}
