package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"changeprop/breaker"
	"changeprop/dispatch"
)

// maxEventsBody bounds a POST /v1/events body.
const maxEventsBody = 4 << 20

// newRegistry is the service's metric registry: the Go and process
// collectors, the breakers' collectors, and dispatch's metrics.
func newRegistry() (*prometheus.Registry, *dispatch.Metrics) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(schedLatencies)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg, dispatch.NewMetrics(reg)
}

// schedLatencies adds go_sched_latencies_seconds to the Go collector's
// defaults: how long goroutines were runnable before they ran. A job
// handed to a worker waits there before its request is sent, so CPU
// starvation (a CPU limit's throttling, busy cores) shows in it first.
var schedLatencies = collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/sched/latencies:seconds$`)}

// adminHandlers serve the operations endpoints of service.md: the main
// listener's, and admin.listen's when it is set (nil otherwise). Reads are
// on both; mutations and pprof only on admin.listen when it is set, behind
// the guard (adminauth.go) wherever they are.
func adminHandlers(s *service, reg *prometheus.Registry, log zerolog.Logger) (main, admin http.Handler) {
	a := s.cfg.Admin
	mainMux := http.NewServeMux()
	s.readEndpoints(mainMux, reg)
	if a.Listen == "" {
		s.writeEndpoints(mainMux, newGuard(a, false, log))
		return mainMux, nil
	}
	adminMux := http.NewServeMux()
	s.readEndpoints(adminMux, reg)
	s.writeEndpoints(adminMux, newGuard(a, true, log))
	return mainMux, adminMux
}

// readEndpoints are open to every caller: they show no secret.
func (s *service) readEndpoints(mux *http.ServeMux, reg *prometheus.Registry) {
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		var waiting []string
		for _, r := range s.all() {
			if !r.Subscribed() {
				waiting = append(waiting, r.Name())
			}
		}
		w.Header().Set("Content-Type", "text/plain")
		if len(waiting) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not subscribed: %v\n", waiting)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	mux.HandleFunc("GET /v1/rules", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.rulesStatus())
	})
}

// writeEndpoints are the mutations and pprof, behind g.
func (s *service) writeEndpoints(mux *http.ServeMux, g guard) {
	mux.HandleFunc("POST /v1/rules/{name}/pause", g.mutation(func(w http.ResponseWriter, r *http.Request) {
		s.hold(w, r.PathValue("name"), true)
	}))
	mux.HandleFunc("POST /v1/rules/{name}/resume", g.mutation(func(w http.ResponseWriter, r *http.Request) {
		s.hold(w, r.PathValue("name"), false)
	}))
	mux.HandleFunc("POST /v1/events", g.mutation(s.postEvents))
	if !s.cfg.Admin.Pprof {
		return
	}
	mux.HandleFunc("GET /debug/pprof/", g.pprof(pprof.Index))
	mux.HandleFunc("GET /debug/pprof/cmdline", g.pprof(pprof.Cmdline))
	mux.HandleFunc("GET /debug/pprof/profile", g.pprof(pprof.Profile))
	mux.HandleFunc("GET /debug/pprof/symbol", g.pprof(pprof.Symbol))
	mux.HandleFunc("GET /debug/pprof/trace", g.pprof(pprof.Trace))
}

// serveHTTP starts the operations listener on addr.
func serveHTTP(addr string, h http.Handler, log zerolog.Logger) (*http.Server, net.Addr, error) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("http server")
		}
	}()
	return srv, ln.Addr(), nil
}

// ruleStatus is one rule in GET /v1/rules.
type ruleStatus struct {
	Name       string            `json:"name"`
	Kind       string            `json:"kind"` // dispatch or partitioner
	State      string            `json:"state"`
	InFlight   int64             `json:"inflight"`
	Lag        int64             `json:"lag"`
	Consumed   int64             `json:"consumed"`
	Partitions []partitionStatus `json:"partitions"`
	Breakers   map[string]string `json:"breakers,omitempty"`
	Outcomes   map[string]int64  `json:"outcomes"`
	Settings   map[string]any    `json:"settings,omitempty"`
}

type partitionStatus struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Committed int64  `json:"committed_offset"`
	Lag       int64  `json:"lag"`
	InFlight  int    `json:"inflight"`
	Paused    bool   `json:"paused"`
}

func (s *service) rulesStatus() []ruleStatus {
	var out []ruleStatus
	for _, r := range s.all() {
		st := r.Stats()
		rs := ruleStatus{
			Name: r.Name(), Kind: "dispatch", State: "running",
			InFlight: st.InFlight.Load(), Lag: st.Lag.Load(), Consumed: st.Consumed.Load(),
			Outcomes: map[string]int64{
				"done": st.Done.Load(), "ignored": st.Ignored.Load(), "retry": st.Retried.Load(),
				"error": st.Failed.Load(), "dedupe": st.Deduped.Load(), "sampled_out": st.SampledOut.Load(),
				"abandoned": st.Abandoned.Load(), "delayed": st.Delayed.Load(),
			},
		}
		if !r.Subscribed() {
			rs.State = "starting"
		}
		if run, ok := r.(*dispatch.Runner); ok {
			if run.Held() {
				rs.State = "paused"
			}
			for _, p := range run.Partitions() {
				rs.Partitions = append(rs.Partitions, partitionStatus{
					Topic: p.Topic, Partition: p.Partition, Committed: p.Committed,
					Lag: p.Lag, InFlight: p.InFlight, Paused: p.Paused,
				})
			}
			if set := s.breakers.forName(r.Name()); set != nil {
				rs.Breakers = map[string]string{}
				for dest, state := range set.Snapshot() {
					rs.Breakers[dest] = state.String()
				}
			}
			rule := s.cfg.Rule(r.Name())
			t := dispatch.TuningOf(rule)
			rs.Settings = map[string]any{
				"concurrency": t.Concurrency, "partition_concurrency": t.PartitionConcurrency,
				"key_concurrency": t.KeyLimits, "rate_limit": t.Rate,
			}
		} else {
			rs.Kind = "partitioner"
		}
		out = append(out, rs)
	}
	return out
}

// hold pauses or resumes a rule for POST /v1/rules/{name}/pause|resume.
func (s *service) hold(w http.ResponseWriter, name string, pause bool) {
	for _, r := range s.runners {
		if r.Name() != name {
			continue
		}
		if pause {
			r.Pause()
		} else {
			r.Resume()
		}
		state := "running"
		if pause {
			state = "paused"
		}
		writeJSON(w, http.StatusOK, map[string]string{"rule": name, "state": state})
		return
	}
	writeJSON(w, http.StatusNotFound, map[string]string{"error": "no dispatch rule " + name})
}

// postEvents produces the posted events (a JSON object or an array of
// them), each to [dc.]<meta.stream>, filling meta.id and meta.dt when
// missing. It answers once Kafka acknowledged every event.
func (s *service) postEvents(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEventsBody))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": err.Error()})
		return
	}
	var events []map[string]any
	if err := json.Unmarshal(body, &events); err != nil {
		var one map[string]any
		if err1 := json.Unmarshal(body, &one); err1 != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body is not a JSON object or array of objects"})
			return
		}
		events = []map[string]any{one}
	}
	type produced struct {
		ID    string `json:"id"`
		Topic string `json:"topic"`
	}
	var out []produced
	var problems []string
	for i, ev := range events {
		meta, _ := ev["meta"].(map[string]any)
		stream, _ := meta["stream"].(string)
		if stream == "" {
			problems = append(problems, fmt.Sprintf("events[%d].meta.stream: required", i))
			continue
		}
		if id, _ := meta["id"].(string); id == "" {
			meta["id"] = dispatch.NewEventID()
		}
		if dt, _ := meta["dt"].(string); dt == "" {
			meta["dt"] = time.Now().UTC().Format(time.RFC3339Nano)
		}
		out = append(out, produced{ID: meta["id"].(string), Topic: s.cfg.Topic(stream)})
	}
	if len(problems) > 0 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"errors": problems})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	for i, ev := range events {
		b, _ := json.Marshal(ev)
		if err := s.producer.Produce(ctx, out[i].Topic, nil, b); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error(), "produced": out[:i]})
			return
		}
	}
	writeJSON(w, http.StatusCreated, map[string]any{"produced": out})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// forName is the breaker set of a rule.
func (b *breakerSets) forName(name string) *breaker.Set {
	if s, ok := b.byRule[name]; ok {
		return s
	}
	return b.shared
}
