package kafka_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"changeprop/dispatch"
	"changeprop/dispatch/dedupe"
	"changeprop/internal/testkit"
	"changeprop/rules"
)

const dedupeRule = `
service_name: cpjobqueue
kafka:
  brokers: %s
  consumer: {auto.offset.reset: earliest}
  commit_interval: 100ms
rules:
  job:
    topic: mediawiki.job.refreshLinks
    concurrency: 10
    timeout: 2s
    retry_delay: 100ms
    limiters: {blacklist: 'job:{message.database}'}
    exec: {method: post, uri: '%s/rpc/RunSingleJob.php', body: '{{globals.message}}'}
`

// dedupeJob is a job event with the fields dedupe reads.
func dedupeJob(id, dt, sha1, rootSig, rootDT string) []byte {
	ev := fmt.Sprintf(`{"meta":{"id":%q,"dt":%q,"domain":"en.wikipedia.org","uri":"https://en.wikipedia.org/wiki/X","stream":"mediawiki.job.refreshLinks"},"database":"enwiki","type":"refreshLinks"`, id, dt)
	if sha1 != "" {
		ev += fmt.Sprintf(`,"sha1":%q`, sha1)
	}
	if rootSig != "" {
		ev += fmt.Sprintf(`,"root_event":{"signature":%q,"dt":%q}`, rootSig, rootDT)
	}
	return []byte(ev + "}")
}

func withStores(s dedupe.Store, l dedupe.Limiter) func(*dispatch.RunnerConfig) {
	return func(rc *dispatch.RunnerConfig) { rc.Dedupe, rc.Limiter = s, l }
}

// TestDedupe runs rules.md's three dedupe checks end to end, against the
// in-process store and a real redis-server: the same event twice is posted
// once; a job whose sha1 was processed after its dt is a duplicate, a
// newer one is not; a root job older than one already seen is a duplicate.
func TestDedupe(t *testing.T) {
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{jobTopic: 1}})
			sc := newScript(func(string, int) (int, http.Header) { return 200, nil })
			jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{Respond: sc.respond})
			cfg, err := rules.Load(fmt.Appendf(nil, dedupeRule, cluster.Addr(), jr.URL()), nil)
			if err != nil {
				t.Fatal(err)
			}
			var s dedupe.Store = dedupe.NewMemory()
			if store == "redis" {
				rs := testkit.StartRedis(t)
				s = dedupe.NewRedis(rs.Client(), "CPJQ", dedupe.RedisOptions{})
			}
			now := time.Now().UTC()
			old, newer := now.Add(-time.Hour).Format(time.RFC3339), now.Add(time.Minute).Format(time.RFC3339)
			at := now.Format(time.RFC3339)
			steps := []struct {
				value []byte
				runs  bool
			}{
				{dedupeJob("a", at, "", "", ""), true},
				{dedupeJob("a", at, "", "", ""), false},        // same id: duplicate
				{dedupeJob("b", at, "s1", "", ""), true},       // first with sha1 s1
				{dedupeJob("c", old, "s1", "", ""), false},     // s1 processed after c's dt
				{dedupeJob("d", newer, "s1", "", ""), true},    // d is newer than s1's processing
				{dedupeJob("e", at, "", "root1", at), true},    // root signature seen at `at`
				{dedupeJob("f", at, "", "root1", old), false},  // an older root: duplicate
				{dedupeJob("g", at, "", "root1", newer), true}, // a newer root runs
			}
			r, stop := startRunner(t, cfg, cfg.Rules[0], withStores(s, nil))
			for i, st := range steps {
				// One at a time: each verdict depends on the ones before.
				if err := cluster.Produce(ctx, testkit.Record{Topic: jobTopic, Partition: 0, Value: st.value}); err != nil {
					t.Fatal(err)
				}
				waitFor(t, ctx, fmt.Sprintf("step %d", i), func() bool { return r.Stats().Finished() == int64(i+1) })
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			for i, st := range steps {
				id := metaField(t, st.value, "id")
				want := 0
				if st.runs {
					want = 1
				}
				if i == 1 {
					want = 1 // "a" ran once, at step 0
				}
				if got := sc.count(id); got != want {
					t.Errorf("step %d (%s): posted %d times, want %d", i, st.value, got, want)
				}
			}
			if got := r.Stats().Deduped.Load(); got != 3 {
				t.Errorf("%d duplicates, want 3", got)
			}
		})
	}
}

// TestDedupeSharedAcrossInstances: two instances (here two consumer
// groups over one topic, as two datacenters would read it) share one
// Redis: every event is posted once in all, and failures counted by one
// instance blacklist the key in the other.
func TestDedupeSharedAcrossInstances(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{jobTopic: 2}})
	sc := newScript(func(string, int) (int, http.Header) { return 200, nil })
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{Respond: sc.respond})
	rs := testkit.StartRedis(t)
	instance := func(group string) (*dispatch.Runner, func() error) {
		cfg, err := rules.Load(fmt.Appendf(nil, dedupeRule, cluster.Addr(), jr.URL()), nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg.ServiceName = group
		client := redis.NewClient(&redis.Options{Addr: rs.Addr})
		t.Cleanup(func() { _ = client.Close() })
		return startRunner(t, cfg, cfg.Rules[0], withStores(
			dedupe.NewRedis(client, "CPJQ", dedupe.RedisOptions{}),
			dedupe.NewRedisLimiter(client, "CPJQ", []dedupe.Window{{Limit: 3, Period: time.Hour}})))
	}
	const n = 300
	at := time.Now().UTC().Format(time.RFC3339)
	var recs []testkit.Record
	for i := range n {
		recs = append(recs, testkit.Record{Topic: jobTopic, Partition: int32(i % 2), Value: dedupeJob(fmt.Sprint("j", i), at, "", "", "")})
	}
	if err := cluster.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	a, stopA := instance("dc1")
	b, stopB := instance("dc2")
	waitFor(t, ctx, "both instances through every event", func() bool {
		return a.Stats().Finished() == n && b.Stats().Finished() == n
	})
	for i := range n {
		if got := sc.count(fmt.Sprint("j", i)); got != 1 {
			t.Fatalf("event j%d posted %d times by the two instances, want 1", i, got)
		}
	}
	if d := a.Stats().Deduped.Load() + b.Stats().Deduped.Load(); d != n {
		t.Errorf("%d duplicates across the instances, want %d", d, n)
	}

	// The blacklist: 3 failures of enwiki's jobs counted through instance
	// A blacklist enwiki in instance B too.
	lim := dedupe.NewRedisLimiter(redis.NewClient(&redis.Options{Addr: rs.Addr}), "CPJQ", []dedupe.Window{{Limit: 3, Period: time.Hour}})
	for range 3 {
		if err := lim.Failure(ctx, "job:enwiki", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := cluster.Produce(ctx, testkit.Record{Topic: jobTopic, Partition: 0, Value: dedupeJob("late", at, "", "", "")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the late job", func() bool { return a.Stats().Finished() == n+1 && b.Stats().Finished() == n+1 })
	if got := sc.count("late"); got != 0 {
		t.Errorf("a blacklisted key's job was posted %d times", got)
	}
	if got := a.Stats().Abandoned.Load() + b.Stats().Abandoned.Load(); got != 2 {
		t.Errorf("%d jobs skipped by the blacklist, want 2 (one per instance)", got)
	}
	_ = stopA()
	_ = stopB()
}

// TestRedisOutageLosesNothing stops redis-server for 10s in the middle of
// a stream: every job is done (dedupe answers "not a duplicate" while it
// is down), nothing is lost, and deduplication works again afterwards.
func TestRedisOutageLosesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: map[string]int{jobTopic: 4}})
	sc := newScript(func(string, int) (int, http.Header) { return 200, nil })
	jr := testkit.NewJobRunner(t, testkit.JobRunnerOptions{Respond: sc.respond})
	cfg, err := rules.Load(fmt.Appendf(nil, dedupeRule, cluster.Addr(), jr.URL()), nil)
	if err != nil {
		t.Fatal(err)
	}
	rs := testkit.StartRedis(t)
	store := dedupe.NewRedis(rs.Client(), "CPJQ", dedupe.RedisOptions{})
	r, stop := startRunner(t, cfg, cfg.Rules[0], withStores(store, nil))
	at := time.Now().UTC().Format(time.RFC3339)
	var ids []string
	var mu sync.Mutex
	produce := func(from, to int) {
		for i := from; i < to; i += 50 {
			var recs []testkit.Record
			for k := i; k < i+50; k++ {
				id := fmt.Sprint("o", k)
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
				recs = append(recs, testkit.Record{Topic: jobTopic, Partition: int32(k % 4), Value: dedupeJob(id, at, "", "", "")})
			}
			if err := cluster.Produce(ctx, recs...); err != nil {
				t.Error(err)
				return
			}
		}
	}
	produce(0, 500)
	waitFor(t, ctx, "500 jobs", func() bool { return r.Stats().Done.Load() >= 500 })
	rs.Stop()
	produce(500, 1000)
	waitFor(t, ctx, "jobs done while Redis is down", func() bool { return r.Stats().Done.Load() >= 1000 })
	outage := time.NewTimer(10 * time.Second)
	<-outage.C
	rs.Start()
	produce(1000, 1500)
	waitFor(t, ctx, "every job", func() bool { return r.Stats().Done.Load() >= 1500 })
	if r.Stats().DedupeUnavailable.Load() == 0 {
		t.Error("no job ran without a dedupe answer: the outage did not bite")
	}
	// Dedupe works again: a copy of a job done after the restart is dropped.
	waitFor(t, ctx, "dedupe to answer again", func() bool {
		_, c, err := store.Claim(ctx, dedupe.Job{Namespace: "probe", ID: fmt.Sprint(time.Now().UnixNano()), Domain: "x"}, time.Now())
		if c != nil {
			_ = store.Release(ctx, c)
		}
		return err == nil
	})
	if err := cluster.Produce(ctx, testkit.Record{Topic: jobTopic, Partition: 0, Value: dedupeJob("o1400", at, "", "", "")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the copy", func() bool { return r.Stats().Finished() >= 1501 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if sc.count(id) == 0 {
			t.Fatalf("job %s lost", id)
		}
	}
	if got := sc.count("o1400"); got != 1 {
		t.Errorf("the copy of o1400 after Redis came back was posted again: %d posts", got)
	}
}
