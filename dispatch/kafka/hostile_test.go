package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"changeprop/dispatch"
	"changeprop/internal/testio"
	"changeprop/internal/testkit"
	"changeprop/rules"
)

// TestHostileInputLeavesTheServiceRunning feeds one rule, through kfake
// and librdkafka, a 10 MB event, an event whose response is 100 MB, one
// whose response headers are too large, one whose host header expands past
// max_header_bytes and 10,000 random byte strings, between 300 ordinary
// events. The rule keeps running; every ordinary event is posted once and
// done; the 100 MB response counts as done after a bounded read; each
// hostile event is on the error topic with its reason (the 10 MB one with
// an excerpt and its size); every offset is committed.
func TestHostileInputLeavesTheServiceRunning(t *testing.T) {
	const (
		ordinary = 300
		randoms  = 10000
		bigEvent = 10 << 20
		huge     = 100 << 20
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{
		Brokers: 1, Topics: map[string]int{jobTopic: 2, errorTopic: 1}, MaxMessageBytes: 16 << 20,
	})

	var mu sync.Mutex
	posted := map[string]int{}
	hugeWritten := make(chan int64, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct {
			Meta struct{ ID string }
			Type string
		}
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			w.WriteHeader(400)
			return
		}
		mu.Lock()
		posted[ev.Meta.ID]++
		mu.Unlock()
		switch ev.Type {
		case "huge-response":
			hugeWritten <- testio.WriteUntil(w, huge, 'r')
		case "fat-headers":
			w.Header().Set("X-Fat", strings.Repeat("h", 256<<10))
			w.WriteHeader(200)
		default:
			_, _ = w.Write([]byte(`{"status":"ok"}`))
		}
	}))
	defer srv.Close()

	cfg, err := rules.Load(fmt.Appendf(nil, `
service_name: cpjobqueue
kafka:
  brokers: %s
  consumer: {auto.offset.reset: earliest}
  commit_interval: 100ms
limits: {max_header_bytes: 16KiB}
rules:
  job:
    topic: %s
    concurrency: 50
    exec:
      method: post
      uri: '%s/rpc/RunSingleJob.php'
      headers: {content-type: application/json, host: '{{message.meta.domain}}'}
      body: '{{globals.message}}'
`, cluster.Addr(), jobTopic, srv.URL), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Limits.MaxEventBytes != 1<<20 || cfg.Limits.MaxResponseBodyBytes != 1<<20 {
		t.Fatalf("limits %+v: the test relies on the defaults", cfg.Limits)
	}
	event := func(id, typ, domain string, extra string) []byte {
		return fmt.Appendf(nil, `{"meta":{"id":%q,"stream":%q,"domain":%q},"type":%q%s}`, id, jobTopic, domain, typ, extra)
	}
	rng := rand.New(rand.NewPCG(12, 34))
	var recs []testkit.Record
	add := func(v []byte) {
		recs = append(recs, testkit.Record{Topic: jobTopic, Partition: int32(len(recs) % 2), Value: v})
	}
	hostile := map[string]string{ // id -> the reason its error event must give
		"big-event":   "over limits.max_event_bytes",
		"fat-headers": "response headers too large",
		"long-host":   "over limits.max_header_bytes",
	}
	bigLen := 0
	for i := range ordinary {
		add(event(fmt.Sprintf("ok-%d", i), "refreshLinks", "en.wikipedia.org", ""))
		switch i {
		case 50:
			big := event("big-event", "refreshLinks", "en.wikipedia.org", `,"pad":"`+strings.Repeat("x", bigEvent)+`"`)
			bigLen = len(big)
			add(big)
		case 100:
			add(event("huge-response", "huge-response", "en.wikipedia.org", ""))
		case 150:
			add(event("fat-headers", "fat-headers", "en.wikipedia.org", ""))
		case 200:
			add(event("long-host", "refreshLinks", strings.Repeat("a", 20<<10)+".wikipedia.org", ""))
		}
		for range randoms / ordinary {
			b := make([]byte, rng.IntN(300))
			for j := range b {
				b[j] = byte(rng.UintN(256))
			}
			add(b)
		}
	}
	for len(recs) < ordinary+4+randoms {
		add([]byte{byte(rng.UintN(256))})
	}
	if err := cluster.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}

	r, stop := startRunner(t, cfg, cfg.Rules[0], func(rc *dispatch.RunnerConfig) {
		rc.Limits = cfg.Limits
		rc.Sender = dispatch.NewHTTPSender(dispatch.HTTPOptions{
			MaxResponseBody: cfg.Limits.MaxResponseBodyBytes, MaxResponseHeaderBytes: cfg.Limits.MaxResponseHeaderBytes,
		})
	})
	waitFor(t, ctx, "every message finished", func() bool { return r.Stats().Finished() == int64(len(recs)) })
	select {
	case n := <-hugeWritten:
		if n >= huge/4 {
			t.Errorf("the 100 MB response was read or drained to %d bytes", n)
		}
	case <-ctx.Done():
		t.Fatal("the 100 MB response never ended")
	}
	waitFor(t, ctx, "every offset committed", func() bool {
		committed, err := cluster.Committed(ctx, "cpjobqueue-job", jobTopic)
		return err == nil && committed[0] == int64((len(recs)+1)/2) && committed[1] == int64(len(recs)/2)
	})
	if err := stop(); err != nil {
		t.Fatalf("the rule stopped with %v", err)
	}

	mu.Lock()
	for i := range ordinary {
		if id := fmt.Sprintf("ok-%d", i); posted[id] != 1 {
			t.Errorf("%s posted %d times, want 1", id, posted[id])
		}
	}
	if posted["huge-response"] != 1 || posted["fat-headers"] != 1 || posted["big-event"] != 0 || posted["long-host"] != 0 {
		t.Errorf("posted: huge-response %d, fat-headers %d, big-event %d, long-host %d; want 1, 1, 0, 0",
			posted["huge-response"], posted["fat-headers"], posted["big-event"], posted["long-host"])
	}
	mu.Unlock()
	st := r.Stats()
	if st.Done.Load() != ordinary+1 || st.Failed.Load() != randoms+3 {
		t.Errorf("done %d, error %d; want %d, %d", st.Done.Load(), st.Failed.Load(), ordinary+1, randoms+3)
	}

	errs, err := cluster.ReadAll(ctx, errorTopic)
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) != randoms+3 {
		t.Errorf("%d error events, want %d", len(errs), randoms+3)
	}
	unusable := 0
	for _, rec := range errs {
		var e struct {
			RawEvent      string `json:"raw_event"`
			RawEventBytes int    `json:"raw_event_bytes"`
			Message       string
		}
		if err := json.Unmarshal(rec.Value, &e); err != nil {
			t.Fatalf("error event %q: %v", rec.Value, err)
		}
		if len(rec.Value) > dispatch.DefaultMaxProduceBytes {
			t.Errorf("an error event of %d bytes", len(rec.Value))
		}
		id := ""
		if strings.HasPrefix(e.RawEvent, `{"meta":{"id":"`) {
			id, _, _ = strings.Cut(strings.TrimPrefix(e.RawEvent, `{"meta":{"id":"`), `"`)
		}
		want, isHostile := hostile[id]
		switch {
		case isHostile && !strings.Contains(e.Message, want):
			t.Errorf("%s: message %q, want %q", id, e.Message, want)
		case id == "big-event" && (e.RawEventBytes != bigLen || len(e.RawEvent) != 64<<10):
			t.Errorf("big-event: raw_event of %d bytes, raw_event_bytes %d; want a 64 KiB excerpt of %d",
				len(e.RawEvent), e.RawEventBytes, bigLen)
		case !isHostile && (strings.Contains(e.Message, "event is not a JSON object") || strings.Contains(e.Message, "no meta object")):
			unusable++
		case !isHostile:
			t.Errorf("unexpected error event %q: %s", id, e.Message)
		}
	}
	if unusable != randoms {
		t.Errorf("%d error events for the random byte strings, want %d", unusable, randoms)
	}
}
