package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"changeprop/internal/testkit"
)

// cmdJobRunnerSim serves RunSingleJob.php semantics for benchmarks and load
// tests: a lean handler (no request recording, unlike testkit.JobRunner)
// with a latency distribution, error and read-only rates, per-wiki
// concurrency and the added latency of every job (receipt time - meta.dt).
//
//	changeprop jobrunner-sim -listen 127.0.0.1:9005 -latency lognormal:median=10ms,p99=200ms
//
// GET /_sim/stats returns the counters and the added latency's percentiles
// as JSON, with the p99 of each 250 ms of receipts (median and worst
// window: a tail in bursts or spread); ?percentiles=false leaves the
// percentiles out, for polling while a benchmark runs (they cost tens of
// milliseconds of CPU per 400,000 samples). GET /_sim/samples returns the
// kept samples, {"samples":[[receipt, added], ...]} in order of receipt,
// both in microseconds (receipt since the Unix epoch), for finding when a
// tail was made. POST /_sim/reset clears the latency samples and the
// concurrency maxima. Every other path is the job runner.
func cmdJobRunnerSim(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("jobrunner-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9005", "address to listen on")
	latency := fs.String("latency", "0", "latency before answering: 0, fixed:5ms, uniform:1ms-20ms, lognormal:median=10ms,p99=200ms")
	errorRate := fs.Float64("error-rate", 0, "share of valid jobs answered 500 with a JSON error")
	readonlyRate := fs.Float64("readonly-rate", 0, "share of valid jobs answered 500 with X-Readonly: true")
	report := fs.Duration("report", 5*time.Second, "interval between progress lines (0: only at exit)")
	parse := fs.String("parse", "full", "body check: full (decode the JSON) or lean (byte search; for benchmarks)")
	server := fs.String("server", "net/http", "HTTP server: net/http, or minimal (HTTP/1.1 only, cheaper; for benchmarks)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	dist, err := parseLatency(*latency)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	if *errorRate < 0 || *errorRate > 1 || *readonlyRate < 0 || *readonlyRate > 1 {
		errs = append(errs, fmt.Errorf("-error-rate %v and -readonly-rate %v must be within [0, 1]", *errorRate, *readonlyRate))
	}
	if *parse != "full" && *parse != "lean" {
		errs = append(errs, fmt.Errorf("-parse %q: want full or lean", *parse))
	}
	if *server != "net/http" && *server != "minimal" {
		errs = append(errs, fmt.Errorf("-server %q: want net/http or minimal", *server))
	}
	if *report < 0 {
		errs = append(errs, fmt.Errorf("-report %v is negative", *report))
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(stderr, "jobrunner-sim:", err)
		return 2
	}
	log, _ := newLogger(stderr, "warn")
	ctx, stop := signalContext(log)
	defer stop()

	sim := newJobSim(dist, *errorRate, *readonlyRate, *parse == "lean")
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(stderr, "jobrunner-sim:", err)
		return 1
	}
	var shutdown func()
	if *server == "minimal" {
		done := make(chan struct{})
		go func() { sim.serveMinimal(ctx, ln); close(done) }()
		shutdown = func() { ln.Close(); <-done }
	} else {
		srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second,
			BaseContext: func(net.Listener) context.Context { return ctx }}
		go func() { _ = srv.Serve(ln) }()
		shutdown = func() {
			shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutCtx)
		}
	}
	fmt.Fprintf(stdout, "jobrunner-sim: listening on http://%s (latency %s, error rate %v, read-only rate %v)\n",
		ln.Addr(), dist, *errorRate, *readonlyRate)

	var tick <-chan time.Time
	if *report > 0 {
		t := time.NewTicker(*report)
		defer t.Stop()
		tick = t.C
	}
	start := time.Now()
	last, lastAt := int64(0), start
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case now := <-tick:
			s := sim.counters(true)
			fmt.Fprintf(stdout, "%5.0fs %8.0f req/s  total %d  ok %d  error %d  readonly %d  bad %d  in-flight max %d  per wiki max: %s\n",
				now.Sub(start).Seconds(), float64(s.Total-last)/now.Sub(lastAt).Seconds(),
				s.Total, s.OK, s.Errors, s.Readonly, s.Bad, s.WindowMax, s.topHosts(6, true))
			last, lastAt = s.Total, now
		}
	}
	shutdown()
	s := sim.snapshot()
	el := time.Since(start).Seconds()
	fmt.Fprintf(stdout, "jobrunner-sim: %d requests in %.1fs (%.0f req/s): ok %d, error %d, readonly %d, bad %d; highest concurrency %d\n",
		s.Total, el, float64(s.Total)/el, s.OK, s.Errors, s.Readonly, s.Bad, s.MaxConcurrency)
	fmt.Fprintf(stdout, "jobrunner-sim: per wiki (requests, highest concurrency): %s\n", s.topHosts(len(s.Hosts), false))
	if a := s.AddedLatency; a.Count > 0 {
		fmt.Fprintf(stdout, "jobrunner-sim: added latency (receipt - meta.dt) of %d jobs: p50 %v p90 %v p99 %v max %v; p99 of %d windows of %v: median %v, worst %v\n",
			a.Count, a.P50, a.P90, a.P99, a.Max, a.Windows, latencyWindow, a.WindowP99Median, a.WindowP99Max)
	}
	return 0
}

// latencyDist is a job runner's latency distribution.
type latencyDist struct {
	kind      string        // "", "fixed", "uniform" or "lognormal"
	lo, hi    time.Duration // fixed: lo; uniform: [lo, hi]
	mu, sigma float64       // lognormal: of the logarithm of nanoseconds
	spec      string
}

// z99 is the 99th percentile of the standard normal distribution.
const z99 = 2.3263478740408408

// parseLatency reads a latency distribution:
//
//	0 or none                         no latency
//	fixed:5ms                         always 5ms
//	uniform:1ms-20ms                  uniform between 1ms and 20ms
//	lognormal:median=10ms,p99=200ms   log-normal with that median and 99th percentile
func parseLatency(s string) (latencyDist, error) {
	d := latencyDist{spec: s}
	kind, arg, _ := strings.Cut(s, ":")
	bad := func(format string, a ...any) (latencyDist, error) {
		return latencyDist{}, fmt.Errorf("-latency %q: %s", s, fmt.Sprintf(format, a...))
	}
	switch kind {
	case "", "0", "none":
		if arg != "" {
			return bad("%s takes no argument", kind)
		}
		d.spec = "none"
		return d, nil
	case "fixed":
		v, err := time.ParseDuration(arg)
		if err != nil || v < 0 {
			return bad("want fixed:DURATION, e.g. fixed:5ms")
		}
		d.kind, d.lo = kind, v
	case "uniform":
		a, b, ok := strings.Cut(arg, "-")
		lo, err1 := time.ParseDuration(a)
		hi, err2 := time.ParseDuration(b)
		if !ok || err1 != nil || err2 != nil || lo < 0 {
			return bad("want uniform:MIN-MAX, e.g. uniform:1ms-20ms")
		}
		if hi < lo {
			return bad("max %v is below min %v", hi, lo)
		}
		d.kind, d.lo, d.hi = kind, lo, hi
	case "lognormal":
		var median, p99 time.Duration
		for kv := range strings.SplitSeq(arg, ",") {
			k, v, _ := strings.Cut(kv, "=")
			dur, err := time.ParseDuration(v)
			if err != nil {
				return bad("%q: want median=DURATION,p99=DURATION", kv)
			}
			switch k {
			case "median":
				median = dur
			case "p99":
				p99 = dur
			default:
				return bad("unknown parameter %q (want median and p99)", k)
			}
		}
		if median <= 0 || p99 <= 0 {
			return bad("median and p99 must both be given and positive")
		}
		if p99 < median {
			return bad("p99 %v is below median %v", p99, median)
		}
		d.kind = kind
		d.mu = math.Log(float64(median))
		d.sigma = math.Log(float64(p99)/float64(median)) / z99
	default:
		return bad("unknown distribution %q (want fixed, uniform or lognormal)", kind)
	}
	return d, nil
}

func (d latencyDist) String() string { return d.spec }

// draw returns one latency; u is uniform in [0, 1) and z standard normal.
func (d latencyDist) draw(u, z float64) time.Duration {
	switch d.kind {
	case "fixed":
		return d.lo
	case "uniform":
		return d.lo + time.Duration(u*float64(d.hi-d.lo))
	case "lognormal":
		return time.Duration(math.Exp(d.mu + d.sigma*z))
	}
	return 0
}

// jobSim is the job runner's handler. It is safe for concurrent use.
type jobSim struct {
	latency                 latencyDist
	errorRate, readonlyRate float64
	lean                    bool
	now                     func() time.Time

	total, ok, errs, readonly, bad atomic.Int64
	inFlight                       atomic.Int64

	mu                     sync.Mutex
	maxInFlight, windowMax int64
	hosts                  map[string]*hostStat
	added                  []sample // added latency samples, at most maxSamples
}

// sample is one job's added latency and when it was received (Unix ns).
type sample struct {
	at int64
	d  time.Duration
}

type hostStat struct {
	requests, inFlight, max, windowMax int64
}

// maxSamples bounds the kept added-latency samples (32 MB).
const maxSamples = 2 << 20

func newJobSim(d latencyDist, errorRate, readonlyRate float64, lean bool) *jobSim {
	return &jobSim{latency: d, errorRate: errorRate, readonlyRate: readonlyRate, lean: lean,
		now: time.Now, hosts: map[string]*hostStat{}}
}

func (s *jobSim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a, ok := s.control(r.URL.Path, r.URL.RawQuery); ok {
		if a.status == http.StatusNoContent {
			w.WriteHeader(a.status)
		} else {
			simJSON(w, a.status, a.hk, a.hv, a.body)
		}
		return
	}
	at := s.now()
	host := r.Host
	s.enter(host)
	defer s.leave(host)
	var body []byte
	var err error
	if r.Method == http.MethodPost {
		buf := simBodies.Get().(*[]byte)
		defer simBodies.Put(buf)
		body, err = readBody(*buf, w, r)
		if cap(body) <= 64<<10 {
			*buf = body[:0]
		}
	}
	if a, ok := s.job(r.Context(), at, r.Method, body, err); ok {
		simJSON(w, a.status, a.hk, a.hv, a.body)
	}
}

// control answers the simulator's own paths, /_sim/stats and /_sim/reset;
// false for every other path, which is the job runner's.
func (s *jobSim) control(path, rawQuery string) (answer, bool) {
	switch path {
	case "/_sim/stats":
		q, _ := url.ParseQuery(rawQuery)
		var st simStats
		if p, err := strconv.ParseBool(q.Get("percentiles")); err == nil && !p {
			st = s.counters(false)
		} else {
			st = s.snapshot()
		}
		b, _ := json.Marshal(st)
		return answer{status: http.StatusOK, body: string(b)}, true
	case "/_sim/samples":
		return answer{status: http.StatusOK, body: s.sampleList()}, true
	case "/_sim/reset":
		s.reset()
		return answer{status: http.StatusNoContent}, true
	}
	return answer{}, false
}

// answer is the simulator's response to a request: a status, one header
// or none, and a JSON body (none for 204).
type answer struct {
	status int
	hk, hv string
	body   string
}

// job answers a request to the job runner received at at, with its body
// or the error reading it, as RunSingleJob.php would. It returns false,
// and no answer, when ctx ends during the simulated latency.
func (s *jobSim) job(ctx context.Context, at time.Time, method string, body []byte, bodyErr error) (answer, bool) {
	if method != http.MethodPost {
		s.bad.Add(1)
		return answer{http.StatusMethodNotAllowed, "Allow", http.MethodPost, `{"error":"Request must be POSTed"}`}, true
	}
	if bodyErr != nil {
		s.bad.Add(1)
		return answer{status: http.StatusBadRequest, body: `{"error":"reading body"}`}, true
	}
	dt, err := s.check(body)
	if err != nil {
		s.bad.Add(1)
		msg, _ := json.Marshal(map[string]string{"error": err.Error()})
		return answer{status: http.StatusBadRequest, body: string(msg)}, true
	}
	if !dt.IsZero() {
		s.sample(at, at.Sub(dt))
	}
	if d := s.latency.draw(rand.Float64(), rand.NormFloat64()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return answer{}, false
		}
	}
	defer s.total.Add(1)
	u := rand.Float64()
	switch {
	case u < s.errorRate:
		s.errs.Add(1)
		return answer{status: http.StatusInternalServerError, body: `{"error":"Exception executing job: jobrunner-sim injected failure"}`}, true
	case u < s.errorRate+s.readonlyRate:
		s.readonly.Add(1)
		return answer{http.StatusInternalServerError, "X-Readonly", "true", `{"error":"Database is read-only: jobrunner-sim injected read-only mode"}`}, true
	}
	s.ok.Add(1)
	return answer{status: http.StatusOK, body: `{"status":"ok"}`}, true
}

// simBodies are request body buffers: one read into a kept buffer rather
// than io.ReadAll's growing ones.
var simBodies = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// maxSimBody is the largest request body the simulator reads.
const maxSimBody = 8 << 20

// readBody reads r's body, at most maxSimBody bytes, into buf's storage.
func readBody(buf []byte, w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if n := r.ContentLength; n >= 0 && n <= maxSimBody {
		if int64(cap(buf)) < n {
			buf = make([]byte, 0, n)
		}
		buf = buf[:n]
		_, err := io.ReadFull(r.Body, buf)
		return buf, err
	}
	var b bytes.Buffer
	b.Grow(cap(buf))
	_, err := b.ReadFrom(http.MaxBytesReader(w, r.Body, maxSimBody))
	return b.Bytes(), err
}

// check validates what RunSingleJob.php needs (a JSON object with a
// non-empty string "type" and an object "meta") and returns meta.dt, zero
// if absent or unreadable. Lean mode searches bytes instead of decoding:
// enough for generated events, cheap enough not to steal the CPU that a
// benchmark measures.
func (s *jobSim) check(body []byte) (time.Time, error) {
	var dt string
	if s.lean {
		b := bytes.TrimSpace(body)
		if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
			return time.Time{}, errors.New("Could not decode the event: not a JSON object")
		}
		if !bytes.Contains(b, []byte(`"type":"`)) || bytes.Contains(b, []byte(`"type":""`)) {
			return time.Time{}, errors.New("Job event has no type")
		}
		i := bytes.Index(b, []byte(`"meta":{`))
		if i < 0 {
			return time.Time{}, errors.New("Job event has no meta object")
		}
		if j := bytes.Index(b[i:], []byte(`"dt":"`)); j >= 0 {
			rest := b[i+j+len(`"dt":"`):]
			if k := bytes.IndexByte(rest, '"'); k >= 0 {
				dt = string(rest[:k])
			}
		}
	} else {
		var ev struct {
			Type *string         `json:"type"`
			Meta json.RawMessage `json:"meta"`
		}
		if err := json.Unmarshal(body, &ev); err != nil {
			return time.Time{}, fmt.Errorf("Could not decode the event: %v", err)
		}
		if ev.Type == nil || *ev.Type == "" {
			return time.Time{}, errors.New("Job event has no type")
		}
		var meta map[string]any
		if len(ev.Meta) == 0 || json.Unmarshal(ev.Meta, &meta) != nil || meta == nil {
			return time.Time{}, errors.New("Job event has no meta object")
		}
		dt, _ = meta["dt"].(string)
	}
	t, err := time.Parse(time.RFC3339Nano, dt)
	if err != nil {
		return time.Time{}, nil
	}
	return t, nil
}

func simJSON(w http.ResponseWriter, status int, hk, hv, body string) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	if hk != "" {
		h[hk] = []string{hv}
	}
	h["Content-Length"] = []string{strconv.Itoa(len(body) + 1)}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body+"\n")
}

func (s *jobSim) enter(host string) {
	in := s.inFlight.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxInFlight = max(s.maxInFlight, in)
	s.windowMax = max(s.windowMax, in)
	h := s.hosts[host]
	if h == nil {
		h = &hostStat{}
		s.hosts[host] = h
	}
	h.requests++
	h.inFlight++
	h.max = max(h.max, h.inFlight)
	h.windowMax = max(h.windowMax, h.inFlight)
}

func (s *jobSim) leave(host string) {
	s.inFlight.Add(-1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hosts[host].inFlight--
}

func (s *jobSim) sample(at time.Time, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.added) < maxSamples {
		s.added = append(s.added, sample{at: at.UnixNano(), d: d})
	}
}

func (s *jobSim) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.added = s.added[:0]
	s.maxInFlight, s.windowMax = 0, 0
	for _, h := range s.hosts {
		h.max, h.windowMax = h.inFlight, h.inFlight
	}
}

// simStats is what /_sim/stats returns.
type simStats struct {
	Total          int64                `json:"total"` // valid jobs answered, 200 or 500
	OK             int64                `json:"ok"`
	Errors         int64                `json:"errors"`
	Readonly       int64                `json:"readonly"`
	Bad            int64                `json:"bad"` // 400 and 405
	MaxConcurrency int64                `json:"max_concurrency"`
	WindowMax      int64                `json:"-"`
	Hosts          map[string]hostStats `json:"hosts"`
	AddedLatency   testkit.SimLatency   `json:"added_latency"`
}

type hostStats struct {
	Requests       int64 `json:"requests"`
	MaxConcurrency int64 `json:"max_concurrency"`
	windowMax      int64
}

// latencyWindow and minWindowSamples define testkit.SimLatency's windows.
const (
	latencyWindow    = 250 * time.Millisecond
	minWindowSamples = 100
)

// snapshot reads the counters and the added latency's percentiles.
func (s *jobSim) snapshot() simStats {
	st := s.counters(false)
	st.AddedLatency = percentiles(s.keptSamples())
	return st
}

// keptSamples copies the kept samples, which the handlers append to.
func (s *jobSim) keptSamples() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.added)
}

// sampleList writes the kept samples in order of receipt as the JSON of
// /_sim/samples.
func (s *jobSim) sampleList() string {
	samples := s.keptSamples()
	slices.SortFunc(samples, func(a, b sample) int { return cmp.Compare(a.at, b.at) })
	b := make([]byte, 0, 16+26*len(samples))
	b = append(b, `{"samples":[`...)
	for i, x := range samples {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = strconv.AppendInt(b, x.at/int64(time.Microsecond), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, x.d.Microseconds(), 10)
		b = append(b, ']')
	}
	return string(append(b, "]}"...))
}

// counters reads the counters alone, without the percentiles, which cost
// tens of milliseconds of CPU per 400,000 samples: the progress lines,
// written while a benchmark runs, must not take that from it. window
// restarts the per-interval maxima.
func (s *jobSim) counters(window bool) simStats {
	st := simStats{Total: s.total.Load(), OK: s.ok.Load(), Errors: s.errs.Load(),
		Readonly: s.readonly.Load(), Bad: s.bad.Load(), Hosts: map[string]hostStats{}}
	s.mu.Lock()
	st.MaxConcurrency, st.WindowMax = s.maxInFlight, s.windowMax
	for name, h := range s.hosts {
		st.Hosts[name] = hostStats{Requests: h.requests, MaxConcurrency: h.max, windowMax: h.windowMax}
		if window {
			h.windowMax = h.inFlight
		}
	}
	if window {
		s.windowMax = s.inFlight.Load()
	}
	s.mu.Unlock()
	return st
}

func percentiles(samples []sample) testkit.SimLatency {
	if len(samples) == 0 {
		return testkit.SimLatency{}
	}
	// Receipt order is nearly time order; sorting makes it exact.
	slices.SortFunc(samples, func(a, b sample) int { return cmp.Compare(a.at, b.at) })
	d := make([]time.Duration, len(samples))
	var p99s []time.Duration
	for i, j := 0, 0; i < len(samples); i = j {
		end := samples[i].at + int64(latencyWindow)
		for j = i; j < len(samples) && samples[j].at < end; j++ {
			d[j] = samples[j].d
		}
		if w := d[i:j]; len(w) >= minWindowSamples {
			slices.Sort(w)
			p99s = append(p99s, quantile(w, 0.99))
		}
	}
	slices.Sort(d)
	st := testkit.SimLatency{Count: len(d), P50: quantile(d, 0.50), P90: quantile(d, 0.90), P99: quantile(d, 0.99),
		Max: d[len(d)-1], Windows: len(p99s)}
	if len(p99s) > 0 {
		slices.Sort(p99s)
		st.WindowP99Median, st.WindowP99Max = p99s[len(p99s)/2], p99s[len(p99s)-1]
	}
	return st
}

// quantile returns the q quantile of sorted d, not empty.
func quantile(d []time.Duration, q float64) time.Duration {
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

// topHosts formats the n busiest hosts: their highest concurrency in the
// window, or their requests and highest concurrency overall.
func (s simStats) topHosts(n int, window bool) string {
	names := make([]string, 0, len(s.Hosts))
	for h := range s.Hosts {
		names = append(names, h)
	}
	slices.SortFunc(names, func(a, b string) int {
		if c := s.Hosts[b].Requests - s.Hosts[a].Requests; c != 0 {
			return int(c)
		}
		return strings.Compare(a, b)
	})
	var b strings.Builder
	for i, h := range names[:min(n, len(names))] {
		if i > 0 {
			b.WriteByte(' ')
		}
		if window {
			fmt.Fprintf(&b, "%s=%d", h, s.Hosts[h].windowMax)
		} else {
			fmt.Fprintf(&b, "%s=%d/%d", h, s.Hosts[h].Requests, s.Hosts[h].MaxConcurrency)
		}
	}
	if len(names) == 0 {
		return "-"
	}
	return b.String()
}
