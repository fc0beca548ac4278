package dispatch

import (
	"strings"

	"changeprop/rules"
)

// Names names the topics changeprop writes for a service (service.md):
// the error topic and, per stream, the retry topics, with the produce_dc
// prefix; and the streams of the topics it reads.
type Names struct {
	ServiceName string
	// DC prefixes every topic changeprop writes (produce_dc).
	DC string
	// ConsumeDC is the prefix of the topics the rules read (consume_dc);
	// Stream removes it as well as DC.
	ConsumeDC string
}

// NamesFor returns the names of cfg's service.
func NamesFor(cfg *rules.Config) Names {
	return Names{ServiceName: cfg.ServiceName, DC: cfg.ProduceDC, ConsumeDC: cfg.ConsumeDC}
}

func (t Names) prefixed(name string) string {
	if t.DC == "" {
		return name
	}
	return t.DC + "." + name
}

// Topic is the topic changeprop writes events of stream to: [dc.]<stream>.
func (t Names) Topic(stream string) string { return t.prefixed(stream) }

// ErrorStream is the error topic's stream name, without the dc prefix.
func (t Names) ErrorStream() string { return t.ServiceName + ".error" }

// Error is the error topic: [dc.]<service_name>.error.
func (t Names) Error() string { return t.prefixed(t.ErrorStream()) }

// RetryStream is the retry stream for events of stream.
func (t Names) RetryStream(stream string) string { return t.ServiceName + ".retry." + stream }

// Retry is the retry topic for events of stream: [dc.]<service_name>.retry.<stream>.
func (t Names) Retry(stream string) string { return t.prefixed(t.RetryStream(stream)) }

// ContinueStream is the stream of a fanout rule's continuation events.
func (t Names) ContinueStream(rule string) string { return t.ServiceName + ".continue." + rule }

// Continue is the topic of a fanout rule's continuation events:
// [dc.]<service_name>.continue.<rule>. The rule reads it back.
func (t Names) Continue(rule string) string { return t.prefixed(t.ContinueStream(rule)) }

// Emitter is the emitter_id of a rule's retry and error events.
func (t Names) Emitter(rule string) string { return t.ServiceName + "#" + rule }

// Stream is the stream name of a topic: the topic without the dc prefix
// (of the topics changeprop writes, or of those it reads).
func (t Names) Stream(topic string) string {
	for _, dc := range []string{t.DC, t.ConsumeDC} {
		if dc != "" && strings.HasPrefix(topic, dc+".") {
			return topic[len(dc)+1:]
		}
	}
	return topic
}

// RetryPrefix is the prefix of every retry topic of the service.
func (t Names) RetryPrefix() string { return t.prefixed(t.ServiceName + ".retry.") }
