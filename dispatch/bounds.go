package dispatch

import (
	"fmt"
	"net/url"
	"strings"

	"changeprop/rules"
)

// What the handler refuses to hold or send (rules.Limits). A zero bound is
// no bound. The response bounds are the Sender's (HTTPOptions).

// oversizedEvent says why a message read from Kafka is over max bytes
// (limits.max_event_bytes), or "".
func oversizedEvent(m *Message, max int) string {
	if max > 0 && len(m.Value) > max {
		return fmt.Sprintf("event of %d bytes is over limits.max_event_bytes (%d)", len(m.Value), max)
	}
	return ""
}

// overProducerLimit says why n bytes of what (a retry event, a produced
// event, a job to write back) cannot be produced under max, or "": the
// producer would refuse it every time, so it goes to the error topic
// instead of a produce tried for ever.
func overProducerLimit(what string, n, max int) string {
	if n > max {
		return fmt.Sprintf("%s of %d bytes is over the producer's limit (%d; kafka.producer message.max.bytes)", what, n, max)
	}
	return ""
}

// unsendable says why an expanded request may not be sent, or "": a URI
// that is not http(s) with a host, a header value with a control character
// (a line break would let an event add headers of its own), its request
// line and headers over max_header_bytes, or all of it over
// max_request_bytes. These are the event's fault, never the destination's.
func (h *handler) unsendable(req *rules.Request) string {
	if _, err := parseTarget(req.URI); err != nil {
		return fmt.Sprintf("request not sent: %q is not an http(s) URI", RedactURI(req.URI))
	}
	head := len(req.Method) + len(req.URI) + len(" HTTP/1.1\r\n")
	for _, hd := range req.Headers {
		head += len(hd.Name) + len(": \r\n") + len(hd.Value)
		if i := strings.IndexFunc(hd.Value, func(c rune) bool { return c < ' ' && c != '\t' || c == 0x7f }); i >= 0 {
			return fmt.Sprintf("request not sent: header %s holds the control character %q", hd.Name, hd.Value[i])
		}
	}
	if max := h.limits.MaxHeaderBytes; max > 0 && head > max {
		return fmt.Sprintf("request not sent: its request line and headers expand to %d bytes, over limits.max_header_bytes (%d)", head, max)
	}
	if max := h.limits.MaxRequestBytes; max > 0 && head+len(req.Body) > max {
		return fmt.Sprintf("request not sent: it expands to %d bytes, over limits.max_request_bytes (%d)", head+len(req.Body), max)
	}
	return ""
}

// DefaultMaxProduceBytes is the largest retry or error event produced when
// RunnerConfig.MaxProduceBytes is 0: librdkafka's default message.max.bytes
// (1,000,000) less room for its own framing.
const DefaultMaxProduceBytes = 1_000_000 - 64<<10

// rawExcerpt is how much of an original event an error event keeps when
// the whole would make the error event too large to produce.
const rawExcerpt = 64 << 10

// RedactURI is uri with the password of its user information, if any,
// replaced by "xxxxx", for messages, logs and error events.
func RedactURI(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		// Not a URI net/url reads; cut the authority's user information
		// by hand.
		_, rest, ok := strings.Cut(uri, "://")
		if at := strings.IndexByte(rest, '@'); ok && at >= 0 && !strings.ContainsAny(rest[:at], "/?#") {
			return uri[:len(uri)-len(rest)] + "xxxxx" + rest[at:]
		}
		return uri
	}
	if u.User == nil {
		return uri
	}
	if _, has := u.User.Password(); !has {
		return uri
	}
	return u.Redacted()
}
