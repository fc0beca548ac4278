package rules

import (
	"os"
	"testing"
)

func benchEvent(b *testing.B) *Event {
	raw, err := os.ReadFile("testdata/refreshLinks.json")
	if err != nil {
		b.Fatal(err)
	}
	return mustEvent(b, string(raw))
}

func BenchmarkParseEvent(b *testing.B) {
	raw, err := os.ReadFile("testdata/refreshLinks.json")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := ParseEvent(raw); err != nil {
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
