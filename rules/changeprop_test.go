package rules

import (
	"net/http"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func loadChangeprop(t testing.TB) *Config {
	t.Helper()
	data, err := os.ReadFile("testdata/changeprop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return mustLoad(t, string(data))
}

func TestChangepropConfig(t *testing.T) {
	c := loadChangeprop(t)
	var names []string
	for _, r := range c.Rules {
		names = append(names, r.Name)
	}
	if want := []string{"page_edit", "page_change", "mw_purge", "summary_rerender", "visibility_event"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("rules %v, want %v", names, want)
	}
	for _, r := range c.Rules {
		if r.Concurrency != 250 || r.Timeout != 2*time.Minute || r.RetryDelay != 500*time.Millisecond || r.RetryFactor != 6 {
			t.Errorf("%s: defaults not applied: concurrency %d timeout %v delay %v factor %v",
				r.Name, r.Concurrency, r.Timeout, r.RetryDelay, r.RetryFactor)
		}
		wantLimit := 2
		if r.Name == "summary_rerender" {
			wantLimit = 0 // set to 0 in the rule: no retries, not the default
		}
		if r.RetryLimit != wantLimit {
			t.Errorf("%s: retry_limit %d, want %d", r.Name, r.RetryLimit, wantLimit)
		}
	}
	if r := c.Rule("page_edit"); !r.RetryOn.Matches(404, nil) || !r.RetryOn.Matches(599, nil) || r.RetryOn.Matches(403, nil) {
		t.Error("page_edit retry_on: want 5xx and 404")
	}
	if r := c.Rule("mw_purge"); !r.RetryOn.Matches(550, nil) || r.RetryOn.Matches(404, nil) || !r.Ignore.Matches(412, nil) {
		t.Error("mw_purge: retry_on from defaults, ignore built in")
	}
	if r := c.Rule("page_change"); r.Classify(404, nil, nil) != Ignored || r.Classify(412, nil, nil) != Ignored || len(r.Cases) != 4 {
		t.Errorf("page_change: 404 %v, %d cases", r.Classify(404, nil, nil), len(r.Cases))
	}
	if !c.Rule("visibility_event").NeedsCaptures() || c.Rule("page_edit").NeedsCaptures() {
		t.Error("NeedsCaptures")
	}
	if got := c.TopicName("eqiad.mediawiki.revision-create"); got != "mediawiki.revision-create" {
		t.Errorf("TopicName = %q", got)
	}
}

// uuidV1 is a version-1 UUID as timeuuid() makes them.
var uuidV1 = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-1[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`)

func TestChangepropEvents(t *testing.T) {
	c := loadChangeprop(t)
	const timeout = 2 * time.Minute
	get := func(uri string, headers ...string) Request {
		r := Request{Method: "GET", URI: uri, Timeout: timeout}
		for i := 0; i+1 < len(headers); i += 2 {
			r.Headers = append(r.Headers, Header{headers[i], headers[i+1]})
		}
		return r
	}
	type acts struct {
		rule string
		cas  int       // index of the case that matched
		want []Request // bodies with every timeuuid() replaced by TIMEUUID
	}
	tests := []struct {
		name  string
		topic string // Kafka topic, with the dc prefix
		event string
		acts  []acts             // the rules that act on the event
		other map[string]Verdict // verdicts of other subscribed rules; NoMatch when not listed
	}{
		// (a) page_edit
		{
			name:  "edit of an article",
			topic: "eqiad.mediawiki.revision-create",
			event: `{"$schema":"/mediawiki/revision/create/2.0.0","meta":{"domain":"en.wikipedia.org","stream":"mediawiki.revision-create",
				"uri":"https://en.wikipedia.org/wiki/AC/DC","dt":"2024-05-06T07:08:09Z","id":"e1","request_id":"r1"},
				"database":"enwiki","page_id":1,"page_title":"AC/DC","page_namespace":0,"rev_id":1222333444,"rev_parent_id":1222333000}`,
			acts: []acts{{rule: "page_edit", want: []Request{get(
				"https://en.wikipedia.org/api/rest_v1/page/html/AC%2FDC/1222333444?redirect=false",
				"cache-control", "no-cache",
				"if-unmodified-since", "Mon, 06 May 2024 07:08:09 GMT",
				"x-restbase-parentrevision", "1222333000",
				"x-restbase-mode", "mediawiki.revision-create")}}},
		},
		{
			name:  "page creation: no parent revision, non-ASCII title, time with offset",
			topic: "eqiad.mediawiki.revision-create",
			event: `{"meta":{"domain":"de.wikipedia.org","stream":"mediawiki.revision-create","dt":"2024-11-03T23:59:59.987+01:00"},
				"page_title":"Café_Müller_(Stück)","page_namespace":0,"rev_id":98765}`,
			acts: []acts{{rule: "page_edit", want: []Request{get(
				"https://de.wikipedia.org/api/rest_v1/page/html/Caf%C3%A9_M%C3%BCller_(St%C3%BCck)/98765?redirect=false",
				"cache-control", "no-cache",
				"if-unmodified-since", "Sun, 03 Nov 2024 22:59:59 GMT",
				"x-restbase-mode", "mediawiki.revision-create")}}},
		},
		{
			name:  "edit of a talk page",
			topic: "eqiad.mediawiki.revision-create",
			event: `{"meta":{"domain":"en.wikipedia.org","dt":"2024-05-06T07:08:09Z"},"page_title":"Talk:X","page_namespace":1,"rev_id":1}`,
		},
		{
			name:  "namespace as a string is not 0",
			topic: "eqiad.mediawiki.revision-create",
			event: `{"meta":{"domain":"en.wikipedia.org","dt":"2024-05-06T07:08:09Z"},"page_title":"X","page_namespace":"0","rev_id":1}`,
		},
		{
			name:  "edit on a wiki outside the domain pattern",
			topic: "eqiad.mediawiki.revision-create",
			event: `{"meta":{"domain":"www.wikidata.org","dt":"2024-05-06T07:08:09Z"},"page_title":"Q42","page_namespace":0,"rev_id":1}`,
		},
		{
			name:  "canary edit",
			topic: "eqiad.mediawiki.revision-create",
			event: `{"meta":{"domain":"canary","dt":"2024-05-06T07:08:09Z"},"page_title":"X","page_namespace":0,"rev_id":1}`,
			other: map[string]Verdict{"page_edit": Canary},
		},

		// (b) page_change: cases
		{
			name:  "delete",
			topic: "eqiad.mediawiki.page_change.v1",
			event: `{"meta":{"domain":"en.wikipedia.org","dt":"2024-05-06T07:08:09Z"},"page_change_kind":"delete",
				"page":{"page_id":7,"page_title":"Talk:Foo_&_Bar?","namespace_id":1},"revision":{"rev_id":5}}`,
			acts: []acts{{rule: "page_change", cas: 0, want: []Request{get(
				"https://en.wikipedia.org/api/rest_v1/page/title/Talk%3AFoo_%26_Bar%3F?redirect=false",
				"cache-control", "no-cache")}}},
		},
		{
			name:  "undelete",
			topic: "eqiad.mediawiki.page_change.v1",
			event: `{"meta":{"domain":"fr.wikipedia.org","dt":"2024-05-06T07:08:09Z"},"page_change_kind":"undelete",
				"page":{"page_title":"Tour_Eiffel","namespace_id":0},"revision":{"rev_id":77,"rev_dt":"2024-02-29T12:00:00Z"}}`,
			acts: []acts{{rule: "page_change", cas: 1, want: []Request{get(
				"https://fr.wikipedia.org/api/rest_v1/page/html/Tour_Eiffel/77?redirect=false",
				"cache-control", "no-cache",
				"if-unmodified-since", "Thu, 29 Feb 2024 12:00:00 GMT")}}},
		},
		{
			name:  "move: two requests in order",
			topic: "eqiad.mediawiki.page_change.v1",
			event: `{"meta":{"domain":"en.wikipedia.org","dt":"2024-05-01T00:00:00Z"},"page_change_kind":"move",
				"page":{"page_title":"New/title","namespace_id":0},"revision":{"rev_id":42},
				"prior_state":{"page":{"page_title":"Old title"}}}`,
			acts: []acts{{rule: "page_change", cas: 2, want: []Request{
				get("https://en.wikipedia.org/api/rest_v1/page/title/Old%20title?redirect=false", "cache-control", "no-cache"),
				get("https://en.wikipedia.org/api/rest_v1/page/html/New%2Ftitle/42?redirect=false",
					"cache-control", "no-cache", "if-unmodified-since", "Wed, 01 May 2024 00:00:00 GMT"),
			}}},
		},
		{
			name:  "move of a user page: the case's match_not rejects it, no later case takes it",
			topic: "eqiad.mediawiki.page_change.v1",
			event: `{"meta":{"domain":"en.wikipedia.org","dt":"2024-05-01T00:00:00Z"},"page_change_kind":"move",
				"page":{"page_title":"User:A/B","namespace_id":2},"revision":{"rev_id":42},"prior_state":{"page":{"page_title":"User:A"}}}`,
		},
		{
			name:  "visibility change",
			topic: "eqiad.mediawiki.page_change.v1",
			event: `{"meta":{"domain":"en.wikipedia.org","dt":"2024-05-01T00:00:00Z"},"page_change_kind":"visibility_change",
				"page":{"page_title":"X","namespace_id":0},"revision":{"rev_id":12345678901234567890}}`,
			acts: []acts{{rule: "page_change", cas: 3, want: []Request{
				get("https://en.wikipedia.org/api/rest_v1/page/revision/12345678901234567890", "cache-control", "no-cache"),
			}}},
		},
		{
			name:  "edit: no case",
			topic: "eqiad.mediawiki.page_change.v1",
			event: `{"meta":{"domain":"en.wikipedia.org","dt":"2024-05-01T00:00:00Z"},"page_change_kind":"edit","page":{"page_title":"X","namespace_id":0}}`,
		},

		// (c), (d) resource_change: regex captures and match_not lists
		{
			name:  "purge: named captures, title decoded and encoded again",
			topic: "eqiad.resource_change",
			event: `{"meta":{"domain":"en.wikipedia.org","uri":"https://en.wikipedia.org/wiki/Caf%C3%A9_(AC%2FDC)","dt":"2024-05-06T07:08:09.5Z"},"tags":["purge"]}`,
			acts: []acts{{rule: "mw_purge", want: []Request{get(
				"https://en.wikipedia.org/api/rest_v1/page/html/Caf%C3%A9_(AC%2FDC)?redirect=false",
				"cache-control", "no-cache",
				"if-unmodified-since", "Mon, 06 May 2024 07:08:09 GMT")}}},
		},
		{
			name:  "purge: the tags pattern is a subset",
			topic: "eqiad.resource_change",
			event: `{"meta":{"domain":"it.wikipedia.org","uri":"https://it.wikipedia.org/wiki/Roma","dt":"2024-05-06T07:08:09Z"},"tags":["restbase","purge"]}`,
			acts: []acts{{rule: "mw_purge", want: []Request{get(
				"https://it.wikipedia.org/api/rest_v1/page/html/Roma?redirect=false",
				"cache-control", "no-cache",
				"if-unmodified-since", "Mon, 06 May 2024 07:08:09 GMT")}}},
		},
		{
			name:  "purge of a non-wiki URI",
			topic: "eqiad.resource_change",
			event: `{"meta":{"domain":"en.wikipedia.org","uri":"https://en.wikipedia.org/w/index.php?title=X","dt":"2024-05-06T07:08:09Z"},"tags":["purge"]}`,
		},
		{
			name:  "summary: unnamed captures, revision group present",
			topic: "eqiad.resource_change",
			event: `{"meta":{"domain":"fr.wikipedia.org","uri":"https://fr.wikipedia.org/api/rest_v1/page/html/Tour_Eiffel/98765"},"tags":["restbase"]}`,
			acts: []acts{{rule: "summary_rerender", want: []Request{get(
				"https://fr.wikipedia.org/api/rest_v1/page/summary/Tour_Eiffel?redirect=false",
				"cache-control", "no-cache", "x-restbase-revision", "98765")}}},
		},
		{
			name:  "summary: optional group absent drops its header; encoded title used raw",
			topic: "eqiad.resource_change",
			event: `{"meta":{"domain":"es.wikipedia.org","uri":"https://es.wikipedia.org/api/rest_v1/page/html/Caf%C3%A9"},"tags":["restbase"]}`,
			acts: []acts{{rule: "summary_rerender", want: []Request{get(
				"https://es.wikipedia.org/api/rest_v1/page/summary/Caf%C3%A9?redirect=false", "cache-control", "no-cache")}}},
		},
		{
			name:  "summary: first match_not item",
			topic: "eqiad.resource_change",
			event: `{"meta":{"domain":"en.wiktionary.org","uri":"https://en.wiktionary.org/api/rest_v1/page/html/cat"},"tags":["restbase"]}`,
		},
		{
			name:  "summary: second match_not item",
			topic: "eqiad.resource_change",
			event: `{"meta":{"domain":"test.wikidata.org","uri":"https://test.wikidata.org/api/rest_v1/page/html/Q1"},"tags":["restbase"]}`,
		},
		{
			name:  "summary: third match_not item, an array pattern",
			topic: "eqiad.resource_change",
			event: `{"meta":{"domain":"en.wikipedia.org","uri":"https://en.wikipedia.org/api/rest_v1/page/html/X"},"tags":["no-summary","restbase"]}`,
		},
		{
			name:  "summary: tags missing",
			topic: "eqiad.resource_change",
			event: `{"meta":{"domain":"en.wikipedia.org","uri":"https://en.wikipedia.org/api/rest_v1/page/html/X"}}`,
		},
		{
			name:  "resource_change canary",
			topic: "eqiad.resource_change",
			event: `{"meta":{"domain":"canary","uri":"https://en.wikipedia.org/api/rest_v1/page/html/X"},"tags":["restbase","purge"]}`,
			other: map[string]Verdict{"mw_purge": Canary, "summary_rerender": Canary},
		},

		// (e) a body built with the template functions
		{
			name:  "derived event",
			topic: "eqiad.mediawiki.revision-visibility-change",
			event: `{"meta":{"domain":"en.wikipedia.org","uri":"https://en.wikipedia.org/wiki/Caf%C3%A9","request_id":"r-1",
				"stream":"mediawiki.revision-visibility-change","dt":"2024-05-06T07:08:09Z","id":"ev-1"},"rev_id":1222333444,
				"visibility":{"text":false,"user":true,"comment":true,"sha1":"abc"},
				"prior_state":{"visibility":{"text":true,"user":true,"comment":true},"rev_id":1}}`,
			acts: []acts{{rule: "visibility_event", want: []Request{{Method: "POST", URI: "https://eventgate.svc:4492/v1/events?hasty=true",
				Timeout: timeout, Headers: []Header{{"content-type", "application/json"}},
				Body: []byte(`[{"$schema":"/resource_change/1.0.0","comment":"(no comment)",` +
					`"meta":{"domain":"en.wikipedia.org","dt":"2024-05-06T07:08:09.000Z","id":"TIMEUUID","request_id":"r-1","stream":"resource_change","uri":"https://en.wikipedia.org/wiki/Caf%C3%A9"},` +
					`"page_title":"Café","prior_state":{"visibility":{"comment":true,"text":true,"user":true}},"rev_id":1222333444,` +
					`"tags":["change-prop","mediawiki.revision-visibility-change"],"visibility":{"comment":true,"text":false,"user":true}}]`)}}}},
		},
		{
			name:  "derived event from a canary, kept by discard_canary_events: false",
			topic: "eqiad.mediawiki.revision-visibility-change",
			event: `{"meta":{"domain":"canary","uri":"https://canary/wiki/A<b>&c","stream":"s","dt":"1714979289000"},"comment":"rev-del","rev_id":1,"visibility":{}}`,
			acts: []acts{{rule: "visibility_event", want: []Request{{Method: "POST", URI: "https://eventgate.svc:4492/v1/events?hasty=true",
				Timeout: timeout, Headers: []Header{{"content-type", "application/json"}},
				Body: []byte(`[{"$schema":"/resource_change/1.0.0","comment":"rev-del",` +
					`"meta":{"domain":"canary","dt":"2024-05-06T07:08:09.000Z","id":"TIMEUUID","stream":"resource_change","uri":"https://canary/wiki/A<b>&c"},` +
					`"page_title":"A<b>&c","rev_id":1,"tags":["change-prop","s"],"visibility":{}}]`)}}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := mustEvent(t, tt.event)
			topic := c.TopicName(tt.topic)
			subscribed := 0
			for _, r := range c.Rules {
				if !r.Subscribes(topic) {
					continue
				}
				subscribed++
				var want *acts
				for i := range tt.acts {
					if tt.acts[i].rule == r.Name {
						want = &tt.acts[i]
					}
				}
				m, v := r.Evaluate(ev)
				if want == nil {
					wantV, ok := tt.other[r.Name]
					if !ok {
						wantV = NoMatch
					}
					if v != wantV {
						t.Errorf("%s: verdict %v, want %v", r.Name, v, wantV)
					}
					continue
				}
				if v != Matched {
					t.Errorf("%s: verdict %v, want matched", r.Name, v)
					continue
				}
				if r.Cases[want.cas] != m.Case {
					t.Errorf("%s: case %d did not match", r.Name, want.cas)
				}
				reqs, err := m.Requests(ev)
				if err != nil {
					t.Errorf("%s: %v", r.Name, err)
					continue
				}
				for i := range reqs {
					if uuidV1.Match(reqs[i].Body) {
						reqs[i].Body = uuidV1.ReplaceAll(reqs[i].Body, []byte("TIMEUUID"))
					}
				}
				if !reflect.DeepEqual(reqs, want.want) {
					t.Errorf("%s:\n got  %s\n want %s", r.Name, formatRequests(reqs), formatRequests(want.want))
				}
			}
			if subscribed == 0 {
				t.Fatalf("no rule reads %s", tt.topic)
			}
			for _, a := range tt.acts {
				if !c.Rule(a.rule).Subscribes(topic) {
					t.Errorf("%s does not read %s", a.rule, tt.topic)
				}
			}
		})
	}
}

func formatRequests(reqs []Request) string {
	var b strings.Builder
	for _, r := range reqs {
		b.WriteString("\n  " + r.Method + " " + r.URI + " (" + r.Timeout.String() + ")")
		for _, h := range r.Headers {
			b.WriteString("\n    " + h.Name + ": " + h.Value)
		}
		if r.Body != nil {
			b.WriteString("\n    body " + string(r.Body))
		}
	}
	return b.String()
}

// TestChangepropDateHeader holds if-unmodified-since to what the Node
// service sent: new Date(x).toUTCString(), i.e. RFC 822 / RFC 7231
// IMF-fixdate in GMT with a two-digit day, whatever form meta.dt takes.
func TestChangepropDateHeader(t *testing.T) {
	r := loadChangeprop(t).Rule("page_edit")
	tests := []struct {
		dt   string // JSON value of meta.dt
		want string
	}{
		{`"2024-05-06T07:08:09Z"`, "Mon, 06 May 2024 07:08:09 GMT"},
		{`"2024-05-06T07:08:09.999Z"`, "Mon, 06 May 2024 07:08:09 GMT"},
		{`"2024-05-06T09:08:09+02:00"`, "Mon, 06 May 2024 07:08:09 GMT"},
		{`"2024-05-06T07:08:09"`, "Mon, 06 May 2024 07:08:09 GMT"},
		{`"1714979289000"`, "Mon, 06 May 2024 07:08:09 GMT"},
		{`1714979289000`, "Mon, 06 May 2024 07:08:09 GMT"},
		{`"2001-01-01T00:00:00Z"`, "Mon, 01 Jan 2001 00:00:00 GMT"},
		{`"2023-12-31T23:59:59Z"`, "Sun, 31 Dec 2023 23:59:59 GMT"},
	}
	for _, tt := range tests {
		ev := mustEvent(t, `{"meta":{"domain":"en.wikipedia.org","dt":`+tt.dt+`},"page_title":"X","page_namespace":0,"rev_id":1}`)
		m, ok := r.Match(ev)
		if !ok {
			t.Fatalf("%s: no match", tt.dt)
		}
		reqs, err := m.Requests(ev)
		if err != nil {
			t.Fatalf("%s: %v", tt.dt, err)
		}
		got := reqs[0].Header("if-unmodified-since")
		if got != tt.want {
			t.Errorf("dt %s: %q, want %q", tt.dt, got, tt.want)
		}
		if parsed, err := time.Parse(http.TimeFormat, got); err != nil || parsed.Format(http.TimeFormat) != got {
			t.Errorf("dt %s: %q is not an HTTP date: %v", tt.dt, got, err)
		}
	}
	// An event whose dt is not a date is an expansion error, not a request
	// with a bad header.
	ev := mustEvent(t, `{"meta":{"domain":"en.wikipedia.org","dt":"last Tuesday"},"page_title":"X","page_namespace":0,"rev_id":1}`)
	m, _ := r.Match(ev)
	if _, err := m.Requests(ev); err == nil {
		t.Error("bad dt: no error")
	}
}
