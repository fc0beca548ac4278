package main

import (
	"os"
	"testing"

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
