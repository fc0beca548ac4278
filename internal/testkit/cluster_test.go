package testkit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func freePort(t *testing.T) int {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func TestClusterBrokers(t *testing.T) {
	port := freePort(t)
	tests := []struct {
		name      string
		opts      ClusterOptions
		want      int
		wantAddr  string
		wantTopic map[string]int
	}{
		{name: "default", want: 3},
		{name: "one broker", opts: ClusterOptions{Brokers: 1}, want: 1},
		{name: "fixed port", opts: ClusterOptions{Ports: []int{port}}, want: 1, wantAddr: fmt.Sprintf("127.0.0.1:%d", port)},
		{name: "seed topics", opts: ClusterOptions{Topics: map[string]int{"a": 2, "b": 5}}, want: 3, wantTopic: map[string]int{"a": 2, "b": 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			c := NewCluster(t, tt.opts)
			addrs := strings.Split(c.Addr(), ",")
			if len(addrs) != tt.want {
				t.Fatalf("Addr() = %q, want %d brokers", c.Addr(), tt.want)
			}
			for _, a := range addrs {
				if !strings.HasPrefix(a, "127.0.0.1:") {
					t.Errorf("broker address %q is not on 127.0.0.1", a)
				}
			}
			if tt.wantAddr != "" && c.Addr() != tt.wantAddr {
				t.Errorf("Addr() = %q, want %q", c.Addr(), tt.wantAddr)
			}
			cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			brokers, err := kadm.NewClient(cl).ListBrokers(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(brokers) != tt.want {
				t.Errorf("metadata lists %d brokers, want %d", len(brokers), tt.want)
			}
			for topic, parts := range tt.wantTopic {
				ends, err := c.EndOffsets(ctx, topic)
				if err != nil {
					t.Fatal(err)
				}
				if len(ends) != parts {
					t.Errorf("topic %q has %d partitions, want %d", topic, len(ends), parts)
				}
			}
		})
	}
}

func TestClusterOptionsInvalid(t *testing.T) {
	tests := []struct {
		name string
		opts ClusterOptions
		want string
	}{
		{"negative brokers", ClusterOptions{Brokers: -1}, "negative"},
		{"brokers and ports disagree", ClusterOptions{Brokers: 3, Ports: []int{1, 2}}, "does not match"},
		{"bad port", ClusterOptions{Ports: []int{70000}}, "not a TCP port"},
		{"negative segment size", ClusterOptions{SegmentBytes: -1}, "SegmentBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := StartCluster(tt.opts)
			if err == nil {
				c.Close()
				t.Fatal("StartCluster succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// TestClusterSegmentBytes: the brokers roll segments at SegmentBytes
// (defaultSegmentBytes when 0), and a partition written across many
// segments reads back whole and in order.
func TestClusterSegmentBytes(t *testing.T) {
	for _, tt := range []struct {
		opt, want int
	}{{0, defaultSegmentBytes}, {1 << 20, 1 << 20}} {
		t.Run(fmt.Sprint(tt.want), func(t *testing.T) {
			c := NewCluster(t, ClusterOptions{Brokers: 1, SegmentBytes: tt.opt})
			ctx := testCtx(t)
			const topic = "segments"
			if err := c.CreateTopic(ctx, topic, 1); err != nil {
				t.Fatal(err)
			}
			cfgs, err := c.adm.DescribeBrokerConfigs(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, cfg := range cfgs {
				for _, kv := range cfg.Configs {
					if kv.Key == "log.segment.bytes" {
						got = append(got, kv.MaybeValue())
					}
				}
			}
			if want := []string{fmt.Sprint(tt.want)}; !slices.Equal(got, want) {
				t.Errorf("log.segment.bytes %q, want %q", got, want)
			}

			// Three segments' worth of 64 KB records, produced in batches
			// of a few records as a load generator would.
			n := 3 * tt.want / (64 << 10)
			for k := 0; k < n; k += 4 {
				var recs []Record
				for j := k; j < min(k+4, n); j++ {
					v := make([]byte, 64<<10)
					copy(v, fmt.Sprintf("record-%d", j))
					recs = append(recs, Record{Topic: topic, Partition: 0, Value: v})
				}
				if err := c.Produce(ctx, recs...); err != nil {
					t.Fatal(err)
				}
			}
			recs, err := c.ReadAll(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != n {
				t.Fatalf("read %d records, want %d", len(recs), n)
			}
			for j, r := range recs {
				if want := fmt.Sprintf("record-%d", j); !strings.HasPrefix(string(r.Value), want) || len(r.Value) != 64<<10 || r.Offset != int64(j) {
					t.Fatalf("record %d: offset %d, %.12q (%d bytes)", j, r.Offset, r.Value, len(r.Value))
				}
			}
		})
	}
}

func TestClusterRoundTrip(t *testing.T) {
	c := NewCluster(t, ClusterOptions{})
	tests := []struct {
		name       string
		partitions int
		explicit   bool // records name their partition (i % partitions)
		keyed      bool
		n          int
	}{
		{name: "one partition", partitions: 1, n: 10},
		{name: "explicit partitions", partitions: 4, explicit: true, n: 40},
		{name: "keyed, client picks", partitions: 6, keyed: true, n: 120},
		{name: "unkeyed, client picks", partitions: 3, n: 50},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			topic := fmt.Sprintf("roundtrip-%d", i)
			if err := c.CreateTopic(ctx, topic, tt.partitions); err != nil {
				t.Fatal(err)
			}
			recs := make([]Record, tt.n)
			want := make(map[string]Record, tt.n)
			for k := range recs {
				r := Record{
					Topic:     topic,
					Partition: AnyPartition,
					Value:     fmt.Appendf(nil, "value-%d", k),
					Headers:   map[string]string{"k": fmt.Sprint(k), "content-type": "application/json"},
				}
				if tt.explicit {
					r.Partition = int32(k % tt.partitions)
				}
				if tt.keyed {
					r.Key = fmt.Appendf(nil, "key-%d", k%7)
				}
				recs[k] = r
				want[string(r.Value)] = r
			}
			if err := c.Produce(ctx, recs...); err != nil {
				t.Fatal(err)
			}

			ends, err := c.EndOffsets(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			if len(ends) != tt.partitions {
				t.Fatalf("EndOffsets has %d partitions, want %d", len(ends), tt.partitions)
			}
			var total int64
			for _, o := range ends {
				total += o
			}
			if total != int64(tt.n) {
				t.Fatalf("end offsets %v add up to %d, want %d", ends, total, tt.n)
			}

			got, err := c.ReadAll(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.n {
				t.Fatalf("ReadAll returned %d records, want %d", len(got), tt.n)
			}
			keyPart := make(map[string]int32)
			for k, r := range got {
				w, ok := want[string(r.Value)]
				if !ok {
					t.Fatalf("unexpected record %q", r.Value)
				}
				delete(want, string(r.Value))
				if r.Topic != topic || string(r.Key) != string(w.Key) || r.Headers["k"] != w.Headers["k"] || len(r.Headers) != 2 {
					t.Errorf("record %q = %+v, want %+v", r.Value, r, w)
				}
				if tt.explicit && r.Partition != w.Partition {
					t.Errorf("record %q in partition %d, want %d", r.Value, r.Partition, w.Partition)
				}
				if tt.keyed {
					if p, seen := keyPart[string(r.Key)]; seen && p != r.Partition {
						t.Errorf("key %q in partitions %d and %d", r.Key, p, r.Partition)
					}
					keyPart[string(r.Key)] = r.Partition
				}
				if r.Offset >= ends[r.Partition] || r.Timestamp.IsZero() {
					t.Errorf("record %q: offset %d (end %d), timestamp %v", r.Value, r.Offset, ends[r.Partition], r.Timestamp)
				}
				if k > 0 {
					prev := got[k-1]
					if prev.Partition > r.Partition || prev.Partition == r.Partition && prev.Offset >= r.Offset {
						t.Errorf("records out of order: %d/%d before %d/%d", prev.Partition, prev.Offset, r.Partition, r.Offset)
					}
				}
			}
			if tt.keyed && len(keyPart) < 2 {
				t.Errorf("7 keys all landed in one partition: %v", keyPart)
			}
		})
	}
}

func TestClusterErrors(t *testing.T) {
	c := NewCluster(t, ClusterOptions{Topics: map[string]int{"two": 2}})
	tests := []struct {
		name string
		run  func(ctx context.Context) error
		is   error
	}{
		{"create existing topic", func(ctx context.Context) error { return c.CreateTopic(ctx, "two", 2) }, kerr.TopicAlreadyExists},
		{"create zero partitions", func(ctx context.Context) error { return c.CreateTopic(ctx, "zero", 0) }, nil},
		{"produce past the last partition", func(ctx context.Context) error {
			return c.Produce(ctx, Record{Topic: "two", Partition: 2, Value: []byte("x")})
		}, nil},
		{"produce to a missing topic's partition", func(ctx context.Context) error {
			return c.Produce(ctx, Record{Topic: "missing", Partition: 0, Value: []byte("x")})
		}, nil},
		{"produce without topic", func(ctx context.Context) error { return c.Produce(ctx, Record{Value: []byte("x")}) }, nil},
		{"end offsets of a missing topic", func(ctx context.Context) error {
			_, err := c.EndOffsets(ctx, "also-missing")
			return err
		}, kerr.UnknownTopicOrPartition},
		{"produce with a cancelled context", func(context.Context) error {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return c.Produce(ctx, Record{Topic: "two", Partition: AnyPartition, Value: []byte("x")})
		}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run(testCtx(t))
			if err == nil {
				t.Fatal("no error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
		})
	}
}

func TestProduceAutoCreates(t *testing.T) {
	ctx := testCtx(t)
	c := NewCluster(t, ClusterOptions{})
	if err := c.Produce(ctx, Record{Topic: "auto", Partition: AnyPartition, Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	got, err := c.ReadAll(ctx, "auto")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || string(got[0].Value) != "v" {
		t.Fatalf("ReadAll = %+v", got)
	}
}

func TestReadAllEmpty(t *testing.T) {
	ctx := testCtx(t)
	c := NewCluster(t, ClusterOptions{Topics: map[string]int{"empty": 3}})
	got, err := c.ReadAll(ctx, "empty")
	if err != nil || len(got) != 0 {
		t.Fatalf("ReadAll = %v, %v; want nothing", got, err)
	}
}

func TestCommitted(t *testing.T) {
	const topic, group, n = "events", "changeprop-test", 30
	ctx := testCtx(t)
	c := NewCluster(t, ClusterOptions{Topics: map[string]int{topic: 3}})

	got, err := c.Committed(ctx, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("Committed before any commit = %v, want empty", got)
	}

	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Topic: topic, Partition: int32(i % 2), Value: fmt.Appendf(nil, "%d", i)} // partition 2 stays empty
	}
	if err := c.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}

	cl, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(c.Addr(), ",")...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for seen := 0; seen < n; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d: %v", seen, n, err)
		}
		fs.EachError(func(t2 string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", t2, p, err) })
		seen += fs.NumRecords()
	}
	if err := cl.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}

	got, err = c.Committed(ctx, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{0: n / 2, 1: n / 2}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Committed = %v, want %v", got, want)
	}
}
