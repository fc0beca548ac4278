package dispatch

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"changeprop/rules"
)

// outcome is what became of one message.
type outcome int

const (
	outcomeDone      outcome = iota // every request succeeded
	outcomeIgnored                  // a failure matched the rule's ignore condition
	outcomeFailed                   // a request failed, or the event was unusable
	outcomeUnmatched                // the rule does not act on this event
	outcomeAbandoned                // cut short by shutdown: not finished, must be read again
)

// finished reports whether the message's offset may be committed.
func (o outcome) finished() bool { return o != outcomeAbandoned }

// handler turns one message into the rule's requests and sends them. It is
// safe for concurrent use: it holds only read-only state.
type handler struct {
	rule      *rules.Rule
	sender    Sender
	producer  Producer
	userAgent string
	names     Names
	log       zerolog.Logger
	now       func() time.Time
}

// handle runs one message to its outcome. ctx is cancelled only when the
// shutdown deadline has passed.
func (h *handler) handle(ctx context.Context, m *Message) outcome {
	ev, err := rules.ParseEvent(m.Value)
	if err != nil {
		return h.toErrorTopic(ctx, m, nil, failure{message: err.Error()})
	}
	match, ok := h.rule.Match(ev)
	if !ok {
		return outcomeUnmatched
	}
	reqs, err := match.Requests(ev)
	if err != nil {
		return h.toErrorTopic(ctx, m, ev, failure{message: "expand request: " + err.Error()})
	}
	triggeredBy := triggeredBy(ev, m.Topic)
	requestID := ev.Meta("request_id")
	result := outcomeDone
	for i := range reqs {
		req := &reqs[i]
		h.addHeaders(req, requestID, triggeredBy)
		resp, err := h.sender.Send(ctx, req)
		if err != nil && ctx.Err() != nil {
			return outcomeAbandoned
		}
		status := 0
		var header func(string) string
		if resp != nil {
			status = resp.Status
			header = resp.Header.Get
		}
		switch o := h.rule.Classify(status, header, err); o {
		case rules.Done:
		case rules.Ignored:
			result = outcomeIgnored
		default:
			// Retries and the error topic come with the retry pipeline;
			// until then a failure is logged and the event is finished.
			l := h.event(zerolog.WarnLevel, m).Str("outcome", o.String()).
				Str("method", req.Method).Str("uri", req.URI).Int("status", status)
			if err != nil {
				l = l.Err(err)
			}
			l.Msg("request failed")
			return outcomeFailed
		}
	}
	return result
}

// addHeaders adds the headers every request carries, unless the rule's
// template already set them.
func (h *handler) addHeaders(req *rules.Request, requestID, triggeredBy string) {
	var hasUA, hasID, hasTB bool
	for _, hd := range req.Headers {
		switch hd.Name {
		case "user-agent":
			hasUA = true
		case "x-request-id":
			hasID = true
		case "x-triggered-by":
			hasTB = true
		}
	}
	if !hasUA && h.userAgent != "" {
		req.Headers = append(req.Headers, rules.Header{Name: "user-agent", Value: h.userAgent})
	}
	if !hasID && requestID != "" {
		req.Headers = append(req.Headers, rules.Header{Name: "x-request-id", Value: requestID})
	}
	if !hasTB {
		req.Headers = append(req.Headers, rules.Header{Name: "x-triggered-by", Value: triggeredBy})
	}
}

// triggeredBy is the chain of <stream>:<meta.uri> hops that led to this
// event: the event's own triggered_by (set on retries and on events produced
// by rules) followed by this hop.
func triggeredBy(ev *rules.Event, topic string) string {
	stream := ev.Meta("stream")
	if stream == "" {
		stream = topic
	}
	hop := stream + ":" + ev.Meta("uri")
	if prev, ok := ev.Message["triggered_by"].(string); ok && prev != "" {
		var b strings.Builder
		b.Grow(len(prev) + 1 + len(hop))
		b.WriteString(prev)
		b.WriteByte(',')
		b.WriteString(hop)
		return b.String()
	}
	return hop
}

// toErrorTopic writes the error event for m and returns once Kafka
// acknowledged it; the event is then finished. If ctx ends first the event
// is abandoned: it will be read again.
func (h *handler) toErrorTopic(ctx context.Context, m *Message, ev *rules.Event, f failure) outcome {
	h.event(zerolog.WarnLevel, m).Str("reason", f.message).Int("status", f.status).Msg("to error topic")
	b := newErrorEvent(m, ev, f, h.rule.Name, h.names.Emitter(h.rule.Name), h.names.ErrorStream(), h.now())
	if err := produceAcked(ctx, h.producer, h.log, h.names.Error(), -1, nil, b); err != nil {
		return outcomeAbandoned
	}
	return outcomeFailed
}

func (h *handler) event(level zerolog.Level, m *Message) *zerolog.Event {
	return h.log.WithLevel(level).Str("topic", m.Topic).Int32("partition", m.Partition).Int64("offset", m.Offset)
}

// errShutdown is the cause of the work context's cancellation.
var errShutdown = errors.New("shutdown deadline passed")
