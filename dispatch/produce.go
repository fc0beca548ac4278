package dispatch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/rs/zerolog"
)

// Producer writes messages and reports each one's acknowledgement. It is
// safe for concurrent use.
type Producer interface {
	// ProduceAsync queues a message; done is called exactly once with nil
	// when Kafka acknowledged it, or with the error. A partition < 0 lets
	// the producer choose.
	ProduceAsync(topic string, partition int32, key, value []byte, done func(error)) error
}

// Backoff between attempts to produce an event that Kafka did not take.
const (
	produceBackoffMin = 100 * time.Millisecond
	produceBackoffMax = 10 * time.Second
)

// produceAcked writes one message and waits for its acknowledgement. A
// failure is logged and tried again, with exponential backoff, until it
// succeeds or ctx ends: what an event produced must be acknowledged before
// the event may count as finished, and giving up would lose it.
//
// observe, when not nil, is told the result of every attempt.
func produceAcked(ctx context.Context, p Producer, log zerolog.Logger, topic string, partition int32, key, value []byte, observe func(string, error)) error {
	backoff := produceBackoffMin
	res := make(chan error, 1)
	for attempt := 1; ; attempt++ {
		err := p.ProduceAsync(topic, partition, key, value, func(err error) { res <- err })
		if err == nil {
			select {
			case err = <-res:
			case <-ctx.Done():
				return fmt.Errorf("produce to %s: %w", topic, context.Cause(ctx))
			}
		}
		if observe != nil {
			observe(topic, err)
		}
		if err == nil {
			return nil
		}
		log.Warn().Err(err).Str("to", topic).Int("attempt", attempt).Dur("backoff", backoff).Msg("produce failed; trying again")
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("produce to %s: %w", topic, context.Cause(ctx))
		}
		backoff = min(backoff*2, produceBackoffMax)
	}
}

// NewEventID returns a random (version 4) UUID for meta.id.
func NewEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}
