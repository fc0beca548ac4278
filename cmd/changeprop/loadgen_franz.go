package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Load generator clients (-client).
const (
	clientLibrdkafka = "librdkafka" // the producer changeprop itself uses
	clientFranz      = "franz-go"   // a pure-Go producer: no cgo calls, cheaper per event
)

// franzProducer produces through franz-go's kgo client. `make bench` uses it
// for the latency runs, where the generator shares the cores with the
// measured process: at 17,000 events/s it takes less CPU than librdkafka
// (docs/benchmarks.md, "The generator's client").
type franzProducer struct {
	cl *kgo.Client
}

// franzProps are the -X properties that -client franz-go understands, with
// librdkafka's names so that one command line suits both clients.
var franzProps = map[string]string{
	"linger.ms":        "milliseconds, fractions allowed",
	"compression.type": "none, gzip, snappy, lz4 or zstd",
	"acks":             "all, -1, 1 or 0 (1 and 0 produce without idempotence)",
}

// franzOpts turns -X properties into kgo options over the defaults of
// changeprop's own producer (snappy, linger 5 ms, idempotent acks=all),
// reporting every property it cannot take.
func franzOpts(props map[string]string) ([]kgo.Opt, error) {
	opts := []kgo.Opt{
		kgo.ProducerLinger(5 * time.Millisecond),
		kgo.ProducerBatchCompression(kgo.SnappyCompression()),
		kgo.MaxBufferedRecords(1_000_000),
		kgo.AllowAutoTopicCreation(),
	}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(props)) {
		v := props[k]
		switch k {
		case "linger.ms":
			ms, err := strconv.ParseFloat(v, 64)
			if err != nil || ms < 0 {
				errs = append(errs, fmt.Errorf("-X linger.ms=%s: want a non-negative number of milliseconds", v))
				continue
			}
			opts = append(opts, kgo.ProducerLinger(time.Duration(ms*float64(time.Millisecond))))
		case "compression.type":
			codec, ok := map[string]kgo.CompressionCodec{"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(),
				"snappy": kgo.SnappyCompression(), "lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression()}[v]
			if !ok {
				errs = append(errs, fmt.Errorf("-X compression.type=%s: want %s", v, franzProps[k]))
				continue
			}
			opts = append(opts, kgo.ProducerBatchCompression(codec))
		case "acks":
			switch v {
			case "all", "-1":
				opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
			case "1":
				opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
			case "0":
				opts = append(opts, kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite())
			default:
				errs = append(errs, fmt.Errorf("-X acks=%s: want %s", v, franzProps[k]))
			}
		default:
			known := slices.Sorted(maps.Keys(franzProps))
			errs = append(errs, fmt.Errorf("-X %s: not a property of -client %s (it takes %s)", k, clientFranz, strings.Join(known, ", ")))
		}
	}
	return opts, errors.Join(errs...)
}

// newFranzProducer connects a client with opts, from franzOpts.
func newFranzProducer(brokers string, opts []kgo.Opt) (*franzProducer, error) {
	cl, err := kgo.NewClient(append(slices.Clip(opts), kgo.SeedBrokers(strings.Split(brokers, ",")...))...)
	if err != nil {
		return nil, err
	}
	return &franzProducer{cl: cl}, nil
}

// ProduceAsync hands the message to the client; done runs once Kafka
// acknowledged it or the client gave up. The client keeps value until
// then: the caller must not change it. A partition below 0 lets the client
// choose (sticky, as librdkafka does for messages without a key).
func (p *franzProducer) ProduceAsync(topic string, partition int32, key, value []byte, done func(error)) error {
	if partition >= 0 {
		return fmt.Errorf("-client %s: loadgen produces to partitions the client chooses, not %d", clientFranz, partition)
	}
	p.cl.Produce(context.Background(), &kgo.Record{Topic: topic, Key: key, Value: value}, func(_ *kgo.Record, err error) {
		done(err)
	})
	return nil
}

// Close waits up to timeout for every message to be acknowledged.
func (p *franzProducer) Close(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_ = p.cl.Flush(ctx) // what is still unacknowledged fails below, and is counted as failed
	p.cl.Close()
}
