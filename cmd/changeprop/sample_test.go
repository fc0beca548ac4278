package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"changeprop/internal/testkit"
)

// TestSampleChangePropagationConfig runs `changeprop run` with
// deploy/examples/changeprop.yaml, its hosts pointed at emulated services:
// an article edit is re-rendered (HTML with if-unmodified-since, then
// summary and mobile from the resource_change it produced), a page delete
// is purged on both caches, and a template edit fans out over the Action
// API (1,200 transclusions in pages of 500) into a re-render of every
// transcluding page.
func TestSampleChangePropagationConfig(t *testing.T) {
	const deps = 1200
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	topics := map[string]int{"eqiad.changeprop.error": 1, "eqiad.changeprop.continue.transclusion_update": 1}
	for _, s := range []string{"mediawiki.revision-create", "mediawiki.page-delete", "resource_change"} {
		topics["eqiad."+s] = 2
		topics["eqiad.changeprop.retry."+s] = 1
	}
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Topics: topics})
	ok := func(*http.Request, []byte) (int, http.Header, []byte, bool) { return 200, nil, []byte(`{}`), true }
	restbase := testkit.NewJobRunner(t, testkit.JobRunnerOptions{Respond: ok})
	caches := []*testkit.JobRunner{testkit.NewJobRunner(t, testkit.JobRunnerOptions{Respond: ok}), testkit.NewJobRunner(t, testkit.JobRunnerOptions{Respond: ok})}
	titles := make([]string, deps)
	for i := range titles {
		titles[i] = fmt.Sprintf("Page %04d", i)
	}
	api := testkit.NewActionAPI(t, testkit.ActionAPIOptions{Dependents: map[string][]string{"Template:Infobox": titles}})

	sample, err := os.ReadFile("../../deploy/examples/changeprop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	hostOf := func(url string) string { return strings.TrimPrefix(url, "http://") }
	cfg := strings.NewReplacer(
		"kafka-main1001.eqiad.wmnet:9092,kafka-main1002.eqiad.wmnet:9092", cluster.Addr(),
		"commit_interval: 1s", "commit_interval: 100ms\n  consumer: {auto.offset.reset: earliest}",
		"listen: 127.0.0.1:7200", "listen: 127.0.0.1:0",
		"restbase.discovery.wmnet:7231", hostOf(restbase.URL()),
		"api-rw.discovery.wmnet", hostOf(strings.TrimSuffix(api.URL(), testkit.ActionAPIPath)),
		"cp1001.eqiad.wmnet:3128", hostOf(caches[0].URL()),
		"cp1002.eqiad.wmnet:3128", hostOf(caches[1].URL()),
	).Replace(string(sample))
	cfgFile := filepath.Join(t.TempDir(), "changeprop.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	const dt = "2024-05-01T10:00:00Z"
	event := func(stream, id, title string, ns int, extra string) testkit.Record {
		return testkit.Record{Topic: "eqiad." + stream, Partition: testkit.AnyPartition, Value: fmt.Appendf(nil,
			`{"meta":{"id":%q,"domain":"en.wikipedia.org","uri":"https://en.wikipedia.org/wiki/%s","stream":%q,"request_id":"req-%s","dt":%q},`+
				`"page_title":%q,"page_namespace":%d%s}`, id, title, stream, id, dt, title, ns, extra)}
	}
	if err := cluster.Produce(ctx,
		event("mediawiki.revision-create", "edit", "Foo_bar", 0, `,"rev_id":123,"rev_parent_id":122`),
		event("mediawiki.revision-create", "tpl", "Template:Infobox", 10, `,"rev_id":900`),
		event("mediawiki.page-delete", "del", "Old_page", 0, ""),
		event("mediawiki.revision-create", "other", "Foo", 0, `,"rev_id":1`)); err != nil {
		t.Fatal(err)
	}
	// The last one is on a wiki the rules leave alone.
	if err := cluster.Produce(ctx, testkit.Record{Topic: "eqiad.mediawiki.revision-create", Partition: testkit.AnyPartition,
		Value: []byte(`{"meta":{"id":"x","domain":"www.mediawiki.org","uri":"https://www.mediawiki.org/wiki/X","stream":"mediawiki.revision-create"},"page_title":"X","page_namespace":0,"rev_id":5}`)}); err != nil {
		t.Fatal(err)
	}

	var logs syncBuffer
	cp := startChangeprop(t, ctx, &logs, "run", "-config", cfgFile)
	const articleRequests = 3 * 2 // html, summary and mobile of Foo_bar and of Foo
	if err := restbase.WaitFor(cp.ctx, articleRequests+deps); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	for _, c := range caches {
		if err := c.WaitFor(cp.ctx, 3); err != nil {
			t.Fatalf("cache: %v\n%s", err, logs.String())
		}
	}
	if err := cp.stop(); err != nil {
		t.Fatalf("changeprop run: %v\n%s", err, logs.String())
	}

	byPath := map[string][]testkit.Request{}
	for _, r := range restbase.Requests() {
		byPath[r.Path] = append(byPath[r.Path], r)
	}
	if len(byPath) != articleRequests+deps {
		t.Errorf("RESTBase saw %d paths, want %d", len(byPath), articleRequests+deps)
	}
	const (
		editHop = "mediawiki.revision-create:https://en.wikipedia.org/wiki/Foo_bar"
		htmlURI = "https://en.wikipedia.org/api/rest_v1/page/html/Foo_bar/123"
	)
	want := map[string]string{ // path -> x-triggered-by
		"/en.wikipedia.org/v1/page/html/Foo_bar/123":        editHop,
		"/en.wikipedia.org/v1/page/summary/Foo_bar":         editHop + ",resource_change:" + htmlURI,
		"/en.wikipedia.org/v1/page/mobile-sections/Foo_bar": editHop + ",resource_change:" + htmlURI,
	}
	tplHop := "mediawiki.revision-create:https://en.wikipedia.org/wiki/Template:Infobox"
	for _, title := range titles {
		under := strings.ReplaceAll(title, " ", "_")
		want["/en.wikipedia.org/v1/page/html/"+under] = tplHop + ",resource_change:https://en.wikipedia.org/wiki/" + under
	}
	for path, chain := range want {
		reqs := byPath[path]
		if len(reqs) != 1 {
			t.Fatalf("%s: %d requests, want 1", path, len(reqs))
		}
		r := reqs[0]
		if r.Method != "GET" || r.Header.Get("X-Triggered-By") != chain || r.Header.Get("Cache-Control") != "no-cache" {
			t.Fatalf("%s: %s %v", path, r.Method, r.Header)
		}
		if strings.Contains(path, "/html/") {
			if ius, err := http.ParseTime(r.Header.Get("If-Unmodified-Since")); err != nil || !ius.Equal(time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)) {
				t.Errorf("%s: if-unmodified-since %q", path, r.Header.Get("If-Unmodified-Since"))
			}
		}
		if strings.HasPrefix(chain, tplHop) && r.Header.Get("X-Restbase-Mode") != "templates" {
			t.Errorf("%s: x-restbase-mode %q", path, r.Header.Get("X-Restbase-Mode"))
		}
	}
	if got := byPath["/www.mediawiki.org/v1/page/html/X/5"]; len(got) != 0 {
		t.Errorf("a wiki outside the rules' domains was re-rendered")
	}
	for i, c := range caches {
		got := map[string]string{}
		for _, r := range c.Requests() {
			got[r.Path] = r.Method + " " + r.Host
		}
		wantPurges := map[string]string{
			"/wiki/Old_page": "PURGE en.wikipedia.org", "/api/rest_v1/page/html/Old_page": "PURGE en.wikipedia.org",
			"/api/rest_v1/page/summary/Old_page": "PURGE en.wikipedia.org",
		}
		if fmt.Sprint(got) != fmt.Sprint(wantPurges) || len(c.Requests()) != 3 {
			t.Errorf("cache %d: %v, want %v", i, got, wantPurges)
		}
	}
	if reqs := api.Requests(); len(reqs) != 3 || reqs[0].Host != "en.wikipedia.org" || reqs[2].Continue != "0|1000" {
		t.Errorf("Action API requests: %+v", reqs)
	}
	if errs, err := cluster.ReadAll(ctx, "eqiad.changeprop.error"); err != nil || len(errs) != 0 {
		t.Errorf("error topic: %d events (%v)", len(errs), err)
	}
}
