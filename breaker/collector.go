package breaker

import "github.com/prometheus/client_golang/prometheus"

var (
	stateDesc = prometheus.NewDesc("changeprop_breaker_state",
		"Circuit breaker state per destination: 0 closed, 1 half-open, 2 open.",
		[]string{"destination"}, nil)
	transitionsDesc = prometheus.NewDesc("changeprop_breaker_transitions_total",
		"Circuit breaker state changes per destination, by the state reached.",
		[]string{"destination", "to"}, nil)
)

// Collector returns a prometheus.Collector of the Set's breakers, read at
// scrape time: changeprop_breaker_state{destination} and
// changeprop_breaker_transitions_total{destination,to}. Register it on the
// caller's registry. An evicted breaker's series disappear and its counters
// restart from zero if it comes back. Two Sets must not share a registry
// unless their destinations differ: the series would collide.
func (s *Set) Collector() prometheus.Collector { return collector{s} }

type collector struct{ s *Set }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- stateDesc
	ch <- transitionsDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, e := range c.s.entries() {
		st := fromGobreaker(e.cb.State()) // also applies a due open -> half-open
		c.s.deliver(e)
		ch <- prometheus.MustNewConstMetric(stateDesc, prometheus.GaugeValue, float64(st), e.dest)
		for _, to := range []State{Closed, HalfOpen, Open} {
			ch <- prometheus.MustNewConstMetric(transitionsDesc, prometheus.CounterValue,
				float64(e.transitions[to].Load()), e.dest, to.String())
		}
	}
}
