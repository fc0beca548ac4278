package kafka

import (
	"testing"
	"time"

	"changeprop/rules"
)

// TestQueueKBytes: the consumers of a process share the prefetch budget,
// between 256 KB and 1 MB each, and a configured
// queued.max.messages.kbytes wins over the share.
func TestQueueKBytes(t *testing.T) {
	for _, tc := range []struct{ consumers, want int }{
		{0, 1024}, {1, 1024}, {8, 1024}, {9, 910}, {16, 512}, {30, 273}, {32, 256}, {100, 256},
	} {
		if got := QueueKBytesFor(tc.consumers); got != tc.want {
			t.Errorf("QueueKBytesFor(%d) = %d, want %d", tc.consumers, got, tc.want)
		}
	}
	get := func(cfg ConsumerConfig) any {
		v, err := consumerConfigMap(cfg).Get("queued.max.messages.kbytes", nil)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := get(ConsumerConfig{}); v != "1024" {
		t.Errorf("default queue %v, want 1024", v)
	}
	if v := get(ConsumerConfig{QueueKBytes: 256}); v != "256" {
		t.Errorf("queue with a 256 KB share %v, want 256", v)
	}
	set := []map[string]string{{"queued.max.messages.kbytes": "4096"}}
	if v := get(ConsumerConfig{QueueKBytes: 256, Properties: set}); v != "4096" {
		t.Errorf("configured queue %v, want the configured 4096", v)
	}
	if v := consumerDefaults["queued.max.messages.kbytes"]; v != "1024" {
		t.Errorf("the shared defaults were changed: %v", v)
	}
}

// TestProducerBinding: the binding's channels are bounded and delivery
// reports carry no copy of the message, unless the configuration says
// otherwise.
func TestProducerBinding(t *testing.T) {
	cm := configMap(producerDefaults, nil, nil)
	producerBinding(cm)
	for k, want := range map[string]any{"go.events.channel.size": 10000, "go.produce.channel.size": 0, "go.delivery.report.fields": "none"} {
		if v, err := cm.Get(k, nil); err != nil || v != want {
			t.Errorf("%s = %v (%v), want %v", k, v, err, want)
		}
	}
	cm = configMap(producerDefaults, []map[string]string{{"go.delivery.report.fields": "key"}}, nil)
	producerBinding(cm)
	if v, _ := cm.Get("go.delivery.report.fields", nil); v != "key" {
		t.Errorf("configured go.delivery.report.fields became %v", v)
	}
}

// TestClientLogs: a client forwards librdkafka's log lines over a channel of
// ours unless a layer says "go.logs.channel.enable": "false"
// (kafka.client_logs: stderr); then it has no channel, and so no binding
// goroutine waiting in librdkafka for its lines.
func TestClientLogs(t *testing.T) {
	off := []map[string]string{{rules.LogsChannelProperty: "false"}}
	on := []map[string]string{{rules.LogsChannelProperty: "false"}, {rules.LogsChannelProperty: "true"}}
	for _, tc := range []struct {
		name    string
		layers  []map[string]string
		forward bool
	}{{"default", nil, true}, {"stderr", off, false}, {"turned on again by a later layer", on, true}} {
		cm := configMap(consumerDefaults, tc.layers, map[string]string{"group.id": "g"})
		enabled, _ := cm.Get(rules.LogsChannelProperty, nil)
		ch, _ := cm.Get("go.logs.channel", nil)
		if tc.forward != (enabled == true) || tc.forward != (ch != nil) {
			t.Errorf("%s: %s = %#v, go.logs.channel = %v; want forwarding %v", tc.name, rules.LogsChannelProperty, enabled, ch, tc.forward)
		}
		c, err := NewConsumer(ConsumerConfig{Brokers: "127.0.0.1:1", GroupID: "g", Properties: tc.layers})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := c.c.Logs() != nil; got != tc.forward {
			t.Errorf("%s: the client has a log channel: %v, want %v", tc.name, got, tc.forward)
		}
		p, err := NewProducer(ProducerConfig{Brokers: "127.0.0.1:1", Properties: tc.layers})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := p.p.Logs() != nil; got != tc.forward {
			t.Errorf("%s: the producer has a log channel: %v, want %v", tc.name, got, tc.forward)
		}
		p.Close(time.Second)
		if err := c.Close(); err != nil {
			t.Errorf("%s: close: %v", tc.name, err)
		}
	}
}
