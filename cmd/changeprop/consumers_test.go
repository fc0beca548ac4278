package main

import (
	"fmt"
	"os"
	"testing"

	"changeprop/dispatch"
	"changeprop/dispatch/kafka"
	"changeprop/rules"
)

// TestConsumersShareThePrefetchBudget counts the consumers of the
// production-shaped job queue config (one per rule, partitioners
// included) and of the change-propagation sample (one per purge cache
// too), and the queue each gets.
func TestConsumersShareThePrefetchBudget(t *testing.T) {
	for _, tc := range []struct {
		file           string
		consumers, kib int
	}{
		{"../../rules/testdata/jobqueue.yaml", 30, 273},
		{"../../deploy/examples/changeprop.yaml", 7, 1024},
	} {
		b, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := rules.Load(b, nil)
		if err != nil {
			t.Fatal(err)
		}
		n := consumers(cfg)
		t.Logf("%s: %d consumers, %d KB each", tc.file, n, kafka.QueueKBytesFor(n))
		if n != tc.consumers || kafka.QueueKBytesFor(n) != tc.kib {
			t.Errorf("%s: %d consumers with %d KB, want %d with %d KB", tc.file, n, kafka.QueueKBytesFor(n), tc.consumers, tc.kib)
		}
	}
}

// TestMaxProduceBytes: retry and error events are bounded by the producer's
// message.max.bytes less room for framing: 64 KiB, or a quarter of a limit
// under 256 KiB (a small limit once fell back to the 1,000,000-byte default).
func TestMaxProduceBytes(t *testing.T) {
	for _, tt := range []struct {
		set  string
		want int
	}{
		{"", dispatch.DefaultMaxProduceBytes},
		{"message.max.bytes: 1000000", 1_000_000 - 64<<10},
		{"message.max.bytes: 4000000", 4_000_000 - 64<<10},
		{"message.max.bytes: 100000", 75_000},
		{"message.max.bytes: 1000", 750},
	} {
		cfg, err := rules.Load(fmt.Appendf(nil, "service_name: cp\nkafka:\n  brokers: 127.0.0.1:9092\n  producer:\n    %s\nrules:\n  a:\n    topic: t\n    exec: {uri: 'http://r/x'}\n", tt.set), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := maxProduceBytes(cfg); got != tt.want {
			t.Errorf("%q: maxProduceBytes = %d, want %d", tt.set, got, tt.want)
		}
	}
}
