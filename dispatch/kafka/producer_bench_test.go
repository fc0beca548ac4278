package kafka_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"changeprop/dispatch/kafka"
	"changeprop/internal/testkit"
)

// BenchmarkProduceAsync writes 1.5 KB messages to a kfake cluster and
// waits for their acknowledgements, 1,000 in flight: the cost in this
// process of what changeprop produces (retries, errors, repartitioned
// jobs, events of rules).
func BenchmarkProduceAsync(b *testing.B) {
	cluster := testkit.NewCluster(b, testkit.ClusterOptions{Brokers: 1, Topics: map[string]int{"bench": 4}})
	p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: cluster.Addr(), Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(10 * time.Second)
	value := bytes.Repeat([]byte(`{"x":"0123456789"}`), 85)
	inflight := make(chan struct{}, 1000)
	failed := make(chan error, 1)
	done := func(err error) {
		if err != nil {
			select {
			case failed <- err:
			default:
			}
		}
		<-inflight
	}
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	for b.Loop() {
		inflight <- struct{}{}
		if err := p.ProduceAsync("bench", -1, nil, value, done); err != nil {
			b.Fatal(err)
		}
	}
	for range cap(inflight) {
		inflight <- struct{}{}
	}
	select {
	case err := <-failed:
		b.Fatal(err)
	default:
	}
}
