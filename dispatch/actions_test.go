package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"changeprop/dispatch/dedupe"
	"changeprop/rules"
)

// recordingProducer keeps what it is given. The first fail produce calls
// are refused; with hold set, acknowledgements wait until it is closed.
type recordingProducer struct {
	mu   sync.Mutex
	msgs []message
	fail int
	hold chan struct{}
}

func (p *recordingProducer) ProduceAsync(topic string, partition int32, key, value []byte, done func(error)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail > 0 {
		p.fail--
		go done(errors.New("broker says no"))
		return nil
	}
	p.msgs = append(p.msgs, message{topic: topic, partition: partition, key: key, value: value})
	hold := p.hold
	go func() {
		if hold != nil {
			<-hold
		}
		done(nil)
	}()
	return nil
}

func (p *recordingProducer) taken() []message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]message(nil), p.msgs...)
}

// scriptSender answers every request with answer and records it.
type scriptSender struct {
	mu     sync.Mutex
	reqs   []rules.Request
	answer func(req *rules.Request) (*Response, error)
}

func (s *scriptSender) Send(_ context.Context, req *rules.Request) (*Response, error) {
	s.mu.Lock()
	s.reqs = append(s.reqs, *req)
	s.mu.Unlock()
	return s.answer(req)
}

func (s *scriptSender) sent() []rules.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]rules.Request(nil), s.reqs...)
}

// actionHandler is the handler of the only rule of cfgYAML, wired as a
// Runner wires it.
func actionHandler(t testing.TB, cfgYAML string, snd Sender, p Producer, store dedupe.Store) *handler {
	t.Helper()
	cfg, err := rules.Load([]byte(cfgYAML), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := NewRunner(RunnerConfig{
		Rule: cfg.Rules[0], Topics: []string{"x"}, Source: newFakeSource(), Sender: snd, Producer: p,
		Names: NamesFor(cfg), Dedupe: store, UserAgent: "test", Log: zerolog.Nop(),
	})
	return r.h
}

// runJob classifies and runs one message through h, as the Runner does.
func runJob(t *testing.T, ctx context.Context, h *handler, topic, value string) (*job, outcome) {
	t.Helper()
	j := &job{msg: &Message{TopicPartition: TopicPartition{Topic: topic}, Value: []byte(value)}}
	next, out := h.classify(j, time.Now())
	if next == nextFinish {
		return j, out
	}
	if next == nextWait {
		t.Fatalf("job waits until %v", j.due)
	}
	return j, h.handle(ctx, j)
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return m
}

const edit = `{"meta":{"id":"e-1","domain":"en.wikipedia.org","uri":"https://en.wikipedia.org/wiki/Foo","stream":"mediawiki.revision-create",` +
	`"request_id":"req-1","dt":"2024-05-01T10:00:00Z"},"page_title":"Foo","rev_id":7}`

const produceRule = `
service_name: cp
dc: eqiad
consume_dc: codfw
kafka: {brokers: b}
rules:
  rerender:
    topic: mediawiki.revision-create
    exec:
      - uri: 'http://rest.svc/{{message.meta.domain}}/html/{message.page_title}'
      - uri: kafka:///resource_change
        body:
          - meta: {uri: 'https://{{message.meta.domain}}/api/rest_v1/page/html/{message.page_title}/{{message.rev_id}}', domain: '{{message.meta.domain}}'}
            tags: [restbase]
          - meta: {uri: 'x', id: fixed-id, dt: '2020-01-01T00:00:00Z', request_id: own}
            triggered_by: mine
`

// TestProduceExec: after its GET succeeds, the rule produces two events to
// produce_dc's resource_change with meta.stream, and meta.id, meta.dt,
// meta.request_id and triggered_by filled where the body leaves them out;
// when the GET fails nothing is produced; the pass ends only once Kafka
// acknowledged, and a shutdown before that leaves the event unfinished.
func TestProduceExec(t *testing.T) {
	ctx := context.Background()
	status := 200
	snd := &scriptSender{answer: func(*rules.Request) (*Response, error) { return &Response{Status: status}, nil }}
	p := &recordingProducer{fail: 1} // the first attempt is refused, then tried again
	h := actionHandler(t, produceRule, snd, p, nil)

	before := time.Now().UTC()
	if _, out := runJob(t, ctx, h, "codfw.mediawiki.revision-create", edit); out != outcomeDone {
		t.Fatalf("outcome %v", out)
	}
	msgs := p.taken()
	if len(msgs) != 2 {
		t.Fatalf("produced %d messages, want 2", len(msgs))
	}
	if strings.Contains(string(msgs[0].value), `"uri":"x"`) {
		msgs[0], msgs[1] = msgs[1], msgs[0] // the first was refused once, so written last
	}
	first := decode(t, msgs[0].value)
	meta := first["meta"].(map[string]any)
	dt, err := time.Parse(time.RFC3339Nano, meta["dt"].(string))
	if msgs[0].topic != "eqiad.resource_change" || meta["stream"] != "resource_change" || meta["request_id"] != "req-1" ||
		len(meta["id"].(string)) != 36 || err != nil || dt.Before(before.Add(-time.Second)) ||
		meta["uri"] != "https://en.wikipedia.org/api/rest_v1/page/html/Foo/7" ||
		first["triggered_by"] != "mediawiki.revision-create:https://en.wikipedia.org/wiki/Foo" {
		t.Errorf("first event on %s: %s", msgs[0].topic, msgs[0].value)
	}
	second := decode(t, msgs[1].value)
	meta = second["meta"].(map[string]any)
	if meta["id"] != "fixed-id" || meta["dt"] != "2020-01-01T00:00:00Z" || meta["request_id"] != "own" ||
		meta["stream"] != "resource_change" || second["triggered_by"] != "mine" {
		t.Errorf("second event keeps what the body sets: %s", msgs[1].value)
	}
	if reqs := snd.sent(); len(reqs) != 1 || reqs[0].URI != "http://rest.svc/en.wikipedia.org/html/Foo" {
		t.Errorf("requests %+v", reqs)
	}

	status = 404
	if _, out := runJob(t, ctx, h, "codfw.mediawiki.revision-create", edit); out != outcomeError {
		t.Fatalf("failed GET: outcome %v", out)
	}
	for _, m := range p.taken()[2:] {
		if m.topic == "eqiad.resource_change" {
			t.Errorf("produced an event after a failed GET: %s", m.value)
		}
	}

	status = 200
	p.hold = make(chan struct{})
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan outcome, 1)
	go func() { _, out := runJob(t, cctx, h, "codfw.mediawiki.revision-create", edit); done <- out }()
	waitUntil(t, "the produce", func() bool { return len(p.taken()) >= 4+1 })
	select {
	case out := <-done:
		t.Fatalf("pass ended (%v) before Kafka acknowledged", out)
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	if out := <-done; out != outcomeCancelled || out.finished() {
		t.Errorf("shutdown before the acknowledgement: outcome %v, want cancelled (not finished)", out)
	}
	close(p.hold)
}

const fanoutRule = `
service_name: cp
dc: eqiad
kafka: {brokers: b}
rules:
  transclusions:
    topic: mediawiki.revision-create
    retry_limit: 1
    fanout:
      api: 'http://api.svc/w/api.php'
      headers: {host: '{{message.meta.domain}}'}
      list: embeddedin
      limit: 2
`

// apiPages answers list=embeddedin with the titles p0..p(n-1), limit per
// page, continuing with eicontinue=<next index>.
func apiPages(n int, fail func(req *rules.Request) *Response) func(req *rules.Request) (*Response, error) {
	return func(req *rules.Request) (*Response, error) {
		if r := fail(req); r != nil {
			return r, nil
		}
		u, err := url.Parse(req.URI)
		if err != nil {
			return nil, err
		}
		q := u.Query()
		from := 0
		if c := q.Get("eicontinue"); c != "" {
			fmt.Sscan(c, &from)
		}
		limit := 0
		fmt.Sscan(q.Get("eilimit"), &limit)
		var items []string
		for i := from; i < min(from+limit, n); i++ {
			items = append(items, fmt.Sprintf(`{"pageid":%d,"ns":0,"title":"p %d"}`, i, i))
		}
		body := `{"batchcomplete":true,"query":{"embeddedin":[` + strings.Join(items, ",") + `]}`
		if from+limit < n {
			body += fmt.Sprintf(`,"continue":{"eicontinue":"%d","continue":"-||"}`, from+limit)
		}
		return &Response{Status: 200, Header: Header{}, Body: []byte(body + "}")}, nil
	}
}

// TestFanoutSteps walks an expansion of 5 pages in pages of 2: each step
// writes its events and one continuation event, the rule reads the
// continuation back and asks for the next page, and the last step writes
// no continuation. The events' ids are derived, the same when a page is
// written twice; a continuation read twice (a fork after a crash) is a
// duplicate; a retry of a failed step keeps its continue token.
func TestFanoutSteps(t *testing.T) {
	ctx := context.Background()
	failNext := false
	snd := &scriptSender{answer: apiPages(5, func(*rules.Request) *Response {
		if failNext {
			failNext = false
			return &Response{Status: 200, Body: []byte(`{"error":{"code":"maxlag","info":"Waiting for a database server"}}`)}
		}
		return nil
	})}
	p := &recordingProducer{}
	h := actionHandler(t, fanoutRule, snd, p, dedupe.NewMemory())
	if h.continueTopic != "eqiad.cp.continue.transclusions" {
		t.Fatalf("continuation topic %q", h.continueTopic)
	}

	titles := map[string]int{}
	ids := map[string]bool{}
	step := func(topic, value string) (outcome, []message) {
		t.Helper()
		n := len(p.taken())
		_, out := runJob(t, ctx, h, topic, value)
		var events, conts []message
		for _, m := range p.taken()[n:] {
			switch m.topic {
			case "eqiad.resource_change":
				events = append(events, m)
				ev := decode(t, m.value)
				meta := ev["meta"].(map[string]any)
				titles[meta["uri"].(string)]++
				ids[meta["id"].(string)] = true
				if meta["domain"] != "en.wikipedia.org" || meta["dt"] != "2024-05-01T10:00:00Z" || meta["request_id"] != "req-1" ||
					ev["$schema"] != ResourceChangeSchema || ev["triggered_by"] != "mediawiki.revision-create:https://en.wikipedia.org/wiki/Foo" {
					t.Errorf("event %s", m.value)
				}
			case h.continueTopic:
				conts = append(conts, m)
			case "eqiad.cp.retry.mediawiki.revision-create", "eqiad.cp.error":
			default:
				t.Errorf("produced to %s: %s", m.topic, m.value)
			}
		}
		if len(conts) > 1 {
			t.Fatalf("%d continuation events from one step", len(conts))
		}
		return out, append(events, conts...)
	}

	out, msgs := step("eqiad.mediawiki.revision-create", edit)
	if out != outcomeDone || len(msgs) != 3 {
		t.Fatalf("first step: %v, %d messages", out, len(msgs))
	}
	cont := msgs[2]
	c := decode(t, cont.value)
	if c["$schema"] != ContinueSchema || c["emitter_id"] != "cp#transclusions" ||
		c["continue"].(map[string]any)["eicontinue"] != "2" || c["original_event"].(map[string]any)["page_title"] != "Foo" {
		t.Fatalf("continuation event %s", cont.value)
	}
	req := snd.sent()[0]
	if req.Header("host") != "en.wikipedia.org" || req.Header("x-request-id") != "req-1" || req.ResponseLimit != maxAPIAnswer ||
		req.Header("x-triggered-by") != "mediawiki.revision-create:https://en.wikipedia.org/wiki/Foo" {
		t.Errorf("API request %+v", req)
	}

	// Step 2 once, then again (a fork): the copy is a duplicate.
	out, msgs = step(cont.topic, string(cont.value))
	if out != outcomeDone || len(msgs) != 3 {
		t.Fatalf("second step: %v, %d messages", out, len(msgs))
	}
	if got := snd.sent()[1].URI; !strings.HasSuffix(got, "&continue=-%7C%7C&eicontinue=2") {
		t.Errorf("second request %s", got)
	}
	if out, again := step(cont.topic, string(cont.value)); out != outcomeDedupe || len(again) != 0 {
		t.Errorf("the same continuation again: %v, %d messages", out, len(again))
	}
	cont = msgs[2]

	// Step 3 fails with maxlag: a retry event that keeps the token.
	failNext = true
	out, msgs = step(cont.topic, string(cont.value))
	if out != outcomeRetry || len(msgs) != 0 {
		t.Fatalf("failed step: %v, %d messages", out, len(msgs))
	}
	var retry message
	for _, m := range p.taken() {
		if m.topic == "eqiad.cp.retry.mediawiki.revision-create" {
			retry = m
		}
	}
	r := decode(t, retry.value)
	if r["continue"].(map[string]any)["eicontinue"] != "4" || r["retries_left"].(float64) != 0 {
		t.Fatalf("retry event %s", retry.value)
	}
	// The retry is due later; run it now.
	j := &job{msg: &Message{TopicPartition: TopicPartition{Topic: "eqiad.cp.retry.mediawiki.revision-create"}, Value: retry.value}}
	if next, _ := h.classify(j, time.Now().Add(time.Hour)); next != nextRun {
		t.Fatalf("retry: next %v", next)
	}
	n := len(p.taken())
	if out := h.handle(ctx, j); out != outcomeDone {
		t.Fatalf("retried step: %v", out)
	}
	last := p.taken()[n:]
	if len(last) != 1 || last[0].topic != "eqiad.resource_change" {
		t.Fatalf("last step wrote %d messages (want 1 event and no continuation)", len(last))
	}
	lastMeta := decode(t, last[0].value)["meta"].(map[string]any)
	titles[lastMeta["uri"].(string)]++
	ids[lastMeta["id"].(string)] = true

	for i := range 5 {
		if uri := fmt.Sprintf("https://en.wikipedia.org/wiki/p_%d", i); titles[uri] != 1 {
			t.Errorf("%s written %d times", uri, titles[uri])
		}
	}
	if len(titles) != 5 || len(ids) != 5 {
		t.Errorf("%d titles and %d distinct ids for 5 pages: %v", len(titles), len(ids), titles)
	}

	// Without a dedupe store a page written twice (a crash before its
	// commit) carries the same ids both times.
	p2 := &recordingProducer{}
	h2 := actionHandler(t, fanoutRule, snd, p2, nil)
	for range 2 {
		if _, out := runJob(t, ctx, h2, "eqiad.mediawiki.revision-create", edit); out != outcomeDone {
			t.Fatalf("first step without dedupe: %v", out)
		}
	}
	again := map[string]int{}
	for _, m := range p2.taken() {
		again[decode(t, m.value)["meta"].(map[string]any)["id"].(string)]++
	}
	if len(again) != 3 {
		t.Errorf("the first step twice: ids %v, want the same 3 (2 events, 1 continuation) twice", again)
	}
	for id, n := range again {
		if n != 2 || (!ids[id] && id != decode(t, cont.value)["meta"].(map[string]any)["id"] && n != 2) {
			t.Errorf("id %s written %d times", id, n)
		}
	}

	// An invalid title is not retried.
	snd.answer = func(*rules.Request) (*Response, error) {
		return &Response{Status: 200, Body: []byte(`{"error":{"code":"invalidtitle","info":"Bad title"}}`)}, nil
	}
	if out, _ := step("eqiad.mediawiki.revision-create", strings.Replace(edit, `"e-1"`, `"e-2"`, 1)); out != outcomeError {
		t.Errorf("invalidtitle: %v, want the error topic", out)
	}
}

// TestNamesAndSubscriptionAcrossDatacenters: with consume_dc codfw and
// produce_dc eqiad a rule reads codfw's topics, its retry topics and (for
// a fanout rule) its continuation topic in eqiad, and writes to eqiad.
// TestFanoutFailureKeepsAnExcerpt: an Action API answer may be megabytes
// (its ResponseLimit); the error event of a failed fan-out request keeps
// only an excerpt of it, as for any request.
func TestFanoutFailureKeepsAnExcerpt(t *testing.T) {
	big := []byte(strings.Repeat("x", 2<<20))
	snd := &scriptSender{answer: func(*rules.Request) (*Response, error) {
		return &Response{Status: 400, Body: big}, nil
	}}
	p := &recordingProducer{}
	h := actionHandler(t, fanoutRule, snd, p, dedupe.NewMemory())
	runJob(t, context.Background(), h, "eqiad.mediawiki.revision-create", edit)
	var found bool
	for _, m := range p.taken() {
		if m.topic != "eqiad.cp.error" {
			continue
		}
		found = true
		var ev errorEvent
		if err := json.Unmarshal(m.value, &ev); err != nil {
			t.Fatal(err)
		}
		if n := len(ev.Details.Body); n == 0 || n > MaxBodyExcerpt {
			t.Errorf("error event body of %d bytes, want an excerpt of at most %d", n, MaxBodyExcerpt)
		}
	}
	if !found {
		t.Fatalf("no error event; produced %d messages", len(p.taken()))
	}
}

func TestNamesAndSubscriptionAcrossDatacenters(t *testing.T) {
	cfg, err := rules.Load([]byte(`
service_name: cp
dc: eqiad
consume_dc: codfw
kafka: {brokers: b}
rules:
  deps:
    topic: mediawiki.revision-create
    fanout: {api: 'http://api/', list: backlinks}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	names := NamesFor(cfg)
	if names.Error() != "eqiad.cp.error" || names.Retry("s") != "eqiad.cp.retry.s" || names.Topic("resource_change") != "eqiad.resource_change" ||
		names.Continue("deps") != "eqiad.cp.continue.deps" || names.Stream("codfw.a") != "a" || names.Stream("eqiad.b") != "b" || names.Stream("c") != "c" {
		t.Errorf("names: %+v", names)
	}
	got := Subscription(cfg, cfg.Rules[0])([]string{
		"codfw.mediawiki.revision-create", "eqiad.mediawiki.revision-create", "mediawiki.revision-create",
		"eqiad.cp.retry.mediawiki.revision-create", "codfw.cp.retry.mediawiki.revision-create",
		"eqiad.cp.continue.deps", "codfw.cp.continue.deps", "eqiad.cp.continue.other",
	})
	want := []string{"codfw.mediawiki.revision-create", "eqiad.cp.retry.mediawiki.revision-create", "eqiad.cp.continue.deps"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("subscription %v, want %v", got, want)
	}
}

// BenchmarkFanoutStep is one fanout step without I/O: a 500-title API
// answer (made once) read, 500 events and a continuation event built and
// handed to a producer that acknowledges at once.
func BenchmarkFanoutStep(b *testing.B) {
	page, err := apiPages(1000, func(*rules.Request) *Response { return nil })(&rules.Request{URI: "http://api/?eilimit=500"})
	if err != nil {
		b.Fatal(err)
	}
	snd := &scriptSender{answer: func(*rules.Request) (*Response, error) { return page, nil }}
	cfg := strings.Replace(fanoutRule, "limit: 2", "limit: 500", 1)
	p := &recordingProducer{}
	h := actionHandler(b, cfg, snd, p, nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		j := &job{msg: &Message{TopicPartition: TopicPartition{Topic: "eqiad.mediawiki.revision-create"}, Value: []byte(edit)}}
		if next, _ := h.classify(j, time.Now()); next != nextRun {
			b.Fatal("not run")
		}
		if out := h.handle(ctx, j); out != outcomeDone {
			b.Fatalf("outcome %v", out)
		}
		p.mu.Lock()
		p.msgs = p.msgs[:0]
		p.mu.Unlock()
		snd.mu.Lock()
		snd.reqs = snd.reqs[:0]
		snd.mu.Unlock()
	}
}

// TestProduceExecOverTheProducerLimit: an event the producer would refuse
// for its size goes to the error topic, and nothing of the exec is
// produced, instead of its produce being tried again forever.
func TestProduceExecOverTheProducerLimit(t *testing.T) {
	snd := &scriptSender{answer: func(*rules.Request) (*Response, error) { return &Response{Status: 200}, nil }}
	p := &recordingProducer{}
	h := actionHandler(t, produceRule, snd, p, nil)
	h.maxProduce = 300 // the first produced event is about 380 bytes
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, out := runJob(t, ctx, h, "codfw.mediawiki.revision-create", edit); out != outcomeError {
		t.Fatalf("outcome %v, want error", out)
	}
	msgs := p.taken()
	if len(msgs) != 1 || msgs[0].topic != h.names.Error() || !strings.Contains(string(msgs[0].value), "over the producer's limit (300") {
		t.Fatalf("produced %+v, want one error event", msgs)
	}
}

// TestReenqueueOverTheProducerLimit: a delayed job too large for the
// producer goes to the error topic rather than being re-enqueued (a
// produce refused every time); one that fits is written back to its topic.
func TestReenqueueOverTheProducerLimit(t *testing.T) {
	const cfg = `
service_name: cpjobqueue
kafka: {brokers: b}
rules:
  job:
    topic: mediawiki.job.refreshLinks
    exec: {method: post, uri: 'http://runner/rpc/RunSingleJob.php', body: '{{globals.message}}'}
`
	delayed := `{"meta":{"id":"d-1","domain":"en.wikipedia.org","stream":"mediawiki.job.refreshLinks","dt":"2026-01-01T00:00:00Z"},` +
		`"type":"refreshLinks","delay_until":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `","params":{"pad":"` + strings.Repeat("x", 500) + `"}}`
	for _, limit := range []int{400, DefaultMaxProduceBytes} {
		p := &recordingProducer{}
		h := actionHandler(t, cfg, &scriptSender{}, p, nil)
		h.maxProduce = limit
		j := &job{msg: &Message{TopicPartition: TopicPartition{Topic: "mediawiki.job.refreshLinks"}, Value: []byte(delayed)}}
		if next, _ := h.classify(j, time.Now()); next != nextWait || j.phase != phaseReenqueue {
			t.Fatalf("classify: %v, phase %v; want a wait to re-enqueue", next, j.phase)
		}
		out := h.handle(context.Background(), j)
		msgs := p.taken()
		switch {
		case limit == 400 && (out != outcomeError || len(msgs) != 1 || msgs[0].topic != h.names.Error()):
			t.Errorf("limit %d: outcome %v, produced %d to %v; want one error event", limit, out, len(msgs), msgs)
		case limit != 400 && (out != outcomeReenqueued || len(msgs) != 1 || msgs[0].topic != "mediawiki.job.refreshLinks"):
			t.Errorf("limit %d: outcome %v, produced %d; want the job re-enqueued", limit, out, len(msgs))
		}
	}
}
