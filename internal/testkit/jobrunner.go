package testkit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"
)

// RunSingleJobPath is the path changeprop posts jobs to. JobRunner accepts
// any path and records it, so tests can assert on it.
const RunSingleJobPath = "/rpc/RunSingleJob.php"

// maxJobBody bounds the request body the JobRunner reads.
const maxJobBody = 8 << 20

// JobRunnerOptions configures a JobRunner. The zero value answers every
// valid job 200 at once and records requests without their bodies.
type JobRunnerOptions struct {
	// Latency returns how long to hold each request before answering;
	// nil means no latency. The wait ends early if the client goes away,
	// and then the request is recorded with Status 0 and not counted.
	Latency func() time.Duration
	// FailureRate is the share of valid jobs answered 500 with a JSON
	// error body. 0 means none.
	FailureRate float64
	// ReadonlyRate is the share of valid jobs answered 500 with the header
	// X-Readonly: true, as MediaWiki does while its database is read-only.
	// 0 means none. FailureRate+ReadonlyRate above 1 means every job fails.
	ReadonlyRate float64
	// Respond, if set, is asked first about every request (after
	// Latency); when it returns handled, its answer is sent as is and the
	// built-in behaviour is skipped. A nil header is fine.
	Respond func(r *http.Request, body []byte) (status int, header http.Header, respBody []byte, handled bool)
	// Seed seeds the random choice between success, failure and read-only.
	Seed int64
	// KeepBodies records request bodies in Requests. False keeps memory
	// flat for long runs (dev mode); tests that look at bodies set it.
	KeepBodies bool
	// MaxRecorded bounds Requests to at most N requests, the most recent
	// (when full, the older half is dropped); 0 means keep all. Counters
	// are not affected.
	MaxRecorded int
}

// Request is one request the JobRunner received.
type Request struct {
	Method, Path, Host string
	Header             http.Header
	Body               []byte    // nil unless JobRunnerOptions.KeepBodies
	At                 time.Time // when the request arrived
	Status             int       // status answered; 0 if the client went away first
}

// JobRunner emulates MediaWiki's RunSingleJob.php over real HTTP and
// records every request:
//
//   - a method other than POST is answered 405;
//   - a body that is not a JSON object with "type" and "meta" is answered 400;
//   - otherwise, by a seeded draw, 500 with {"error":...} (FailureRate),
//     500 with X-Readonly: true (ReadonlyRate), or 200 with {"status":"ok"}.
//
// All answers are JSON. All methods are safe for concurrent use.
type JobRunner struct {
	opts   JobRunnerOptions
	srv    *httptest.Server
	cancel context.CancelFunc // ends the Latency waits on Close

	inFlight, maxInFlight atomic.Int64
	count                 atomic.Int64

	randMu sync.Mutex
	rand   *rand.Rand

	mu        sync.Mutex
	requests  []Request
	succeeded int64
	changed   chan struct{} // closed and replaced when succeeded grows
}

// StartJobRunner starts a JobRunner on 127.0.0.1 on a random port.
// Close it when done.
func StartJobRunner(opts JobRunnerOptions) *JobRunner {
	j := &JobRunner{
		opts:    opts,
		rand:    rand.New(rand.NewPCG(uint64(opts.Seed), 0x6a6f6272756e6e72)),
		changed: make(chan struct{}),
	}
	ctx, cancel := context.WithCancel(context.Background())
	j.cancel = cancel
	j.srv = httptest.NewUnstartedServer(http.HandlerFunc(j.serve))
	j.srv.Config.BaseContext = func(net.Listener) context.Context { return ctx }
	j.srv.Start()
	return j
}

// URL returns the base URL, e.g. http://127.0.0.1:PORT; post jobs to
// URL()+RunSingleJobPath.
func (j *JobRunner) URL() string { return j.srv.URL }

// Close shuts the server down. Requests waiting out their Latency end at
// once (recorded with Status 0); Close waits for the handlers to return.
func (j *JobRunner) Close() {
	j.cancel()
	j.srv.Close()
}

// Requests returns a copy of the recorded requests, in the order they
// were answered.
func (j *JobRunner) Requests() []Request {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]Request, len(j.requests))
	copy(out, j.requests)
	return out
}

// Count returns how many requests were answered, whatever the status.
func (j *JobRunner) Count() int64 { return j.count.Load() }

// Succeeded returns how many requests were answered 200.
func (j *JobRunner) Succeeded() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.succeeded
}

// MaxConcurrent returns the highest number of requests in flight at once.
func (j *JobRunner) MaxConcurrent() int64 { return j.maxInFlight.Load() }

// WaitFor blocks until Succeeded() >= n or ctx is done, returning ctx's
// error in the latter case.
func (j *JobRunner) WaitFor(ctx context.Context, n int64) error {
	for {
		j.mu.Lock()
		got, changed := j.succeeded, j.changed
		j.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("testkit: %d of %d jobs succeeded: %w", got, n, ctx.Err())
		}
	}
}

func (j *JobRunner) serve(w http.ResponseWriter, r *http.Request) {
	in := j.inFlight.Add(1)
	defer j.inFlight.Add(-1)
	for {
		m := j.maxInFlight.Load()
		if in <= m || j.maxInFlight.CompareAndSwap(m, in) {
			break
		}
	}

	rec := Request{Method: r.Method, Path: r.URL.Path, Host: r.Host, Header: r.Header.Clone(), At: time.Now()}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJobBody))
	if j.opts.KeepBodies {
		rec.Body = body
	}
	if err != nil {
		rec.Status = http.StatusBadRequest
		writeJSON(w, rec.Status, nil, map[string]string{"error": "reading body: " + err.Error()})
		j.record(rec)
		return
	}

	if j.opts.Latency != nil {
		if d := j.opts.Latency(); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				j.record(rec) // Status 0: the client went away
				return
			}
		}
	}

	rec.Status = j.answer(w, r, body)
	j.record(rec)
}

// answer writes the response and returns its status.
func (j *JobRunner) answer(w http.ResponseWriter, r *http.Request, body []byte) int {
	if j.opts.Respond != nil {
		if status, header, respBody, handled := j.opts.Respond(r, body); handled {
			for k, vs := range header {
				w.Header()[k] = vs
			}
			w.WriteHeader(status)
			_, _ = w.Write(respBody)
			return status
		}
	}
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusMethodNotAllowed, http.Header{"Allow": {http.MethodPost}},
			map[string]string{"error": "Request must be POSTed"})
		return http.StatusMethodNotAllowed
	}
	if err := validateJobEvent(body); err != nil {
		writeJSON(w, http.StatusBadRequest, nil, map[string]string{"error": err.Error()})
		return http.StatusBadRequest
	}
	j.randMu.Lock()
	u := j.rand.Float64()
	j.randMu.Unlock()
	switch {
	case u < j.opts.FailureRate:
		writeJSON(w, http.StatusInternalServerError, nil,
			map[string]string{"error": "Exception executing job: testkit injected failure"})
		return http.StatusInternalServerError
	case u < j.opts.FailureRate+j.opts.ReadonlyRate:
		writeJSON(w, http.StatusInternalServerError, http.Header{"X-Readonly": {"true"}},
			map[string]string{"error": "Database is read-only: testkit injected read-only mode"})
		return http.StatusInternalServerError
	}
	writeJSON(w, http.StatusOK, nil, map[string]string{"status": "ok"})
	return http.StatusOK
}

// validateJobEvent checks what RunSingleJob.php needs: a JSON object with
// a non-empty string "type" and an object "meta".
func validateJobEvent(body []byte) error {
	var ev struct {
		Type *string         `json:"type"`
		Meta json.RawMessage `json:"meta"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return fmt.Errorf("Could not decode the event: %v", err)
	}
	if ev.Type == nil || *ev.Type == "" {
		return fmt.Errorf("Job event has no type")
	}
	var meta map[string]any
	if len(ev.Meta) == 0 || json.Unmarshal(ev.Meta, &meta) != nil || meta == nil {
		return fmt.Errorf("Job event has no meta object")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, header http.Header, v any) {
	for k, vs := range header {
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (j *JobRunner) record(rec Request) {
	if rec.Status != 0 {
		j.count.Add(1)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if limit := j.opts.MaxRecorded; limit > 0 && len(j.requests) >= limit {
		// Drop the older half at once so trimming is amortised O(1).
		n := copy(j.requests, j.requests[len(j.requests)-limit/2:])
		clear(j.requests[n:])
		j.requests = j.requests[:n]
	}
	j.requests = append(j.requests, rec)
	if rec.Status == http.StatusOK {
		j.succeeded++
		close(j.changed)
		j.changed = make(chan struct{})
	}
}
