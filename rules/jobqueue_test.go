package rules

import (
	"fmt"
	"os"
	"testing"
	"time"
)

func loadJobQueue(t testing.TB) *Config {
	t.Helper()
	data, err := os.ReadFile("testdata/jobqueue.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return mustLoad(t, string(data))
}

// consumer returns the single rule of c that reads topic; it fails the
// test when none or several do.
func consumer(t testing.TB, c *Config, topic string) *Rule {
	t.Helper()
	var found *Rule
	for _, r := range c.Rules {
		if r.Subscribes(topic) {
			if found != nil {
				t.Fatalf("topic %s read by %s and %s", topic, found.Name, r.Name)
			}
			found = r
		}
	}
	if found == nil {
		t.Fatalf("topic %s read by no rule", topic)
	}
	return found
}

func TestJobQueueConfig(t *testing.T) {
	c := loadJobQueue(t)
	if len(c.Rules) != 30 {
		t.Fatalf("%d rules, want 30", len(c.Rules))
	}
	for name, want := range map[string]int{
		"categoryMembershipChange": 200, "cirrusSearchLinksUpdate": 300, "EchoNotificationDeleteJob": 5,
		"AssembleUploadChunks": 10, "refreshLinks": 150, "htmlCacheUpdate": 100, "job": 30,
	} {
		if got := c.Rule(name).Concurrency; got != want {
			t.Errorf("%s concurrency %d, want %d", name, got, want)
		}
	}
	if r := c.Rule("cdnPurge"); r.RetryLimit != 0 || r.RateLimit == nil {
		t.Errorf("cdnPurge: %+v", r)
	}
	if r := c.Rule("refreshLinks"); r.ClaimTTL != 24*time.Hour || r.RootClaimTTL != 7*24*time.Hour || r.KeyConcurrency.Limit("enwiki") != 40 {
		t.Errorf("refreshLinks: %+v", r)
	}
	if r := c.Rule("refreshLinksPartitioner"); r.Partition == nil || len(r.Cases[0].Exec) != 0 || r.Partition.Map["enwiki"] != 1 {
		t.Errorf("refreshLinksPartitioner: %+v", r)
	}
	if r := c.Rule("htmlCacheUpdatePartitioner"); r.Partition == nil || r.Partition.Map != nil {
		t.Errorf("htmlCacheUpdatePartitioner: %+v", r.Partition)
	}
	if r := c.Rule("job"); r.Topics[0].Regex == nil || len(r.ExcludeTopics) != 27 {
		t.Errorf("job: %+v", r.Topics)
	}
}

func TestJobQueueEvents(t *testing.T) {
	c := loadJobQueue(t)
	const runJob = "http://jobrunner.svc:9005/rpc/RunSingleJob.php"
	tests := []struct {
		stream    string
		domain    string
		rule      string
		partition string // for partitioners: the destination stream
	}{
		{"mediawiki.job.categoryMembershipChange", "en.wikipedia.org", "categoryMembershipChange", ""},
		{"mediawiki.job.cirrusSearchElasticaWrite", "de.wikipedia.org", "cirrusSearchElasticaWrite", ""},
		{"mediawiki.job.wikibase-addUsagesForPage", "www.wikidata.org", "wikibase-addUsagesForPage", ""},
		{"mediawiki.job.AssembleUploadChunks", "commons.wikimedia.org", "AssembleUploadChunks", ""},
		{"mediawiki.job.refreshLinks", "en.wikipedia.org", "refreshLinksPartitioner", "cpjobqueue.partitioned.mediawiki.job.refreshLinks"},
		{"cpjobqueue.partitioned.mediawiki.job.refreshLinks", "en.wikipedia.org", "refreshLinks", ""},
		{"mediawiki.job.htmlCacheUpdate", "fr.wikipedia.org", "htmlCacheUpdatePartitioner", "cpjobqueue.partitioned.mediawiki.job.htmlCacheUpdate"},
		{"cpjobqueue.partitioned.mediawiki.job.htmlCacheUpdate", "fr.wikipedia.org", "htmlCacheUpdate", ""},
		{"mediawiki.job.newcomerTasksCacheRefreshJob", "ar.wikipedia.org", "job", ""},
		{"mediawiki.job.enqueue", "meta.wikimedia.org", "job", ""},
	}
	for _, tt := range tests {
		t.Run(tt.stream, func(t *testing.T) {
			r := consumer(t, c, tt.stream)
			if r.Name != tt.rule {
				t.Fatalf("rule %s, want %s", r.Name, tt.rule)
			}
			raw := fmt.Sprintf(`{"$schema":"/mediawiki/job/1.0.0","meta":{"domain":%q,"stream":%q,"id":"x"},"database":"enwiki","type":"t","params":{}}`, tt.domain, tt.stream)
			ev := mustEvent(t, raw)
			m, ok := r.Match(ev)
			if !ok {
				t.Fatal("no match")
			}
			reqs, err := m.Requests(ev)
			if err != nil {
				t.Fatal(err)
			}
			if tt.partition != "" {
				stream, _ := r.Partition.Stream.Text(m.Scope(ev))
				if len(reqs) != 0 || stream != tt.partition || r.Partition.KeyValue(ev) != "enwiki" {
					t.Errorf("partitioner: %d requests, stream %q, key %q", len(reqs), stream, r.Partition.KeyValue(ev))
				}
				return
			}
			if len(reqs) != 1 {
				t.Fatalf("%d requests", len(reqs))
			}
			q := reqs[0]
			if q.Method != "POST" || q.URI != runJob || string(q.Body) != raw || q.Timeout != r.Timeout {
				t.Errorf("request %s %s timeout %v body %s", q.Method, q.URI, q.Timeout, q.Body)
			}
			if len(q.Headers) != 2 || q.Header("content-type") != "application/json" || q.Header("host") != tt.domain {
				t.Errorf("headers %+v", q.Headers)
			}
		})
	}
	canary := mustEvent(t, `{"meta":{"domain":"canary","stream":"mediawiki.job.enqueue"}}`)
	if _, v := c.Rule("job").Evaluate(canary); v != Canary {
		t.Errorf("canary event: %v", v)
	}
	if got := c.Rule("AssembleUploadChunks").Timeout; got != 30*time.Minute {
		t.Errorf("upload timeout %v", got)
	}
}
