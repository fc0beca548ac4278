package dispatch

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
)

// Producer writes messages and reports each one's acknowledgement. It is
// safe for concurrent use.
type Producer interface {
	// ProduceAsync queues a message; done is called exactly once with nil
	// when Kafka acknowledged it, or with the error. A partition < 0 lets
	// the producer choose. An error wrapping ErrFatal (returned or passed
	// to done) means no produce will succeed again.
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
		if errors.Is(err, ErrFatal) {
			return fmt.Errorf("produce to %s: %w", topic, err) // the service stops (Producer.Fatal)
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
	return formatUUID(b, 4)
}

// derivedEventID returns a name-based (version 5, SHA-1) UUID of parts:
// the same parts always give the same id, so that an event written again
// (a fanout page asked for again after a crash) carries the id of its
// first copy and deduplicates by meta.id.
func derivedEventID(parts ...string) string {
	h := sha1.New()
	h.Write([]byte("changeprop"))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	var b [16]byte
	copy(b[:], h.Sum(nil))
	return formatUUID(b, 5)
}

// formatUUID sets b's version and variant bits and writes it out.
func formatUUID(b [16]byte, version byte) string {
	b[6] = b[6]&0x0f | version<<4
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

// message is one message to produce.
type message struct {
	topic     string
	partition int32 // < 0: the producer's choice
	key       []byte
	value     []byte
}

// produceAllAcked writes messages, in order, and returns when Kafka
// acknowledged every one; those that fail are tried again as produceAcked
// does. It returns an error only when ctx ends first.
func produceAllAcked(ctx context.Context, p Producer, log zerolog.Logger, msgs []message, observe func(string, error)) error {
	type result struct {
		i   int
		err error
	}
	results := make(chan result, len(msgs)) // late reports never block
	for i, m := range msgs {
		if err := p.ProduceAsync(m.topic, m.partition, m.key, m.value, func(err error) { results <- result{i, err} }); err != nil {
			results <- result{i, err}
		}
	}
	var failed []int
	for range msgs {
		select {
		case r := <-results:
			if observe != nil {
				observe(msgs[r.i].topic, r.err)
			}
			if r.err != nil {
				failed = append(failed, r.i)
			}
		case <-ctx.Done():
			return fmt.Errorf("produce to %s: %w", msgs[0].topic, context.Cause(ctx))
		}
	}
	for n, i := range failed {
		m := msgs[i]
		if n == 0 {
			log.Warn().Str("to", m.topic).Int("failed", len(failed)).Msg("produce failed; trying again")
		}
		if err := produceAcked(ctx, p, log, m.topic, m.partition, m.key, m.value, observe); err != nil {
			return err
		}
	}
	return nil
}
