package rules

import (
	"reflect"
	"testing"
	"time"
)

func TestRequests(t *testing.T) {
	const raw = `{"meta":{"domain":"en.wikipedia.org","uri":"https://en.wikipedia.org/wiki/A/B"},"type":"x","n":5,"title":"A/B c"}`
	tests := []struct {
		name string
		rule string
		want []Request
	}{
		{"job runner", `
exec:
  method: post
  uri: http://jobrunner.svc:9005/rpc/RunSingleJob.php
  headers:
    content-type: application/json
    host: '{{globals.message.meta.domain}}'
  body: '{{globals.message}}'`,
			[]Request{{Method: "POST", URI: "http://jobrunner.svc:9005/rpc/RunSingleJob.php", Timeout: 7 * time.Minute,
				Headers: []Header{{"content-type", "application/json"}, {"host", "en.wikipedia.org"}}, Body: []byte(raw)}}},
		{"get with encoded path and query", `
timeout: 1000
exec:
  uri: 'http://rest.svc/{message.meta.domain}/page/{message.title}'
  query: {redirect: false, title: '{{message.title}}'}
  timeout: 5s`,
			[]Request{{Method: "GET", URI: "http://rest.svc/en.wikipedia.org/page/A%2FB%20c?redirect=false&title=A%2FB+c", Timeout: 5 * time.Second}}},
		{"object body and several execs", `
timeout: 1000
exec:
  - method: put
    uri: 'http://a.svc/x?y=1'
    query: {n: '{{message.n}}'}
    headers: {X-Custom: 'v-{{message.n}}', x-missing: '{{message.nope}}'}
    body: {type: '{{message.type}}', n: '{{message.n}}', fixed: 3, list: ['{{message.meta.domain}}', true], gone: '{{message.nope}}'}
  - uri: 'http://b.svc/'
    body: 'text {{message.n}}'
  - uri: 'http://c.svc/'
    headers: {content-type: application/json; charset=utf-8}
    body: 'text'`,
			[]Request{
				{Method: "PUT", URI: "http://a.svc/x?y=1&n=5", Timeout: time.Second, Headers: []Header{{"x-custom", "v-5"}},
					Body: []byte(`{"fixed":3,"list":["en.wikipedia.org",true],"n":5,"type":"x"}`)},
				{Method: "GET", URI: "http://b.svc/", Timeout: time.Second, Body: []byte("text 5")},
				{Method: "GET", URI: "http://c.svc/", Timeout: time.Second, Headers: []Header{{"content-type", "application/json; charset=utf-8"}}, Body: []byte(`"text"`)},
			}},
		{"no exec", ``, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ruleWith(t, tt.rule)
			ev := mustEvent(t, raw)
			m, ok := r.Match(ev)
			if !ok {
				t.Fatal("no match")
			}
			got, err := m.Requests(ev)
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				if c := cap(got[i].Headers) - len(got[i].Headers); c < AddedHeaders {
					t.Errorf("request %d has room for %d more headers, want %d", i, c, AddedHeaders)
				}
				if len(got[i].Headers) == 0 {
					got[i].Headers = nil // the want lists leave empty headers out
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestRequestsRawBodyIsShared(t *testing.T) {
	r := ruleWith(t, "exec: {method: post, uri: 'http://a/', body: '{{message}}'}")
	ev := mustEvent(t, `{"meta":{}, "x": 1.50}`)
	m, _ := r.Match(ev)
	reqs, _ := m.Requests(ev)
	if &reqs[0].Body[0] != &ev.Raw[0] {
		t.Error("body is a copy of ev.Raw")
	}
}

func TestRequestsExpandError(t *testing.T) {
	r := ruleWith(t, "exec: {uri: 'http://a/{date(message.when)}'}")
	ev := mustEvent(t, `{"meta":{},"when":"not a date"}`)
	m, _ := r.Match(ev)
	if _, err := m.Requests(ev); err == nil {
		t.Error("no error")
	}
}
