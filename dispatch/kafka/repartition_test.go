package kafka_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"changeprop/dispatch"
	"changeprop/dispatch/kafka"
	"changeprop/internal/jobgen"
	"changeprop/internal/testkit"
	"changeprop/rules"
)

// prodMap is the production shape of the refreshLinks map: enwiki, s2,
// default, commonswiki, dewiki, s6, s7, wikidatawiki.
const prodMap = `{enwiki: 0, plwiki: 1, zhwiki: 1, ptwiki: 1, commonswiki: 3, dewiki: 4, frwiki: 5, jawiki: 5, ruwiki: 5, eswiki: 6, huwiki: 6, itwiki: 6, wikidatawiki: 7}`

// sectionOf is prodMap as a function, with partition_default 2.
func sectionOf(db string) int32 {
	switch db {
	case "enwiki":
		return 0
	case "plwiki", "zhwiki", "ptwiki":
		return 1
	case "commonswiki":
		return 3
	case "dewiki":
		return 4
	case "frwiki", "jawiki", "ruwiki":
		return 5
	case "eswiki", "huwiki", "itwiki":
		return 6
	case "wikidatawiki":
		return 7
	}
	return 2
}

const partitionedTopic = "cpjobqueue.partitioned.mediawiki.job.refreshLinks"

const repartitionConfig = `
service_name: cpjobqueue
kafka:
  brokers: %s
  consumer:
    auto.offset.reset: earliest
    session.timeout.ms: 2000
    heartbeat.interval.ms: 300
  commit_interval: 100ms
rules:
  refreshLinksPartitioner:
    topic: mediawiki.job.refreshLinks
    partition_stream: 'cpjobqueue.partitioned.{{message.meta.stream}}'
    partition_key: database
    partition_map: ` + prodMap + `
    partition_default: 2
  refreshLinks:
    topic: ` + partitionedTopic + `
    concurrency: 16
    partition_concurrency: 2
    # A partition resumed after a pause waits for the next fetch request:
    # keep librdkafka's long poll short so that costs milliseconds.
    consumer: {fetch.wait.max.ms: 10}
    exec:
      method: post
      uri: '%s/rpc/RunSingleJob.php'
      headers: {content-type: application/json}
      body: '{{globals.message}}'
`

// startRepartitioner runs partitioner rule r through librdkafka as
// cmd/changeprop wires it and returns a function that stops it and returns
// Run's error.
func startRepartitioner(t *testing.T, cfg *rules.Config, r *rules.Rule, create bool) func() error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	group := cfg.ServiceName + "-" + r.Name
	src, err := kafka.NewTxn(ctx, kafka.TxnConfig{
		Brokers:            cfg.Kafka.Brokers,
		GroupID:            group,
		TransactionalID:    group + "-test",
		ConsumerProperties: cfg.ConsumerProperties(r),
		ProducerProperties: cfg.ProducerProperties(),
		Log:                zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	rp := dispatch.NewRepartitioner(dispatch.RepartitionerConfig{
		Rule: r, Source: src, Resolve: dispatch.PartitionerSubscription(cfg, r), TopicRefresh: 500 * time.Millisecond,
		Names:        dispatch.Names{ServiceName: cfg.ServiceName, DC: cfg.DC},
		CreateTopics: create, CommitInterval: cfg.Kafka.CommitInterval, Log: zerolog.Nop(),
	})
	return runInBackground(t, rp.Run)
}

// jobDB is the database of a job event.
func jobDB(t *testing.T, v []byte) string {
	var ev struct{ Database string }
	if err := json.Unmarshal(v, &ev); err != nil {
		t.Fatalf("%s: %v", v, err)
	}
	return ev.Database
}

// TestRepartitionProductionMap repartitions 3,000 generated refreshLinks
// jobs with the production-shaped map: a read_committed reader finds each
// one once, on its section's partition, keyed by its database, its bytes
// those of the source event except meta.stream. The topic and its retry
// topic were created with 8 partitions, and the source offsets are
// committed to the end.
func TestRepartitionProductionMap(t *testing.T) {
	const src, n = "mediawiki.job.refreshLinks", 3000
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{src: 4}})
	cfg, err := rules.Load(fmt.Appendf(nil, repartitionConfig, cluster.Addr(), "http://127.0.0.1:1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	gen := jobgen.New(11)
	byID := map[string][]byte{}
	var recs []testkit.Record
	for i := 0; i < n; i++ {
		v := gen.NextOfType("refreshLinks")
		byID[metaField(t, v, "id")] = v
		recs = append(recs, testkit.Record{Topic: src, Partition: int32(i % 4), Value: v})
	}
	if err := cluster.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	stop := startRepartitioner(t, cfg, cfg.Rule("refreshLinksPartitioner"), true)
	waitFor(t, ctx, "source committed to the end", func() bool {
		c, err := cluster.Committed(ctx, "cpjobqueue-refreshLinksPartitioner", src)
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		for _, o := range c {
			sum += o
		}
		return sum == n
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	for _, topic := range []string{partitionedTopic, "cpjobqueue.retry." + partitionedTopic} {
		ends, err := cluster.EndOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		if len(ends) != 8 {
			t.Errorf("%s has %d partitions, want 8", topic, len(ends))
		}
	}
	out, err := cluster.ReadCommitted(ctx, partitionedTopic)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != n {
		t.Fatalf("%d records read committed, want %d", len(out), n)
	}
	sections := map[int32]int{}
	seen := map[string]bool{}
	for _, r := range out {
		id := metaField(t, r.Value, "id")
		orig, ok := byID[id]
		if !ok || seen[id] {
			t.Fatalf("record %s/%d@%d: unknown or repeated id %s", r.Topic, r.Partition, r.Offset, id)
		}
		seen[id] = true
		db := jobDB(t, orig)
		if want := sectionOf(db); r.Partition != want {
			t.Errorf("%s job on partition %d, want %d", db, r.Partition, want)
		}
		if string(r.Key) != db {
			t.Errorf("key %q, want %q", r.Key, db)
		}
		// Bytes: the source's, with the one meta.stream value replaced.
		want := bytes.Replace(orig, []byte(`"stream":"mediawiki.job.refreshLinks"`), []byte(`"stream":"`+partitionedTopic+`"`), 1)
		if !bytes.Equal(r.Value, want) {
			t.Fatalf("value changed beyond meta.stream:\n got %s\nwant %s", r.Value, want)
		}
		if got := metaField(t, r.Value, "stream"); got != partitionedTopic {
			t.Fatalf("meta.stream %q", got)
		}
		sections[r.Partition]++
	}
	for p := int32(0); p < 8; p++ {
		if sections[p] == 0 {
			t.Errorf("section %d got nothing: %v", p, sections)
		}
	}
	t.Logf("per section: %v", sections)
}

// TestRepartitionTopicMissing: without topic creation a missing
// partitioned topic stops the rule with an error naming it and the count
// it needs.
func TestRepartitionTopicMissing(t *testing.T) {
	const src = "mediawiki.job.refreshLinks"
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{src: 4, partitionedTopic: 5}})
	cfg, err := rules.Load(fmt.Appendf(nil, repartitionConfig, cluster.Addr(), "http://127.0.0.1:1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := startRepartitioner(t, cfg, cfg.Rule("refreshLinksPartitioner"), false)
	err = stop()
	want := "partitioned topic " + partitionedTopic + " has 5 partitions, needs at least 8"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want %q", err, want)
	}
}

// TestSlowSectionDoesNotSlowTheOthers repartitions 8 sections of 60 jobs
// each and runs the partitioned topic with partition_concurrency 2; the
// job runner takes 10× longer for dewiki (section 4). Every other
// section finishes all its jobs while the slow one has done fewer than
// half of its own: per-partition pools isolate the database sections.
func TestSlowSectionDoesNotSlowTheOthers(t *testing.T) {
	const src, perSection = "mediawiki.job.refreshLinks", 60
	const fast, slow = 4 * time.Millisecond, 40 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{src: 4}})

	var mu sync.Mutex
	done := map[int32]int{} // section -> jobs answered
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{
		Respond: func(r *http.Request, body []byte) (int, http.Header, []byte, bool) {
			section := sectionOf(jobDB(t, body))
			d := fast
			if section == 4 {
				d = slow
			}
			tm := time.NewTimer(d)
			defer tm.Stop()
			select {
			case <-tm.C:
			case <-r.Context().Done():
				return 0, nil, nil, false
			}
			mu.Lock()
			done[section]++
			mu.Unlock()
			return http.StatusOK, nil, []byte(`{"status":"ok"}`), true
		},
	})
	count := func(s int32) int {
		mu.Lock()
		defer mu.Unlock()
		return done[s]
	}
	cfg, err := rules.Load(fmt.Appendf(nil, repartitionConfig, cluster.Addr(), jr.URL()), nil)
	if err != nil {
		t.Fatal(err)
	}
	dbs := []string{"enwiki", "plwiki", "nlwiki", "commonswiki", "dewiki", "frwiki", "itwiki", "wikidatawiki"}
	var recs []testkit.Record
	for i := 0; i < perSection; i++ {
		for _, db := range dbs {
			v := fmt.Sprintf(`{"$schema":"/mediawiki/job/1.0.0","meta":{"stream":"mediawiki.job.refreshLinks","id":"%s-%d","dt":"2026-01-01T00:00:00Z"},"database":"%s","type":"refreshLinks","params":{}}`, db, i, db)
			recs = append(recs, testkit.Record{Topic: src, Partition: testkit.AnyPartition, Key: []byte(db), Value: []byte(v)})
		}
	}
	if err := cluster.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	startRepartitioner(t, cfg, cfg.Rule("refreshLinksPartitioner"), true)
	// The runner's subscription is resolved every 500ms: it finds the
	// partitioned topic once the repartitioner has created it.
	runner, stopRunner := startRunner(t, cfg, cfg.Rule("refreshLinks"))

	waitFor(t, ctx, "every fast section done", func() bool {
		for s := int32(0); s < 8; s++ {
			if s != 4 && count(s) < perSection {
				return false
			}
		}
		return true
	})
	slowDone := count(4)
	t.Logf("when the 7 fast sections had finished, the slow one had done %d of %d", slowDone, perSection)
	if slowDone >= perSection/2 {
		t.Errorf("slow section had done %d of %d jobs when the fast ones finished: not isolated", slowDone, perSection)
	}
	waitFor(t, ctx, "the slow section done", func() bool { return count(4) == perSection })
	if err := stopRunner(); err != nil {
		t.Fatal(err)
	}
	if got := runner.Stats().Done.Load(); got != 8*perSection {
		t.Errorf("runner done %d, want %d", got, 8*perSection)
	}
}

type nopListener struct{}

func (nopListener) Assigned([]dispatch.TopicPartition)      {}
func (nopListener) Revoked([]dispatch.TopicPartition, bool) {}

// TestTxnAbortRewinds drives kafka.Txn by hand: an aborted transaction's
// messages are invisible to read_committed readers and its partition is
// read again from the rewind point (the group's committed offset, or the
// given offset before any commit); committed ones are visible once.
func TestTxnAbortRewinds(t *testing.T) {
	const src, dst = "txn.src", "txn.dst"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{src: 1, dst: 1}})
	var recs []testkit.Record
	for i := 0; i < 10; i++ {
		recs = append(recs, testkit.Record{Topic: src, Value: fmt.Appendf(nil, "m%d", i)})
	}
	if err := cluster.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	tx, err := kafka.NewTxn(ctx, kafka.TxnConfig{
		Brokers: cluster.Addr(), GroupID: "txn-test", TransactionalID: "txn-test-1",
		ConsumerProperties: []map[string]string{{"auto.offset.reset": "earliest"}},
		Log:                zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if err := tx.Subscribe([]string{src}, nopListener{}); err != nil {
		t.Fatal(err)
	}
	next := func() *dispatch.Message {
		t.Helper()
		for ctx.Err() == nil {
			m, err := tx.Poll(100 * time.Millisecond)
			if err != nil {
				t.Logf("poll: %v", err)
			}
			if m != nil {
				return m
			}
		}
		t.Fatal("no message")
		return nil
	}
	// txn runs a transaction over the next k messages and commits or
	// aborts it; it returns the first offset read.
	txn := func(k int, commit bool) int64 {
		t.Helper()
		if err := tx.Begin(); err != nil {
			t.Fatal(err)
		}
		var first, last int64 = -1, -1
		for range k {
			m := next()
			if first < 0 {
				first = m.Offset
			}
			last = m.Offset
			if err := tx.Produce(dst, 0, nil, m.Value); err != nil {
				t.Fatal(err)
			}
		}
		tp := dispatch.TopicPartition{Topic: src, Partition: 0}
		if commit {
			if err := tx.CommitTxn(ctx, []dispatch.Offset{{TopicPartition: tp, Offset: last + 1}}); err != nil {
				t.Fatal(err)
			}
		} else if err := tx.Abort(ctx, []dispatch.Offset{{TopicPartition: tp, Offset: first}}); err != nil {
			t.Fatal(err)
		}
		return first
	}
	if got := txn(3, false); got != 0 {
		t.Fatalf("first transaction read from %d", got)
	}
	if got := txn(4, true); got != 0 { // rewound to the given offset: no commit yet
		t.Fatalf("after an abort without commits, read from %d, want 0", got)
	}
	if got := txn(5, false); got != 4 {
		t.Fatalf("read from %d, want 4", got)
	}
	if got := txn(6, true); got != 4 { // rewound to the committed offset
		t.Fatalf("after an abort, read from %d, want the committed offset 4", got)
	}
	out, err := cluster.ReadCommitted(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range out {
		got = append(got, string(r.Value))
	}
	if want := "m0 m1 m2 m3 m4 m5 m6 m7 m8 m9"; strings.Join(got, " ") != want {
		t.Fatalf("read committed %q, want %q", strings.Join(got, " "), want)
	}
	committed, err := cluster.Committed(ctx, "txn-test", src)
	if err != nil {
		t.Fatal(err)
	}
	if committed[0] != 10 {
		t.Fatalf("committed %v, want 10", committed)
	}
}
