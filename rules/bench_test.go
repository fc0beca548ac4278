package rules

import (
	"changeprop/internal/jobgen"
	"os"
	"testing"
)

// benchRaw returns the 1.1 KB refreshLinks job event of testdata.
func benchRaw(b *testing.B) []byte {
	raw, err := os.ReadFile("testdata/refreshLinks.json")
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

func benchEvent(b *testing.B) *Event { return mustEvent(b, string(benchRaw(b))) }

func BenchmarkParseEvent(b *testing.B) {
	raw := benchRaw(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := ParseEvent(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseEventProjected decodes the same event as the production
// refreshLinks rule reads it: only its paths and the service fields are
// built; the rest is checked and passed over.
func BenchmarkParseEventProjected(b *testing.B) { benchParseFor(b, "refreshLinks") }

// benchParseFor decodes the event for the production rule named rule.
func benchParseFor(b *testing.B, rule string) {
	raw := benchRaw(b)
	r := loadJobQueue(b).Rule(rule)
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := r.ParseEvent(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMatch matches the 1 KB job event against the production-shaped
// rule that reads it.
func BenchmarkMatch(b *testing.B) {
	r := loadJobQueue(b).Rule("refreshLinks")
	ev := benchEvent(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := r.Match(ev); !ok {
			b.Fatal("no match")
		}
	}
}

// BenchmarkMatchRegexCaptures matches with regex patterns whose groups a
// template reads, the expensive kind of rule.
func BenchmarkMatchRegexCaptures(b *testing.B) {
	r := ruleWith(b, `
match:
  meta: {uri: '/^https:\/\/(?<domain>[^/]+)\/wiki\/(?<title>.+)$/', stream: '/^mediawiki\.job\./'}
  type: refreshLinks
  params: {causeAction: '/^(edit|move)-page$/'}
exec: {uri: 'http://rest.svc/{{match.meta.uri.domain}}/{match.meta.uri.title}'}`)
	ev := benchEvent(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := r.Match(ev); !ok {
			b.Fatal("no match")
		}
	}
}

// BenchmarkRequests expands the job runner request (host header from the
// event, the event itself as body) for the 1 KB job event.
func BenchmarkRequests(b *testing.B) {
	r := loadJobQueue(b).Rule("refreshLinks")
	ev := benchEvent(b)
	m, _ := r.Match(ev)
	b.ReportAllocs()
	for b.Loop() {
		reqs, err := m.Requests(ev)
		if err != nil || len(reqs) != 1 {
			b.Fatal(err)
		}
	}
}

// BenchmarkRequestsTemplated expands a request with encoded path segments,
// a query and an object body.
func BenchmarkRequestsTemplated(b *testing.B) {
	r := ruleWith(b, `
exec:
  method: post
  uri: 'http://rest.svc/{message.meta.domain}/v1/page/{message.params.title}'
  query: {redirect: false, rev: '{{message.params.triggeringRevisionId}}'}
  headers: {content-type: application/json, x-request-id: '{{message.meta.request_id}}'}
  body: {title: '{{message.params.title}}', db: '{{message.database}}', pages: '{{message.params.pages}}'}`)
	ev := benchEvent(b)
	m, _ := r.Match(ev)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Requests(ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkClassify(b *testing.B) {
	r := loadJobQueue(b).Rule("refreshLinks")
	header := func(string) string { return "" }
	b.ReportAllocs()
	for b.Loop() {
		if r.Classify(503, header, nil) != Retry {
			b.Fatal("not retry")
		}
	}
}

// BenchmarkChangepropPageEdit matches a revision-create event against the
// RESTBase re-render rule of testdata/changeprop.yaml and expands its
// request: an encoded title, a date() header and a query.
func BenchmarkChangepropPageEdit(b *testing.B) {
	r := loadChangeprop(b).Rule("page_edit")
	ev := mustEvent(b, `{"$schema":"/mediawiki/revision/create/2.0.0","meta":{"domain":"en.wikipedia.org","stream":"mediawiki.revision-create",`+
		`"uri":"https://en.wikipedia.org/wiki/Albert_Einstein","dt":"2024-05-06T07:08:09Z","id":"6c2a8f4e-1b3d-11ef-9a7c-1866da5c8f10",`+
		`"request_id":"a3f1c2de-5b6a-4c7e-9d8f-0e1a2b3c4d5e"},"database":"enwiki","page_id":736,"page_title":"Albert_Einstein",`+
		`"page_namespace":0,"rev_id":1222333444,"rev_parent_id":1222333000,"rev_timestamp":"2024-05-06T07:08:09Z"}`)
	b.ReportAllocs()
	for b.Loop() {
		m, ok := r.Match(ev)
		if !ok {
			b.Fatal("no match")
		}
		if reqs, err := m.Requests(ev); err != nil || len(reqs) != 1 {
			b.Fatal(err)
		}
	}
}

// BenchmarkJob is the rules work of one job for the production refreshLinks
// rule, as the dispatcher does it: decode for the rule, evaluate, expand
// the concurrency key and the request, classify the answer.
func BenchmarkJob(b *testing.B) {
	raw := benchRaw(b)
	r := loadJobQueue(b).Rule("refreshLinks")
	b.ReportAllocs()
	for b.Loop() {
		ev, err := r.ParseEvent(raw)
		if err != nil {
			b.Fatal(err)
		}
		m, v := r.Evaluate(ev)
		if v != Matched {
			b.Fatal(v)
		}
		if key, _ := r.ConcurrencyKey.Text(m.Scope(ev)); key != "enwiki" {
			b.Fatal(key)
		}
		reqs, err := m.Requests(ev)
		if err != nil || len(reqs) != 1 {
			b.Fatal(err)
		}
		if r.Classify(200, nil, nil) != Done {
			b.Fatal("not done")
		}
	}
}

// BenchmarkTemplateText expands a key template with literal text and an
// encoded value, as limiter keys are ('html:{message.meta.uri}').
func BenchmarkTemplateText(b *testing.B) {
	t, err := ParseTemplate("html:{message.meta.uri}")
	if err != nil {
		b.Fatal(err)
	}
	s := benchEvent(b).Scope()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := t.Text(s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseEventPartitioner decodes the event as the production
// refreshLinks partitioner reads it, which moves it to its partitioned
// topic: meta.stream and the partition key.
func BenchmarkParseEventPartitioner(b *testing.B) { benchParseFor(b, "refreshLinksPartitioner") }

// BenchmarkParseEventGenerated decodes generated 0.5-4 KB refreshLinks
// events (the bench's, padded with a pages object) for the production
// refreshLinks rule: most of each is checked and passed over.
func BenchmarkParseEventGenerated(b *testing.B) {
	events, mean := jobgen.BenchEvents("refreshLinks", 64)
	r := loadJobQueue(b).Rule("refreshLinks")
	b.SetBytes(int64(mean))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := r.ParseEvent(events[i%len(events)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
