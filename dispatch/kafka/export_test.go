package kafka

import ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"

// InjectFatal makes librdkafka raise a fatal error in p, as an idempotent
// producer does when it loses its sequence.
func InjectFatal(p *Producer, reason string) {
	p.p.TestFatalError(ck.ErrOutOfOrderSequenceNumber, reason)
}
