package dispatch

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestRepartitionerBounds: an event over MaxEventBytes, or over the
// producer's MaxProduceBytes once forwarded, is not forwarded (a produce
// refused every time would abort every transaction holding it); its error
// event says why and fits the producer; the events around it are
// forwarded.
func TestRepartitionerBounds(t *testing.T) {
	for _, tt := range []struct {
		name         string
		pad          int
		eventBytes   int
		produceBytes int
		reason       string
	}{
		{"max_event_bytes", 2000, 1000, 0, "over limits.max_event_bytes (1000)"},
		{"producer limit", 5000, 0, 4000, "over the producer's limit (4000"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := loadPartitioner(t, "    partition_map: "+prodMap+"\n    partition_default: 2\n")
			const src, dest = "mediawiki.job.refreshLinks", "cpjobqueue.partitioned.mediawiki.job.refreshLinks"
			f := newFakeTxn(map[string]int32{src: 1, dest: 8, "cpjobqueue.retry." + dest: 8})
			event := func(id, pad string) string {
				return fmt.Sprintf(`{"meta":{"stream":%q,"id":%q},"database":"enwiki","pad":%q}`, src, id, pad)
			}
			f.add(src, 0, event("small-1", ""))
			f.add(src, 0, event("big", strings.Repeat("x", tt.pad)))
			f.add(src, 0, event("small-2", ""))
			r := NewRepartitioner(RepartitionerConfig{
				Rule: cfg.Rules[0], Topics: []string{src}, Source: f, Names: Names{ServiceName: "cpjobqueue"},
				CommitInterval: time.Millisecond, MaxEventBytes: tt.eventBytes, MaxProduceBytes: tt.produceBytes, Log: zerolog.Nop(),
			})
			runUntilWritten(t, r, f, 3)
			for _, rec := range f.outputs() {
				big := bytes.Contains(rec.value, []byte(`big`))
				switch {
				case big && (rec.topic != "cpjobqueue.error" || !bytes.Contains(rec.value, []byte(tt.reason)) ||
					tt.produceBytes > 0 && len(rec.value) > tt.produceBytes):
					t.Errorf("the big event went to %s in %d bytes: %.200s", rec.topic, len(rec.value), rec.value)
				case !big && rec.topic != dest:
					t.Errorf("a small event went to %s: %s", rec.topic, rec.value)
				}
			}
		})
	}
}

// runUntilWritten runs r until f holds n outputs, then stops it; Run must
// return nil.
func runUntilWritten(t *testing.T, r *Repartitioner, f *fakeTxn, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for len(f.outputs()) < n {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("%d of %d written", len(f.outputs()), n)
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
