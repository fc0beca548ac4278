package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"changeprop/dispatch"
	"changeprop/dispatch/kafka"
	"changeprop/rules"
)

// TestReloadFindsPurgeInstances: a reload finds a purge rule's instances
// (one Runner per cache) by their names, so they are retuned rather than
// reported as new or removed rules; only a cache added to the list is
// reported, as needing a restart.
func TestReloadFindsPurgeInstances(t *testing.T) {
	const cfgYAML = `
service_name: cp
kafka: {brokers: '127.0.0.1:1'}
rules:
  cdn:
    topic: resource_change
    concurrency: %C%
    purge: {caches: [%CACHES%]}
`
	load := func(concurrency, caches string) *rules.Config {
		c, err := rules.Load([]byte(strings.NewReplacer("%C%", concurrency, "%CACHES%", caches).Replace(cfgYAML)), nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	old := load("5", "'http://a:1', 'http://b:2'")
	var runners []*dispatch.Runner
	for _, r := range old.Rule("cdn").Instances() {
		src, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: old.Kafka.Brokers, GroupID: "cp-" + r.Name, Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		runner := dispatch.NewRunner(dispatch.RunnerConfig{Rule: r, Source: src, Log: zerolog.Nop()})
		t.Cleanup(func() { _ = runner.Close() })
		runners = append(runners, runner)
	}
	var logs bytes.Buffer
	rl := newReloader("", old, runners, zerolog.New(&logs))
	rl.apply(load("9", "'http://a:1', 'http://b:2', 'http://c:3'"))
	out := logs.String()
	if strings.Count(out, "new rule needs a restart") != 1 || !strings.Contains(out, `"rule":"cdn@c:3"`) {
		t.Errorf("want one new instance (cdn@c:3) reported:\n%s", out)
	}
	if strings.Contains(out, "removed rule") {
		t.Errorf("an existing instance reported as removed:\n%s", out)
	}
	if !strings.Contains(out, "config reloaded") {
		t.Errorf("not reloaded:\n%s", out)
	}
}
