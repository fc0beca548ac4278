package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"changeprop/internal/jobgen"
	"changeprop/internal/testkit"
)

func TestLoadgenFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr []string // every one must be reported
	}{
		{name: "minimal", args: []string{"-brokers", "b:9092"}},
		{name: "full", args: []string{"-brokers", "b:9092", "-rate", "0", "-n", "10", "-duration", "1m",
			"-topics", "refreshLinks, mediawiki.job.cdnPurge", "-seed", "3", "-min-size", "100", "-max-size", "100",
			"-X", "linger.ms=0", "-X", "acks=1"}},
		{name: "no padding", args: []string{"-brokers", "b", "-min-size", "9000", "-max-size", "0"}},
		{name: "no brokers", args: nil, wantErr: []string{"-brokers is required"}},
		{name: "everything wrong", args: []string{"-rate", "-1", "-n", "-2", "-duration", "-1s", "-min-size", "5000",
			"-max-size", "4096", "-delay-rate", "1.5", "-workers", "0", "-max-pending", "0", "-topics", "a b"},
			wantErr: []string{"-brokers is required", "-rate -1 is negative", "-n -2 is negative", "-duration -1s is negative",
				"-min-size 5000 is above -max-size 4096", "-delay-rate 1.5", "-workers 0", "-max-pending 0", `"a b" is not a job type`}},
		{name: "negative size", args: []string{"-brokers", "b", "-min-size", "-1"}, wantErr: []string{"must not be negative"}},
		{name: "bad -X", args: []string{"-brokers", "b", "-X", "novalue"}, wantErr: []string{"key=value"}},
		{name: "stray argument", args: []string{"-brokers", "b", "extra"}, wantErr: []string{"unexpected arguments"}},
		{name: "franz-go", args: []string{"-brokers", "b", "-client", "franz-go", "-X", "linger.ms=0.5",
			"-X", "compression.type=lz4", "-X", "acks=1"}},
		{name: "franz-go bad properties", args: []string{"-brokers", "b", "-client", "franz-go", "-X", "linger.ms=-1",
			"-X", "compression.type=brotli", "-X", "acks=2", "-X", "queue.buffering.max.ms=1"},
			wantErr: []string{"linger.ms=-1", "compression.type=brotli", "acks=2", "queue.buffering.max.ms: not a property of -client franz-go"}},
		{name: "unknown client", args: []string{"-brokers", "b", "-client", "kgo"}, wantErr: []string{`-client "kgo"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseLoadgenFlags(tt.args, io.Discard)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if o.seed == 0 || o.workers < 1 {
					t.Errorf("defaults not applied: %+v", o)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	o, err := parseLoadgenFlags([]string{"-brokers", "b", "-topics", "refreshLinks,mediawiki.job.cdnPurge", "-X", "linger.ms=0"}, io.Discard)
	if err != nil || len(o.topics) != 2 || o.topics[0] != "refreshLinks" || o.topics[1] != "cdnPurge" || o.props["linger.ms"] != "0" {
		t.Errorf("parsed %+v, %v", o, err)
	}
}

// TestLoadgenToCluster produces N events into a testkit cluster with the
// real command, through each client, and reads them back.
func TestLoadgenToCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	for _, client := range []string{clientLibrdkafka, clientFranz} {
		t.Run(client, func(t *testing.T) { testLoadgenToCluster(t, client) })
	}
}

func testLoadgenToCluster(t *testing.T, client string) {
	cluster := testkit.NewCluster(t, testkit.ClusterOptions{Brokers: 1,
		Topics: map[string]int{"mediawiki.job.refreshLinks": 2, "mediawiki.job.cdnPurge": 2}})
	var stdout, stderr bytes.Buffer
	code := run([]string{"loadgen", "-brokers", cluster.Addr(), "-rate", "0", "-n", "60", "-topics", "refreshLinks,cdnPurge",
		"-min-size", "512", "-max-size", "4096", "-delay-rate", "0.5", "-seed", "9", "-report", "0",
		"-client", client, "-X", "linger.ms=1"}, nil, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("loadgen exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "produced 60 events") || !strings.Contains(stdout.String(), "60 acknowledged, 0 failed") {
		t.Errorf("summary: %s", stdout.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	total, delayed := 0, 0
	for _, topic := range []string{"mediawiki.job.refreshLinks", "mediawiki.job.cdnPurge"} {
		recs, err := cluster.ReadAll(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		total += len(recs)
		for _, r := range recs {
			var ev struct {
				Type       string `json:"type"`
				DelayUntil string `json:"delay_until"`
				Meta       struct{ Stream, DT string }
			}
			if err := json.Unmarshal(r.Value, &ev); err != nil {
				t.Fatalf("%s: %v", r.Value, err)
			}
			if "mediawiki.job."+ev.Type != topic || ev.Meta.Stream != topic {
				t.Errorf("event of type %q on %s", ev.Type, topic)
			}
			if len(r.Value) < 512-64 || len(r.Value) > 4096+64 {
				t.Errorf("event of %d bytes, want 0.5-4 KB", len(r.Value))
			}
			if _, err := time.Parse(time.RFC3339Nano, ev.Meta.DT); err != nil || len(ev.Meta.DT) != len("2006-01-02T15:04:05.000000Z") {
				t.Errorf("meta.dt %q: want microseconds", ev.Meta.DT)
			}
			if ev.DelayUntil != "" {
				delayed++
			}
		}
	}
	if total != 60 {
		t.Errorf("read %d events, want 60", total)
	}
	if delayed == 0 || delayed == 60 {
		t.Errorf("%d of 60 events delayed, want about half", delayed)
	}
}

// timedProducer acknowledges every message at once and records when each
// was produced.
type timedProducer struct {
	mu     sync.Mutex
	at     []time.Time
	values [][]byte
}

func (p *timedProducer) ProduceAsync(_ string, _ int32, _, value []byte, done func(error)) error {
	p.mu.Lock()
	p.at = append(p.at, time.Now())
	p.values = append(p.values, append([]byte(nil), value...))
	p.mu.Unlock()
	done(nil)
	return nil
}

// TestLoadgenRate: a fixed rate is never exceeded, and it is issued as a
// stream, not in bursts of a tick's worth.
func TestLoadgenRate(t *testing.T) {
	const rate = 4000
	prod := &timedProducer{}
	l := newLoadgen(loadgenOptions{rate: rate, workers: 2, maxPending: 1000, maxSize: 0, seed: 1}, prod)
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	start := time.Now()
	l.run(ctx)
	prod.mu.Lock()
	defer prod.mu.Unlock()
	if len(prod.at) < rate/10 {
		t.Fatalf("%d events in 600ms at %d/s", len(prod.at), rate)
	}
	const window = 2 * time.Millisecond
	busiest := map[time.Duration]int{} // events per window
	for i, at := range prod.at {
		// The i+1-th ticket is issued once rate × elapsed reaches i+1.
		if allowed := int(at.Sub(start).Seconds()*rate) + 1; i+1 > allowed {
			t.Fatalf("event %d produced %v after the start: over the rate (%d allowed)", i+1, at.Sub(start), allowed)
		}
		busiest[at.Sub(start).Truncate(window)]++
	}
	// 8 events are due per window; a 10 ms tick put 40 in one window and
	// none in the next four.
	windows := 0
	for _, n := range busiest {
		if n > 0 {
			windows++
		}
	}
	if span := prod.at[len(prod.at)-1].Sub(start); windows < int(span/window)*6/10 {
		t.Errorf("events in %d of the %d %v windows of %v: issued in bursts", windows, span/window, window, span)
	}
}

// TestLoadgenPregenerate: with -pregenerate every event is made before the
// run, and stamped and signed as it is sent: each meta.dt is its send time,
// not its making, and the run ends when all are sent.
func TestLoadgenPregenerate(t *testing.T) {
	const n = 300
	prod := &timedProducer{}
	l := newLoadgen(loadgenOptions{rate: 3000, n: n, workers: 2, maxPending: 1000, minSize: 512, maxSize: 4096,
		seed: 2, unique: true, preciseDT: true, pregen: true, topics: []string{"refreshLinks", "cdnPurge"}}, prod)
	made, _ := l.pregenerate()
	if made != n {
		t.Fatalf("made %d events, want %d", made, n)
	}
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l.run(ctx)
	if l.err != nil || ctx.Err() != nil {
		t.Fatalf("run: %v, ctx %v", l.err, ctx.Err())
	}
	prod.mu.Lock()
	defer prod.mu.Unlock()
	if len(prod.values) != n {
		t.Fatalf("sent %d events, want %d", len(prod.values), n)
	}
	types := map[string]int{}
	for i, v := range prod.values {
		if err := jobgen.VerifySignature(v); err != nil {
			t.Fatal(err)
		}
		var ev struct {
			Type string `json:"type"`
			Meta struct{ DT string }
		}
		if err := json.Unmarshal(v, &ev); err != nil {
			t.Fatal(err)
		}
		types[ev.Type]++
		dt, err := time.Parse(time.RFC3339Nano, ev.Meta.DT)
		if err != nil {
			t.Fatal(err)
		}
		if dt.Before(start.Add(-time.Millisecond)) || dt.After(prod.at[i].Add(time.Millisecond)) {
			t.Fatalf("event %d: meta.dt %v, sent at %v, run started %v: not stamped as it was sent", i, dt, prod.at[i], start)
		}
	}
	if types["refreshLinks"] != n/2 || types["cdnPurge"] != n/2 {
		t.Errorf("job types %v, want %d of each", types, n/2)
	}
	if _, err := parseLoadgenFlags([]string{"-brokers", "x", "-pregenerate", "-rate", "100"}, io.Discard); err == nil {
		t.Error("-pregenerate without -n or -duration was taken")
	}
}
