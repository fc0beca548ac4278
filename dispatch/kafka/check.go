package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// ErrRefused means the brokers answered but refused this client: its SASL
// credentials or mechanism, or the TLS handshake (an untrusted or
// mismatched certificate). Retrying does not help; the configuration is
// wrong.
var ErrRefused = errors.New("kafka refused the connection")

// refusal reports whether a client error is a refusal (ErrRefused).
func refusal(e ck.Error) bool {
	switch e.Code() {
	case ck.ErrAuthentication, ck.ErrSaslAuthenticationFailed, ck.ErrSsl,
		ck.ErrUnsupportedSaslMechanism, ck.ErrIllegalSaslState:
		return true
	}
	// A broker that closes the connection on bad credentials instead of
	// answering them is reported as a transport failure in SASL
	// authentication.
	return strings.Contains(e.String(), "SASL authentication error")
}

// checkPoll is how long one metadata request of Check may take.
const checkPoll = 500 * time.Millisecond

// Check waits until the brokers answer a metadata request, and returns
// nil; or an error wrapping ErrRefused as soon as they refuse the client;
// or, when ctx ends first (the brokers are unreachable), an error wrapping
// ctx's.
func (p *Producer) Check(ctx context.Context) error {
	for {
		_, err := p.p.GetMetadata(nil, false, int(checkPoll/time.Millisecond))
		if err == nil {
			return nil // answered: a refusal seen on the way was passing
		}
		if e := p.denied.Load(); e != nil {
			return fmt.Errorf("%w: %v", ErrRefused, *e)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("kafka: no answer from the brokers (%v): %w", err, context.Cause(ctx))
		}
	}
}
