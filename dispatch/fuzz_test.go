package dispatch

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"changeprop/rules"
)

// FuzzHandleMessage takes arbitrary message values, on an input topic and
// on a retry topic, through what a Runner does with a message before any
// I/O: the size bound, decoding, every rule of the production rule sets
// (matching, sampling, claim TTLs, keys), expanding the requests, and the
// checks before sending (unsendable, allowed_hosts); or, for an unusable
// message, its error event. Nothing may panic; a request that passes the
// checks has an http(s) URI within the bounds; an error event is JSON of
// at most the produce bound.
func FuzzHandleMessage(f *testing.F) {
	var all []*rules.Rule
	for _, name := range []string{"jobqueue", "changeprop"} {
		data, err := os.ReadFile("../rules/testdata/" + name + ".yaml")
		if err != nil {
			f.Fatal(err)
		}
		cfg, err := rules.Load(data, nil)
		if err != nil {
			f.Fatal(err)
		}
		all = append(all, cfg.Rules...)
	}
	seed, err := os.ReadFile("../rules/testdata/refreshLinks.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed, false)
	f.Add([]byte(`{"meta":{"domain":"en.wikipedia.org","uri":"https://en.wikipedia.org/wiki/A","stream":"resource_change","dt":"2026-01-01T00:00:00Z"},"tags":["purge"],"type":"htmlCacheUpdate","database":"enwiki","delay_until":"2999-01-01T00:00:00Z"}`), false)
	f.Add([]byte(`{"$schema":"/change-prop/retry/1.0.0","emitter_id":"cpjobqueue#refreshLinks","retries_left":1,"original_event":{"meta":{"domain":"x\r\ny"}},"due_at":"2026-01-01T00:00:00Z"}`), true)
	f.Add([]byte("\xff\x00{"), false)
	limits := rules.Limits{MaxEventBytes: 64 << 10, MaxRequestBytes: 32 << 10, MaxHeaderBytes: 4 << 10}
	allow := func(h string) bool { return !strings.HasPrefix(h, "169.254.") }
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, value []byte, retryTopic bool) {
		for _, r := range all {
			names := Names{ServiceName: "cpjobqueue"}
			h := &handler{rule: r, names: names, retryPrefix: names.RetryPrefix(), limits: limits, allowHost: allow,
				maxProduce: 16 << 10, now: func() time.Time { return now }}
			topic := "mediawiki.job.refreshLinks"
			if retryTopic {
				topic = names.Retry(topic)
			}
			j := &job{msg: &Message{TopicPartition: TopicPartition{Topic: topic}, Value: value}}
			nx, _ := h.classify(j, now)
			if nx != nextRun {
				continue
			}
			if j.phase == phaseError {
				b := newErrorEvent(j.msg, j.ev, value, j.fail, r.Name, names.Emitter(r.Name), names.ErrorStream(), now, h.maxProduce)
				if !json.Valid(b) || len(b) > h.maxProduce {
					t.Fatalf("rule %s: error event of %d bytes, valid %v", r.Name, len(b), json.Valid(b))
				}
				continue
			}
			reqs, err := j.match.Requests(j.ev)
			if err != nil {
				continue // an error event; its templates failed on this event
			}
			for i := range reqs {
				req := &reqs[i]
				h.addHeaders(req, j.ev.Meta("request_id"), h.triggeredBy(j))
				if h.unsendable(req) != "" || h.outbound(req) != "" {
					continue
				}
				if !strings.HasPrefix(req.URI, "http://") && !strings.HasPrefix(req.URI, "https://") {
					t.Fatalf("rule %s: would send to %q", r.Name, req.URI)
				}
				for _, hd := range req.Headers {
					if strings.ContainsAny(hd.Value, "\r\n\x00") {
						t.Fatalf("rule %s: would send header %s %q", r.Name, hd.Name, hd.Value)
					}
				}
			}
		}
	})
}
