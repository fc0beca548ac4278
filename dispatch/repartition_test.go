package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"changeprop/internal/jobgen"
	"changeprop/partition"
	"changeprop/rules"
)

func TestSetMetaStream(t *testing.T) {
	const s = "cpjobqueue.partitioned.mediawiki.job.refreshLinks"
	q := `"` + s + `"`
	for _, tc := range []struct{ name, in, want string }{
		{"replace", `{"meta":{"stream":"mediawiki.job.refreshLinks","id":"1"},"database":"enwiki"}`,
			`{"meta":{"stream":` + q + `,"id":"1"},"database":"enwiki"}`},
		{"replace last", `{"meta":{"id":"1","stream":"x"}}`, `{"meta":{"id":"1","stream":` + q + `}}`},
		{"insert", `{"meta":{"id":"1"},"x":1}`, `{"meta":{"stream":` + q + `,"id":"1"},"x":1}`},
		{"insert into empty", `{"meta":{ }}`, `{"meta":{"stream":` + q + ` }}`},
		{"whitespace kept", "{ \"a\" : [1, {\"stream\":2}] ,\n \"meta\" : { \"stream\" : \"old\" , \"uri\":\"u\" } }",
			"{ \"a\" : [1, {\"stream\":2}] ,\n \"meta\" : { \"stream\" : " + q + " , \"uri\":\"u\" } }"},
		{"nested streams untouched", `{"params":{"meta":{"stream":"p"}},"meta":{"x":{"stream":"y"},"stream":"z"},"stream":"top"}`,
			`{"params":{"meta":{"stream":"p"}},"meta":{"x":{"stream":"y"},"stream":` + q + `},"stream":"top"}`},
		{"escaped key", `{"m\u0065ta":{"str\u0065am":"old"}}`, `{"m\u0065ta":{"str\u0065am":` + q + `}}`},
		{"escapes and numbers kept", `{"params":{"t":"a\"}\\","n":1.50e3,"u":"\u00e9"},"meta":{"stream":"s"},"z":null}`,
			`{"params":{"t":"a\"}\\","n":1.50e3,"u":"\u00e9"},"meta":{"stream":` + q + `},"z":null}`},
		{"duplicate meta: the last counts", `{"meta":{"stream":"a"},"meta":{"stream":"b"}}`, `{"meta":{"stream":"a"},"meta":{"stream":` + q + `}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SetMetaStream([]byte(tc.in), s)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
			ev, err := rules.ParseEvent(got)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Meta("stream") != s {
				t.Fatalf("meta.stream decodes to %q", ev.Meta("stream"))
			}
		})
	}
	for _, bad := range []string{`{"meta":"x"}`, `{"meta":{"stream":"x"`, `[1]`, `{"a":1 "meta":{}}`, `{"a":"unterminated`} {
		if out, err := SetMetaStream([]byte(bad), s); err == nil {
			t.Errorf("%s: no error, got %s", bad, out)
		}
	}
}

// prodMap is the production shape: enwiki, s2, default, commonswiki,
// dewiki, s6, s7, wikidatawiki.
const prodMap = `{enwiki: 0, plwiki: 1, zhwiki: 1, ptwiki: 1, commonswiki: 3, dewiki: 4, frwiki: 5, jawiki: 5, ruwiki: 5, eswiki: 6, huwiki: 6, itwiki: 6, wikidatawiki: 7}`

func loadPartitioner(t *testing.T, extra string) *rules.Config {
	t.Helper()
	cfg, err := rules.Load([]byte(`
service_name: cpjobqueue
kafka: {brokers: 127.0.0.1:9092}
rules:
  refreshLinksPartitioner:
    topic: mediawiki.job.refreshLinks
    partition_stream: 'cpjobqueue.partitioned.{{message.meta.stream}}'
    partition_key: database
`+extra), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestPartitionFor(t *testing.T) {
	p := loadPartitioner(t, "    partition_map: "+prodMap+"\n    partition_default: 2\n").Rules[0].Partition
	if n := Needed(p); n != 8 {
		t.Errorf("Needed = %d, want 8", n)
	}
	for key, want := range map[string]int32{
		"enwiki": 0, "plwiki": 1, "zhwiki": 1, "ptwiki": 1, "nlwiki": 2, "metawiki": 2, "": 2,
		"commonswiki": 3, "dewiki": 4, "frwiki": 5, "jawiki": 5, "ruwiki": 5, "eswiki": 6,
		"huwiki": 6, "itwiki": 6, "wikidatawiki": 7,
	} {
		if got := PartitionFor(p, key, 8); got != want {
			t.Errorf("%q: partition %d, want %d", key, got, want)
		}
	}
	h := loadPartitioner(t, "").Rules[0].Partition
	for _, key := range []string{"enwiki", "dewiki", "x"} {
		if got, want := PartitionFor(h, key, 12), partition.ForKey([]byte(key), 12); got != want {
			t.Errorf("hash %q: %d, want %d", key, got, want)
		}
	}
	if got := PartitionFor(h, "", 12); got != 0 {
		t.Errorf("no key: %d, want partition_default 0", got)
	}
}

func TestPartitionedStreamsAndKeepPartition(t *testing.T) {
	cfg := loadPartitioner(t, "")
	ps := PartitionedStreams(cfg)
	if !reflect.DeepEqual(ps, map[string]bool{"cpjobqueue.partitioned.mediawiki.job.refreshLinks": true}) {
		t.Fatalf("PartitionedStreams = %v", ps)
	}
	m := &Message{TopicPartition: TopicPartition{Topic: "cpjobqueue.retry.cpjobqueue.partitioned.mediawiki.job.refreshLinks", Partition: 5}}
	if got := KeepPartition(ps, "cpjobqueue.partitioned.mediawiki.job.refreshLinks", m); got != 5 {
		t.Errorf("partitioned: %d, want 5", got)
	}
	if got := KeepPartition(ps, "mediawiki.job.refreshLinks", m); got != -1 {
		t.Errorf("not partitioned: %d, want -1", got)
	}
	sub := PartitionerSubscription(cfg, cfg.Rules[0])
	got := sub([]string{"mediawiki.job.refreshLinks", "cpjobqueue.retry.mediawiki.job.refreshLinks", "mediawiki.job.other"})
	if !reflect.DeepEqual(got, []string{"mediawiki.job.refreshLinks"}) {
		t.Errorf("subscription %v, want the source topic only", got)
	}
}

// fakeTxn is a TxnSource over in-memory partitions. Produced messages
// become visible (out) only when their transaction commits.
type fakeTxn struct {
	mu          sync.Mutex
	logs        map[TopicPartition][]*Message
	order       []TopicPartition
	pos         map[TopicPartition]int64
	committed   map[TopicPartition]int64
	topics      map[string]int32
	rl          RebalanceListener
	assigned    bool
	open        bool
	pending     []fakeRecord
	out         []fakeRecord
	failCommits int // commits to fail (abortable) before succeeding
	aborts      int
	rr          int
}

type fakeRecord struct {
	topic     string
	partition int32
	key       string
	value     []byte
}

func newFakeTxn(topics map[string]int32) *fakeTxn {
	return &fakeTxn{logs: map[TopicPartition][]*Message{}, pos: map[TopicPartition]int64{},
		committed: map[TopicPartition]int64{}, topics: topics}
}

func (f *fakeTxn) add(topic string, p int32, value string) {
	tp := TopicPartition{topic, p}
	if _, ok := f.logs[tp]; !ok {
		f.order = append(f.order, tp)
	}
	f.logs[tp] = append(f.logs[tp], &Message{TopicPartition: tp, Offset: int64(len(f.logs[tp])), Value: []byte(value)})
}

func (f *fakeTxn) Subscribe(topics []string, rl RebalanceListener) error { f.rl = rl; return nil }
func (f *fakeTxn) Topics(time.Duration) ([]string, error)                { return nil, nil }
func (f *fakeTxn) HighWatermark(tp TopicPartition) (int64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return int64(len(f.logs[tp])), true
}

func (f *fakeTxn) Poll(time.Duration) (*Message, error) {
	if !f.assigned {
		f.assigned = true
		f.rl.Assigned(f.order)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for range f.order {
		tp := f.order[f.rr%len(f.order)]
		f.rr++
		if pos := f.pos[tp]; pos < int64(len(f.logs[tp])) {
			f.pos[tp]++
			return f.logs[tp][pos], nil
		}
	}
	return nil, nil
}

func (f *fakeTxn) TopicPartitions(_ context.Context, topic string, create int32) (int32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n, ok := f.topics[topic]; ok {
		return n, nil
	}
	if create > 0 {
		f.topics[topic] = create
		return create, nil
	}
	return 0, fmt.Errorf("%w: %s", ErrNoTopic, topic)
}

func (f *fakeTxn) Begin() error {
	if f.open {
		return errors.New("transaction already open")
	}
	f.open = true
	return nil
}

func (f *fakeTxn) Produce(topic string, p int32, key, value []byte) error {
	if !f.open {
		return errors.New("no transaction")
	}
	// Copies, as the TxnSource contract says: the caller reuses value.
	f.pending = append(f.pending, fakeRecord{topic, p, string(key), bytes.Clone(value)})
	return nil
}

func (f *fakeTxn) CommitTxn(_ context.Context, offsets []Offset) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.open {
		return errors.New("no transaction")
	}
	if f.failCommits > 0 {
		f.failCommits--
		return errors.New("injected abortable error")
	}
	f.out = append(f.out, f.pending...)
	for _, o := range offsets {
		f.committed[o.TopicPartition] = o.Offset
	}
	f.pending, f.open = nil, false
	return nil
}

func (f *fakeTxn) Abort(_ context.Context, rewind []Offset) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending, f.open = nil, false
	f.aborts++
	for _, o := range rewind {
		if c, ok := f.committed[o.TopicPartition]; ok {
			f.pos[o.TopicPartition] = c
		} else {
			f.pos[o.TopicPartition] = o.Offset
		}
	}
	return nil
}

func (f *fakeTxn) Close() error { return nil }

func (f *fakeTxn) outputs() []fakeRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeRecord(nil), f.out...)
}

// TestRepartitionerExactlyOnceOverAborts fails commits on purpose: each
// failed transaction is aborted and rewound, and in the end every event
// was written once, to its partition, in source order per key, with only
// meta.stream changed; a message that is not an event goes to the error
// topic.
func TestRepartitionerExactlyOnceOverAborts(t *testing.T) {
	cfg := loadPartitioner(t, "    partition_map: "+prodMap+"\n    partition_default: 2\n")
	const dest = "cpjobqueue.partitioned.mediawiki.job.refreshLinks"
	f := newFakeTxn(map[string]int32{"mediawiki.job.refreshLinks": 2, dest: 8, "cpjobqueue.retry." + dest: 8})
	f.failCommits = 3
	dbs := []string{"enwiki", "plwiki", "nlwiki", "commonswiki", "dewiki", "jawiki", "itwiki", "wikidatawiki"}
	var sources []string
	for i := 0; i < 400; i++ {
		v := fmt.Sprintf(`{"meta":{"stream":"mediawiki.job.refreshLinks","id":"%d"},"database":"%s","params":{"seq":%d}}`, i, dbs[i%len(dbs)], i)
		f.add("mediawiki.job.refreshLinks", int32(i%len(dbs)%2), v)
		sources = append(sources, v)
	}
	f.add("mediawiki.job.refreshLinks", 0, "not json")

	r := NewRepartitioner(RepartitionerConfig{
		Rule: cfg.Rules[0], Topics: []string{"mediawiki.job.refreshLinks"}, Source: f,
		Names:          Names{ServiceName: "cpjobqueue"},
		CommitInterval: time.Millisecond, MaxBatch: 37, Log: zerolog.Nop(),
	})
	runUntilWritten(t, r, f, len(sources)+1)
	out := f.outputs()
	if len(out) != len(sources)+1 {
		t.Fatalf("%d records written, want %d", len(out), len(sources)+1)
	}
	if f.aborts != 3 {
		t.Errorf("%d aborts, want 3", f.aborts)
	}
	lastSeq := map[string]int{}
	var errorEvents int
	for _, rec := range out {
		if rec.topic == "cpjobqueue.error" {
			errorEvents++
			if !bytes.Contains(rec.value, []byte(`"raw_event":"not json"`)) {
				t.Errorf("error event %s", rec.value)
			}
			continue
		}
		var ev struct {
			Database string
			Params   struct{ Seq int }
		}
		if err := json.Unmarshal(rec.value, &ev); err != nil {
			t.Fatal(err)
		}
		want := strings.Replace(sources[ev.Params.Seq], `"stream":"mediawiki.job.refreshLinks"`, `"stream":"`+dest+`"`, 1)
		if string(rec.value) != want {
			t.Errorf("value %s\nwant  %s", rec.value, want)
		}
		if rec.topic != dest || rec.key != ev.Database || rec.partition != PartitionFor(cfg.Rules[0].Partition, ev.Database, 8) {
			t.Errorf("seq %d (%s) went to %s/%d key %q", ev.Params.Seq, ev.Database, rec.topic, rec.partition, rec.key)
		}
		if last, ok := lastSeq[ev.Database]; ok && ev.Params.Seq <= last {
			t.Errorf("%s: seq %d after %d", ev.Database, ev.Params.Seq, last)
		}
		lastSeq[ev.Database] = ev.Params.Seq
	}
	if errorEvents != 1 {
		t.Errorf("%d error events, want 1", errorEvents)
	}
	st := r.Stats()
	if st.Done.Load() != int64(len(sources)) || st.Failed.Load() != 1 || st.Cancelled.Load() == 0 {
		t.Errorf("stats done %d failed %d cancelled %d", st.Done.Load(), st.Failed.Load(), st.Cancelled.Load())
	}
	if f.committed[TopicPartition{"mediawiki.job.refreshLinks", 0}] != 201 || f.committed[TopicPartition{"mediawiki.job.refreshLinks", 1}] != 200 {
		t.Errorf("committed %v", f.committed)
	}
}

// TestRepartitionerTopicChecks: a missing or too small partitioned topic
// stops the rule with an error naming it and the count it needs;
// CreateTopics creates it and its retry topic.
func TestRepartitionerTopicChecks(t *testing.T) {
	cfg := loadPartitioner(t, "    partition_map: "+prodMap+"\n    partition_default: 2\n")
	const src, dest = "eqiad.mediawiki.job.refreshLinks", "eqiad.cpjobqueue.partitioned.mediawiki.job.refreshLinks"
	const retry = "eqiad.cpjobqueue.retry.cpjobqueue.partitioned.mediawiki.job.refreshLinks"
	for _, tc := range []struct {
		name   string
		topics map[string]int32
		create bool
		want   string // error substring; "" for success
	}{
		{"missing", map[string]int32{src: 4}, false, "partitioned topic " + dest + " does not exist: create it with 8 partitions"},
		{"too small", map[string]int32{src: 4, dest: 6}, false, "partitioned topic " + dest + " has 6 partitions, needs at least 8"},
		{"retry topic missing", map[string]int32{src: 4, dest: 8}, false, "partitioned topic " + retry + " does not exist"},
		{"retry topic too small", map[string]int32{src: 4, dest: 10, retry: 8}, false, retry + " has 8 partitions, needs at least 10"},
		{"created", map[string]int32{src: 4}, true, ""},
		{"too small is not grown", map[string]int32{src: 4, dest: 6}, true, "has 6 partitions, needs at least 8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeTxn(tc.topics)
			r := NewRepartitioner(RepartitionerConfig{
				Rule: cfg.Rules[0], Topics: []string{src}, Source: f, CreateTopics: tc.create,
				Names: Names{ServiceName: "cpjobqueue", DC: "eqiad"}, Log: zerolog.Nop(),
			})
			ctx, cancel := context.WithCancel(context.Background())
			if tc.want == "" {
				cancel() // the check runs before the context is looked at
			}
			defer cancel()
			err := r.Run(ctx)
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want == "":
				if f.topics[dest] != 8 || f.topics[retry] != 8 {
					t.Errorf("topics %v", f.topics)
				}
			case err == nil || !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzSetMetaStream: for every event ParseEvent accepts, the result is an
// event equal to the input but for meta.stream; AppendMetaStream given
// the event's MetaOffset appends the same bytes.
func FuzzSetMetaStream(f *testing.F) {
	for _, s := range []string{`{"meta":{"stream":"a"}}`, `{"meta":{}}`, ` {"x":[{"meta":1}],"meta":{"a":"\"}","stream":null}} `,
		`{"meta":{"stream":"a","stream":"b"},"meta":{"id":1}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := rules.ParseEvent(raw)
		if err != nil {
			return
		}
		out, err := SetMetaStream(raw, "new.stream")
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		off := ev.MetaOffset()
		if off < 0 {
			t.Fatalf("%s: no meta offset", raw)
		}
		at, err := AppendMetaStream([]byte("prefix"), raw, off, "new.stream")
		if err != nil || string(at) != "prefix"+string(out) {
			t.Fatalf("%s: AppendMetaStream at %d: %s, %v; want prefix%s", raw, off, at, err, out)
		}
		got, err := rules.ParseEvent(out)
		if err != nil {
			t.Fatalf("%s -> %s: %v", raw, out, err)
		}
		ev.Message["meta"].(map[string]any)["stream"] = "new.stream"
		if !reflect.DeepEqual(ev.Message, got.Message) {
			t.Fatalf("%s -> %s", raw, out)
		}
	})
}

// BenchmarkSetMetaStream rewrites meta.stream of generated refreshLinks
// events of 0.5-4 KB, as the repartitioner does to each event it moves.
func BenchmarkSetMetaStream(b *testing.B) {
	for _, at := range []bool{false, true} {
		b.Run(map[bool]string{false: "scan", true: "at-offset"}[at], func(b *testing.B) { benchMetaStream(b, at) })
	}
}

// benchMetaStream: with at, the meta offset comes from the decode and the
// output goes into a reused buffer, as in Repartitioner.route.
func benchMetaStream(b *testing.B, at bool) {
	events, mean := jobgen.BenchEvents("refreshLinks", 64)
	b.SetBytes(int64(mean))
	b.ReportAllocs()
	offs := make([]int, len(events))
	for i, raw := range events {
		ev, err := rules.ParseEvent(raw)
		if err != nil {
			b.Fatal(err)
		}
		offs[i] = ev.MetaOffset()
	}
	const stream = "cpjobqueue.partitioned.mediawiki.job.refreshLinks"
	var buf []byte
	i := 0
	for b.Loop() {
		raw := events[i%len(events)]
		var err error
		if at {
			buf, err = AppendMetaStream(buf[:0], raw, offs[i%len(events)], stream)
		} else {
			_, err = SetMetaStream(raw, stream)
		}
		if err != nil {
			b.Fatal(err)
		}
		i++
	}
}
