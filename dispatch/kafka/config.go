package kafka

import (
	"strings"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"
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
	// librdkafka's log lines come to us over a channel (forwardLogs).
	cm["go.logs.channel.enable"] = true
	return &cm
}

// forwardLogs writes librdkafka's log lines to log until the channel closes
// (when the client is closed).
func forwardLogs(log zerolog.Logger, ch chan ck.LogEvent) {
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
