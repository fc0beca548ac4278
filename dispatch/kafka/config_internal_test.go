package kafka

import "testing"

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
