package dispatch

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are changeprop's Prometheus metrics (service.md "Metrics"). Most
// are read from the Runners' state at scrape time; the event observations
// (durations, delays) and produce results are recorded as they happen.
// Register it on a registry passed in from cmd, never the global one.
type Metrics struct {
	mu      sync.Mutex
	runners []*Runner

	duration *prometheus.HistogramVec
	delay    *prometheus.HistogramVec
	produce  *prometheus.CounterVec

	consumedDesc, dispatchDesc, inflightDesc, lagDesc, committedDesc,
	retriesDesc, errorsDesc, dedupeDownDesc *prometheus.Desc
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "changeprop_dispatch_duration_seconds",
			Help:    "Time to run one pass of an event: its requests, or producing its retry or error event.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"rule"}),
		delay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "changeprop_event_delay_seconds",
			Help:    "Age of an event (now - meta.dt) when it is dispatched.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400},
		}, []string{"rule"}),
		produce: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "changeprop_produce_total",
			Help: "Events changeprop produced (retry, error, re-enqueued), by topic and result (ok, error).",
		}, []string{"topic", "result"}),
		consumedDesc: prometheus.NewDesc("changeprop_events_consumed_total",
			"Messages read from Kafka.", []string{"rule", "topic"}, nil),
		dispatchDesc: prometheus.NewDesc("changeprop_dispatch_total",
			"Events by outcome: done, ignored, retry, error, dedupe, sampled_out, abandoned, delayed.", []string{"rule", "outcome"}, nil),
		inflightDesc: prometheus.NewDesc("changeprop_inflight",
			"Events being handled now.", []string{"rule"}, nil),
		lagDesc: prometheus.NewDesc("changeprop_partition_lag",
			"Messages between the committable offset and the partition's end, at the last commit.", []string{"rule", "topic", "partition"}, nil),
		committedDesc: prometheus.NewDesc("changeprop_committed_offset",
			"Last offset committed for the partition.", []string{"rule", "topic", "partition"}, nil),
		retriesDesc: prometheus.NewDesc("changeprop_retries_produced_total",
			"Retry events produced and acknowledged.", []string{"rule"}, nil),
		errorsDesc: prometheus.NewDesc("changeprop_errors_produced_total",
			"Error events produced and acknowledged.", []string{"rule"}, nil),
		dedupeDownDesc: prometheus.NewDesc("changeprop_dedupe_unavailable_total",
			"Jobs run without a dedupe check because the store did not answer.", []string{"rule"}, nil),
	}
	reg.MustRegister(m.duration, m.delay, m.produce, m)
	return m
}

// add makes a Runner's state part of the scrape.
func (m *Metrics) add(r *Runner) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.runners = append(m.runners, r)
	m.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.consumedDesc, m.dispatchDesc, m.inflightDesc, m.lagDesc,
		m.committedDesc, m.retriesDesc, m.errorsDesc, m.dedupeDownDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector, reading each Runner's counters
// and its last partition snapshot.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	runners := append([]*Runner(nil), m.runners...)
	m.mu.Unlock()
	for _, r := range runners {
		name, st := r.Name(), r.Stats()
		counter := func(d *prometheus.Desc, v int64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
		}
		for _, o := range []struct {
			label string
			v     *atomic.Int64
		}{
			{"done", &st.Done}, {"ignored", &st.Ignored}, {"retry", &st.Retried}, {"error", &st.Failed},
			{"dedupe", &st.Deduped}, {"sampled_out", &st.SampledOut}, {"abandoned", &st.Abandoned},
			{"delayed", &st.Delayed},
		} {
			counter(m.dispatchDesc, o.v.Load(), name, o.label)
		}
		counter(m.retriesDesc, st.Retried.Load(), name)
		counter(m.errorsDesc, st.Failed.Load(), name)
		counter(m.dedupeDownDesc, st.DedupeUnavailable.Load(), name)
		ch <- prometheus.MustNewConstMetric(m.inflightDesc, prometheus.GaugeValue, float64(st.InFlight.Load()), name)
		for topic, n := range r.consumedByTopic() {
			counter(m.consumedDesc, n, name, topic)
		}
		for _, p := range r.Partitions() {
			part := strconv.Itoa(int(p.Partition))
			ch <- prometheus.MustNewConstMetric(m.lagDesc, prometheus.GaugeValue, float64(p.Lag), name, p.Topic, part)
			if p.Committed >= 0 {
				ch <- prometheus.MustNewConstMetric(m.committedDesc, prometheus.GaugeValue, float64(p.Committed), name, p.Topic, part)
			}
		}
	}
}

// ruleMetrics are one rule's observers, resolved once.
type ruleMetrics struct {
	duration prometheus.Observer
	delay    prometheus.Observer
	produce  *prometheus.CounterVec
}

func (m *Metrics) forRule(rule string) ruleMetrics {
	if m == nil {
		return ruleMetrics{}
	}
	return ruleMetrics{
		duration: m.duration.WithLabelValues(rule),
		delay:    m.delay.WithLabelValues(rule),
		produce:  m.produce,
	}
}

func (rm ruleMetrics) observeDuration(d time.Duration) {
	if rm.duration != nil {
		rm.duration.Observe(d.Seconds())
	}
}

func (rm ruleMetrics) observeDelay(d time.Duration) {
	if rm.delay != nil && d >= 0 {
		rm.delay.Observe(d.Seconds())
	}
}

func (rm ruleMetrics) produced(topic string, err error) {
	if rm.produce == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	rm.produce.WithLabelValues(topic, result).Inc()
}

// PartitionState is a snapshot of one assigned partition, as of the
// Runner's last commit.
type PartitionState struct {
	TopicPartition
	Committed int64 // -1 before the first commit by this process
	Lag       int64
	InFlight  int
	Paused    bool
}

// Partitions returns the snapshot of the assigned partitions taken at the
// last commit. Safe from any goroutine.
func (r *Runner) Partitions() []PartitionState {
	if p := r.snapshot.Load(); p != nil {
		return *p
	}
	return nil
}

// consumedByTopic is the messages read per topic.
func (r *Runner) consumedByTopic() map[string]int64 {
	out := map[string]int64{}
	r.consumed.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

// countConsumed counts a message read from topic; the per-topic counter is
// kept on the partition so the hot path does no map lookup.
func (r *Runner) topicCounter(topic string) *atomic.Int64 {
	if v, ok := r.consumed.Load(topic); ok {
		return v.(*atomic.Int64)
	}
	v, _ := r.consumed.LoadOrStore(topic, new(atomic.Int64))
	return v.(*atomic.Int64)
}
