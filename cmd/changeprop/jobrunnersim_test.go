package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"changeprop/internal/jobgen"
	"changeprop/internal/testkit"
)

func TestParseLatency(t *testing.T) {
	tests := []struct {
		spec    string
		wantErr string
		// draws at (u, z) and what they must give
		u, z float64
		want time.Duration
	}{
		{spec: "0", want: 0},
		{spec: "none", want: 0},
		{spec: "", want: 0},
		{spec: "fixed:5ms", want: 5 * time.Millisecond},
		{spec: "fixed:0s", want: 0},
		{spec: "uniform:1ms-21ms", u: 0.5, want: 11 * time.Millisecond},
		{spec: "uniform:1ms-21ms", u: 0, want: time.Millisecond},
		{spec: "uniform:3ms-3ms", u: 0.9, want: 3 * time.Millisecond},
		{spec: "lognormal:median=10ms,p99=200ms", z: 0, want: 10 * time.Millisecond},
		{spec: "lognormal:p99=200ms,median=10ms", z: z99, want: 200 * time.Millisecond},
		{spec: "lognormal:median=10ms,p99=10ms", z: 3, want: 10 * time.Millisecond},
		{spec: "fixed:", wantErr: "fixed:DURATION"},
		{spec: "fixed:-1ms", wantErr: "fixed:DURATION"},
		{spec: "fixed", wantErr: "fixed:DURATION"},
		{spec: "0:1ms", wantErr: "no argument"},
		{spec: "uniform:5ms", wantErr: "uniform:MIN-MAX"},
		{spec: "uniform:20ms-1ms", wantErr: "below min"},
		{spec: "uniform:1ms-x", wantErr: "uniform:MIN-MAX"},
		{spec: "lognormal:median=10ms", wantErr: "both be given"},
		{spec: "lognormal:median=10ms,p99=5ms", wantErr: "below median"},
		{spec: "lognormal:median=10ms,p95=50ms", wantErr: `unknown parameter "p95"`},
		{spec: "lognormal:median=ten", wantErr: "median=DURATION"},
		{spec: "pareto:1ms", wantErr: `unknown distribution "pareto"`},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			d, err := parseLatency(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseLatency(%q) error = %v, want it to mention %q", tt.spec, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := d.draw(tt.u, tt.z)
			if diff := math.Abs(float64(got - tt.want)); diff > float64(time.Microsecond) {
				t.Errorf("draw(%v, %v) = %v, want %v", tt.u, tt.z, got, tt.want)
			}
		})
	}
}

// TestJobRunnerSimSemantics checks the RunSingleJob.php answers and the
// counters of the stats endpoint, for both servers.
func TestJobRunnerSimSemantics(t *testing.T) {
	job := `{"$schema":"/mediawiki/job/1.0.0","type":"refreshLinks","meta":{"domain":"en.wikipedia.org","dt":"2030-01-01T00:00:00.000000Z"},"params":{}}`
	tests := []struct {
		name             string
		errRate, roRate  float64
		lean             bool
		method, body     string
		wantStatus       int
		wantHeader       string // key=value
		wantBodyContains string
	}{
		{name: "ok", method: "POST", body: job, wantStatus: 200, wantBodyContains: `"status":"ok"`},
		{name: "ok lean", lean: true, method: "POST", body: job, wantStatus: 200, wantBodyContains: `"status":"ok"`},
		{name: "GET", method: "GET", wantStatus: 405, wantHeader: "Allow=POST", wantBodyContains: "POSTed"},
		{name: "not JSON", method: "POST", body: "nope", wantStatus: 400, wantBodyContains: "decode"},
		{name: "not JSON lean", lean: true, method: "POST", body: "nope", wantStatus: 400, wantBodyContains: "decode"},
		{name: "no type", method: "POST", body: `{"meta":{}}`, wantStatus: 400, wantBodyContains: "no type"},
		{name: "no type lean", lean: true, method: "POST", body: `{"meta":{}}`, wantStatus: 400, wantBodyContains: "no type"},
		{name: "no meta", method: "POST", body: `{"type":"x"}`, wantStatus: 400, wantBodyContains: "no meta"},
		{name: "no meta lean", lean: true, method: "POST", body: `{"type":"x"}`, wantStatus: 400, wantBodyContains: "no meta"},
		{name: "error", errRate: 1, method: "POST", body: job, wantStatus: 500, wantBodyContains: "Exception"},
		{name: "read-only", roRate: 1, method: "POST", body: job, wantStatus: 500, wantHeader: "X-Readonly=true", wantBodyContains: "read-only"},
	}
	for _, server := range simServers {
		for _, tt := range tests {
			t.Run(server+"/"+tt.name, func(t *testing.T) {
				sim := newJobSim(latencyDist{}, tt.errRate, tt.roRate, tt.lean)
				sim.now = func() time.Time { return time.Date(2030, 1, 1, 0, 0, 0, 3_000_000, time.UTC) }
				base := startSim(t, sim, server)
				req, _ := http.NewRequest(tt.method, base+"/rpc/RunSingleJob.php", strings.NewReader(tt.body))
				req.Host = "en.wikipedia.org"
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.wantStatus || !strings.Contains(string(body), tt.wantBodyContains) ||
					resp.Header.Get("Content-Type") != "application/json" || !json.Valid(body) {
					t.Fatalf("got %d %q (%s), want %d with %q", resp.StatusCode, body, resp.Header.Get("Content-Type"), tt.wantStatus, tt.wantBodyContains)
				}
				if k, v, ok := strings.Cut(tt.wantHeader, "="); ok && resp.Header.Get(k) != v {
					t.Errorf("header %s = %q, want %q", k, resp.Header.Get(k), v)
				}

				resp, err = http.Get(base + "/_sim/stats")
				if err != nil {
					t.Fatal(err)
				}
				var st simStats
				if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if tt.wantStatus == 200 || tt.wantStatus == 500 {
					if st.Total != 1 || st.Hosts["en.wikipedia.org"].Requests != 1 || st.Hosts["en.wikipedia.org"].MaxConcurrency != 1 {
						t.Errorf("stats %+v: want 1 job from en.wikipedia.org", st)
					}
					if st.AddedLatency.Count != 1 || st.AddedLatency.P50 != 3*time.Millisecond {
						t.Errorf("added latency %+v, want one sample of 3ms", st.AddedLatency)
					}
				} else if st.Bad != 1 || st.Total != 0 {
					t.Errorf("stats %+v: want one bad request", st)
				}

				resp, err = http.Post(base+"/_sim/reset", "", nil)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusNoContent {
					t.Errorf("reset: %d", resp.StatusCode)
				}
				if st := sim.snapshot(); st.AddedLatency.Count != 0 {
					t.Errorf("after reset: %+v", st.AddedLatency)
				}
			})
		}
	}
}

// simServers are the simulator's HTTP servers (-server).
var simServers = []string{"net/http", "minimal"}

// startSim serves sim with the server named and returns its base URL.
func startSim(t testing.TB, sim *jobSim, server string) string {
	if server == "net/http" {
		srv := httptest.NewServer(sim)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sim.serveMinimal(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); ln.Close(); <-done })
	return "http://" + ln.Addr().String()
}

// TestSimCountersWithoutPercentiles: the progress lines' counters and
// /_sim/stats?percentiles=false leave the percentiles out (their cost is
// the benchmark's); /_sim/stats has them.
func TestSimCountersWithoutPercentiles(t *testing.T) {
	sim := newJobSim(latencyDist{}, 0, 0, true)
	now := time.Now()
	for i := range 3 {
		sim.sample(now, time.Duration(i+1)*time.Millisecond)
	}
	if c := sim.counters(true); c.AddedLatency != (testkit.SimLatency{}) {
		t.Errorf("counters computed percentiles: %+v", c.AddedLatency)
	}
	for _, server := range simServers {
		base := startSim(t, sim, server)
		for _, tt := range []struct {
			query string
			want  int
		}{{"", 3}, {"?percentiles=false", 0}, {"?percentiles=true", 3}, {"?percentiles=x", 3}} {
			resp, err := http.Get(base + "/_sim/stats" + tt.query)
			if err != nil {
				t.Fatal(err)
			}
			var st simStats
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if st.AddedLatency.Count != tt.want {
				t.Errorf("%s: /_sim/stats%s: %d samples, want %d", server, tt.query, st.AddedLatency.Count, tt.want)
			}
		}
	}
}

// TestSimSamples: /_sim/samples lists every kept sample in order of
// receipt, in microseconds, on both servers.
func TestSimSamples(t *testing.T) {
	sim := newJobSim(latencyDist{}, 0, 0, true)
	t0 := time.UnixMicro(1_800_000_000_000_000)
	sim.sample(t0.Add(2*time.Millisecond), 1500*time.Microsecond)
	sim.sample(t0, 40*time.Millisecond)
	sim.sample(t0.Add(time.Millisecond), 3*time.Microsecond)
	want := [][2]int64{{1_800_000_000_000_000, 40_000}, {1_800_000_000_001_000, 3}, {1_800_000_000_002_000, 1500}}
	for _, server := range simServers {
		base := startSim(t, sim, server)
		resp, err := http.Get(base + "/_sim/samples")
		if err != nil {
			t.Fatal(err)
		}
		var got struct{ Samples [][2]int64 }
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s: %v", server, err)
		}
		if !slices.Equal(got.Samples, want) {
			t.Errorf("%s: samples %v, want %v", server, got.Samples, want)
		}
	}
	sim.reset()
	base := startSim(t, sim, simServers[0])
	resp, err := http.Get(base + "/_sim/samples")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := strings.TrimSpace(string(b)); got != `{"samples":[]}` {
		t.Errorf("after reset: %s", got)
	}
}

// TestPercentilesWindows: a burst shows in the worst window's p99 and not
// in the median's. Ten windows of 200 jobs at 2 ms, received out of order;
// the fourth also has 10 jobs at 300 ms.
func TestPercentilesWindows(t *testing.T) {
	var d []sample
	start := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC).UnixNano()
	for w := range 10 {
		for i := range 200 {
			at := start + int64(w)*int64(latencyWindow) + int64(i)*int64(latencyWindow)/200
			d = append(d, sample{at: at, d: 2 * time.Millisecond})
			if w == 3 && i%20 == 0 {
				d = append(d, sample{at: at + 1, d: 300 * time.Millisecond})
			}
		}
	}
	slices.Reverse(d)
	got := percentiles(d)
	if got.Count != 2010 || got.Windows != 10 {
		t.Fatalf("count %d, windows %d; want 2010 and 10", got.Count, got.Windows)
	}
	if got.WindowP99Median != 2*time.Millisecond || got.WindowP99Max != 300*time.Millisecond {
		t.Errorf("window p99s: median %v, worst %v; want 2ms and 300ms", got.WindowP99Median, got.WindowP99Max)
	}
}

// TestJobRunnerSimBodies: bodies of every size, with a Content-Length or
// chunked, are read whole by both servers, and a kept buffer never lends
// one request's bytes to the next.
func TestJobRunnerSimBodies(t *testing.T) {
	for _, run := range []struct {
		lean   bool
		server string
	}{{false, "net/http"}, {true, "net/http"}, {false, "minimal"}, {true, "minimal"}} {
		lean := run.lean
		sim := newJobSim(latencyDist{}, 0, 0, lean)
		base := startSim(t, sim, run.server)
		client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}} // one connection: one handler after another
		pad := strings.Repeat(" ", 100<<10)
		for i, tc := range []struct {
			body    string
			chunked bool
			want    int
		}{
			{`{"type":"x","meta":{"dt":"2030-01-01T00:00:00Z"},"params":{"p":"` + strings.Repeat("a", 20<<10) + `"}}`, false, 200},
			{`{"type":"x"}`, false, 400},                   // shorter than the last: no meta
			{`{"meta":{}` + pad + `}`, false, 400},         // larger than a kept buffer: no type
			{`{"type":"x","meta":{}}` + pad, true, 200},    // chunked
			{`{"type":"x"}`, true, 400},                    // chunked, short
			{`{"type":"x","meta":{"dt":"x"}}`, false, 200}, // after all of them
		} {
			var body io.Reader = strings.NewReader(tc.body)
			if tc.chunked {
				body = io.MultiReader(body) // no length known: sent chunked
			}
			req, _ := http.NewRequest("POST", base+"/rpc/RunSingleJob.php", body)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			answer, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s, lean %v, request %d (%d bytes, chunked %v): %d %s, want %d", run.server, lean, i, len(tc.body), tc.chunked, resp.StatusCode, answer, tc.want)
			}
		}
	}
}

// BenchmarkJobRunnerSim posts generated 0.5-4 KB jobs to the lean
// simulator over keep-alive connections; the figures include the client's
// side of net/http, which is in the same process.
func BenchmarkJobRunnerSim(b *testing.B) {
	for _, server := range simServers {
		b.Run(strings.ReplaceAll(server, "/", ""), func(b *testing.B) { benchmarkJobRunnerSim(b, server) })
	}
}

func benchmarkJobRunnerSim(b *testing.B, server string) {
	sim := newJobSim(latencyDist{}, 0, 0, true)
	base := startSim(b, sim, server)
	gen := jobgen.New(1)
	gen.MinSize, gen.MaxSize = 512, 4096
	jobs := make([][]byte, 64)
	for i := range jobs {
		_, jobs[i] = gen.Next()
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	url := base + "/rpc/RunSingleJob.php"
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			resp, err := client.Post(url, "application/json", bytes.NewReader(jobs[i%len(jobs)]))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// TestMinimalServerConnection: the minimal server answers pipelined
// requests on one connection in order, and a malformed request with 400
// before it closes the connection.
func TestMinimalServerConnection(t *testing.T) {
	sim := newJobSim(latencyDist{}, 0, 0, true)
	base := startSim(t, sim, "minimal")
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	job := `{"type":"x","meta":{"dt":"2030-01-01T00:00:00Z"}}`
	post := "POST /rpc/RunSingleJob.php HTTP/1.1\r\nHost: a.org\r\nContent-Length: " + strconv.Itoa(len(job)) + "\r\n\r\n" + job
	if _, err := io.WriteString(c, post+"GET /x HTTP/1.1\r\nHost: b.org\r\n\r\n"+post+"NOT HTTP\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for i, want := range []int{200, 405, 200, 400} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || !json.Valid(body) {
			t.Errorf("response %d: %d %q, want %d", i, resp.StatusCode, body, want)
		}
	}
	if n, err := br.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("after the malformed request: read %d, %v; want the connection closed", n, err)
	}
	if st := sim.snapshot(); st.Total != 2 || st.Bad != 1 || st.Hosts["a.org"].Requests != 2 || st.Hosts["b.org"].Requests != 1 {
		t.Errorf("stats %+v", st)
	}
}
