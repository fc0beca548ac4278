package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"changeprop/internal/testkit"
)

const repartitionKillConfig = `
service_name: cpjobqueue
kafka:
  brokers: %s
  consumer:
    auto.offset.reset: earliest
    session.timeout.ms: 1000
    heartbeat.interval.ms: 250
  commit_interval: 100ms
listen: 127.0.0.1:0
rules:
  refreshLinksPartitioner:
    topic: mediawiki.job.refreshLinks
    partition_stream: 'cpjobqueue.partitioned.{{message.meta.stream}}'
    partition_key: database
    partition_map: {enwiki: 0, plwiki: 1, zhwiki: 1, ptwiki: 1, commonswiki: 3, dewiki: 4, frwiki: 5, jawiki: 5, ruwiki: 5, eswiki: 6, huwiki: 6, itwiki: 6, wikidatawiki: 7}
    partition_default: 2
`

// TestKill9Repartitioner kills `changeprop run -create-topics` with SIGKILL
// three times while 50,000 small events stream into the source topic,
// restarting it each time: a read_committed reader of the partitioned
// topic then sees every source event exactly once, on its section's
// partition, and in source order per key (the source is keyed by
// database, so each key's order is that of one source partition).
func TestKill9Repartitioner(t *testing.T) {
	const (
		src   = "mediawiki.job.refreshLinks"
		dest  = "cpjobqueue.partitioned.mediawiki.job.refreshLinks"
		group = "cpjobqueue-refreshLinksPartitioner"
		n     = 50000
		batch = 500
		kills = 3
	)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 2))
	t.Logf("seed %d", seed)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{src: 4}})
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgFile, fmt.Appendf(nil, repartitionKillConfig, cluster.Addr()), 0o600); err != nil {
		t.Fatal(err)
	}
	dbs := []string{"enwiki", "plwiki", "zhwiki", "ptwiki", "nlwiki", "metawiki", "commonswiki", "dewiki",
		"frwiki", "jawiki", "ruwiki", "eswiki", "huwiki", "itwiki", "wikidatawiki", "enwiktionary"}
	section := map[string]int32{"enwiki": 0, "plwiki": 1, "zhwiki": 1, "ptwiki": 1, "commonswiki": 3, "dewiki": 4,
		"frwiki": 5, "jawiki": 5, "ruwiki": 5, "eswiki": 6, "huwiki": 6, "itwiki": 6, "wikidatawiki": 7}

	produced := make(chan error, 1)
	go func() {
		tick := time.NewTicker(40 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < n; i += batch {
			recs := make([]testkit.Record, batch)
			for j := range recs {
				seq := i + j
				db := dbs[seq%len(dbs)]
				v := fmt.Sprintf(`{"meta":{"stream":%q,"id":"%d"},"database":%q,"seq":%d}`, src, seq, db, seq)
				recs[j] = testkit.Record{Topic: src, Partition: testkit.AnyPartition, Key: []byte(db), Value: []byte(v)}
			}
			if err := cluster.Produce(ctx, recs...); err != nil {
				produced <- err
				return
			}
			<-tick.C
		}
		produced <- nil
	}()

	committed := func() int64 {
		c, err := cluster.Committed(ctx, group, src)
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		for _, o := range c {
			sum += o
		}
		return sum
	}
	var logs syncBuffer
	for k := 0; k < kills; k++ {
		cp := startChangeprop(t, ctx, &logs, "run", "-create-topics", "-config", cfgFile)
		target := committed() + 2000 + rng.Int64N(8000)
		waitFor(t, cp.ctx, fmt.Sprintf("%d source events committed before kill %d", target, k+1), func() bool {
			return committed() >= target
		})
		if err := cp.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-cp.done
		t.Logf("kill %d after %d source events committed", k+1, committed())
	}
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	if c := committed(); c >= n {
		t.Fatalf("all %d events were repartitioned before the last kill: the kills were not mid-stream", c)
	}
	cp := startChangeprop(t, ctx, &logs, "run", "-create-topics", "-config", cfgFile)
	waitFor(t, cp.ctx, "every source event committed", func() bool { return committed() == n })
	if err := cp.stop(); err != nil {
		t.Fatalf("final run: %v\n%s", err, logs.String())
	}

	all, err := cluster.ReadAll(ctx, dest)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cluster.ReadCommitted(ctx, dest)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d records written, %d of them aborted; %d read committed", len(all), len(all)-len(out), len(out))
	if len(out) != n {
		t.Errorf("read committed %d records, want %d", len(out), n)
	}
	seen := make([]bool, n)
	last := map[string]int{}
	for _, r := range out {
		var ev struct {
			Meta     struct{ Stream string }
			Database string
			Seq      int
		}
		if err := json.Unmarshal(r.Value, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Seq < 0 || ev.Seq >= n || seen[ev.Seq] {
			t.Fatalf("seq %d seen twice (or out of range) at %d@%d", ev.Seq, r.Partition, r.Offset)
		}
		seen[ev.Seq] = true
		want, ok := section[ev.Database]
		if !ok {
			want = 2
		}
		if r.Partition != want || string(r.Key) != ev.Database || ev.Meta.Stream != dest {
			t.Fatalf("seq %d (%s) at partition %d key %q stream %q", ev.Seq, ev.Database, r.Partition, r.Key, ev.Meta.Stream)
		}
		if l, ok := last[ev.Database]; ok && ev.Seq <= l {
			t.Fatalf("%s: seq %d after %d: source order per key broken", ev.Database, ev.Seq, l)
		}
		last[ev.Database] = ev.Seq
	}
	for seq, ok := range seen {
		if !ok {
			t.Fatalf("seq %d never seen", seq)
		}
	}
}
