package kafka

import (
	"strings"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"

	"changeprop/rules"
)

// configMap builds a librdkafka configuration: defaults, then each layer of
// properties in order (later layers win), then the forced settings.
func configMap(defaults map[string]string, layers []map[string]string, forced map[string]string) *ck.ConfigMap {
	cm := ck.ConfigMap{}
	for k, v := range defaults {
		cm[k] = v
	}
	for _, l := range layers {
		for k, v := range l {
			cm[k] = v
		}
	}
	for k, v := range forced {
		cm[k] = v
	}
	// librdkafka's log lines come to us over a channel (forwardLogs), a
	// small one of ours: the binding would make one of 10,000 events
	// (800 KB) for every client. The client's Close is followed by
	// closeLogs, since the binding does not close a channel it was given.
	// "false" in a layer (kafka.client_logs: stderr) leaves them to
	// librdkafka's own printer, and the client without the binding's log
	// goroutine, whose 100 ms waits in librdkafka keep the Go runtime
	// taking processors back from blocked threads.
	forward := cm[rules.LogsChannelProperty] != "false"
	delete(cm, rules.LogsChannelProperty)
	if forward {
		cm[rules.LogsChannelProperty] = true
		cm["go.logs.channel"] = make(chan ck.LogEvent, logChannelSize)
	}
	return &cm
}

// logChannelSize is the capacity of each client's log channel.
const logChannelSize = 64

// closeLogs ends a closed client's forwardLogs.
func closeLogs(ch chan ck.LogEvent) {
	if ch != nil {
		close(ch)
	}
}

// producerBinding sets what the configuration does not of the producer
// binding's own settings: its Go channels, whose defaults of a million
// entries each cost 24 MB per producer (delivery reports are read as they
// come, by the report goroutine, and messages are handed over by Produce,
// not the channel), and the delivery reports' fields: none, as only the
// partition, the error and the Opaque are read, where the default copies
// each message's key and value back into Go memory once it is written.
func producerBinding(cm *ck.ConfigMap) {
	for k, v := range map[string]any{"go.events.channel.size": 10000, "go.produce.channel.size": 0, "go.delivery.report.fields": "none"} {
		if _, ok := (*cm)[k]; !ok {
			(*cm)[k] = v
		}
	}
}

// forwardLogs writes librdkafka's log lines to log until the channel closes
// (when the client is closed). A client whose lines are not forwarded has
// no channel: nothing to do.
func forwardLogs(log zerolog.Logger, ch chan ck.LogEvent) {
	if ch == nil {
		return
	}
	for ev := range ch {
		var e *zerolog.Event
		switch {
		case ev.Level <= 3:
			e = log.Error()
		case ev.Level == 4:
			e = log.Warn()
		case ev.Level <= 6:
			e = log.Info()
		default:
			e = log.Debug()
		}
		e.Str("client", ev.Name).Str("tag", ev.Tag).Msg(strings.TrimSpace(ev.Message))
	}
}
