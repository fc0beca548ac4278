package dispatch

import "strings"

// Names names the topics changeprop writes for a service (service.md):
// the error topic and, per stream, the retry topics, all with the dc prefix.
type Names struct {
	ServiceName string
	DC          string
}

func (t Names) prefixed(name string) string {
	if t.DC == "" {
		return name
	}
	return t.DC + "." + name
}

// ErrorStream is the error topic's stream name, without the dc prefix.
func (t Names) ErrorStream() string { return t.ServiceName + ".error" }

// Error is the error topic: [dc.]<service_name>.error.
func (t Names) Error() string { return t.prefixed(t.ErrorStream()) }

// RetryStream is the retry stream for events of stream.
func (t Names) RetryStream(stream string) string { return t.ServiceName + ".retry." + stream }

// Retry is the retry topic for events of stream: [dc.]<service_name>.retry.<stream>.
func (t Names) Retry(stream string) string { return t.prefixed(t.RetryStream(stream)) }

// Emitter is the emitter_id of a rule's retry and error events.
func (t Names) Emitter(rule string) string { return t.ServiceName + "#" + rule }

// Stream is the stream name of a topic: the topic without the dc prefix.
func (t Names) Stream(topic string) string {
	if t.DC != "" && strings.HasPrefix(topic, t.DC+".") {
		return topic[len(t.DC)+1:]
	}
	return topic
}

// RetryPrefix is the prefix of every retry topic of the service.
func (t Names) RetryPrefix() string { return t.prefixed(t.ServiceName + ".retry.") }
