package testkit

import (
	"bytes"
	"changeprop/internal/jobgen"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// send makes one request; it is safe in any goroutine.
func send(ctx context.Context, method, url string, body []byte) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// post is send that fails the test on error; only in the test goroutine.
func post(t *testing.T, ctx context.Context, method, url string, body []byte) (*http.Response, []byte) {
	t.Helper()
	resp, b, err := send(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestJobRunnerModes(t *testing.T) {
	job := jobgen.New(1).NextOfType("refreshLinks")
	tests := []struct {
		name       string
		opts       JobRunnerOptions
		method     string
		body       []byte
		wantStatus int
		wantHeader map[string]string
		wantBody   string // a JSON key the answer has
		wantOK     int64  // Succeeded after the request
	}{
		{name: "get", method: http.MethodGet, wantStatus: 405, wantHeader: map[string]string{"Allow": "POST"}, wantBody: "error"},
		{name: "not json", method: http.MethodPost, body: []byte("type=refreshLinks"), wantStatus: 400, wantBody: "error"},
		{name: "json array", method: http.MethodPost, body: []byte(`[1]`), wantStatus: 400, wantBody: "error"},
		{name: "no type", method: http.MethodPost, body: []byte(`{"meta":{"id":"x"}}`), wantStatus: 400, wantBody: "error"},
		{name: "no meta", method: http.MethodPost, body: []byte(`{"type":"refreshLinks"}`), wantStatus: 400, wantBody: "error"},
		{name: "meta not an object", method: http.MethodPost, body: []byte(`{"type":"refreshLinks","meta":"x"}`), wantStatus: 400, wantBody: "error"},
		{name: "ok", method: http.MethodPost, body: job, wantStatus: 200, wantBody: "status", wantOK: 1},
		{name: "failure", opts: JobRunnerOptions{FailureRate: 1}, method: http.MethodPost, body: job, wantStatus: 500, wantBody: "error"},
		{name: "readonly", opts: JobRunnerOptions{ReadonlyRate: 1}, method: http.MethodPost, body: job, wantStatus: 500,
			wantHeader: map[string]string{"X-Readonly": "true"}, wantBody: "error"},
		{name: "latency", opts: JobRunnerOptions{Latency: func() time.Duration { return 20 * time.Millisecond }},
			method: http.MethodPost, body: job, wantStatus: 200, wantBody: "status", wantOK: 1},
		{name: "respond hook", opts: JobRunnerOptions{Respond: func(r *http.Request, body []byte) (int, http.Header, []byte, bool) {
			return 503, http.Header{"Content-Type": {"application/json"}, "Retry-After": {"1"}}, []byte(`{"error":"busy"}`), true
		}}, method: http.MethodPost, body: job, wantStatus: 503, wantHeader: map[string]string{"Retry-After": "1"}, wantBody: "error"},
		{name: "respond hook declines", opts: JobRunnerOptions{Respond: func(*http.Request, []byte) (int, http.Header, []byte, bool) {
			return 0, nil, nil, false
		}}, method: http.MethodPost, body: job, wantStatus: 200, wantBody: "status", wantOK: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			tt.opts.KeepBodies = true
			j := NewJobRunner(t, tt.opts)
			start := time.Now()
			resp, body := post(t, ctx, tt.method, j.URL()+RunSingleJobPath, tt.body)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d (body %s)", resp.StatusCode, tt.wantStatus, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			for k, v := range tt.wantHeader {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			var answer map[string]any
			if err := json.Unmarshal(body, &answer); err != nil {
				t.Fatalf("answer %q is not JSON: %v", body, err)
			}
			if _, ok := answer[tt.wantBody]; !ok {
				t.Errorf("answer %s has no %q", body, tt.wantBody)
			}
			if tt.wantStatus == 200 && answer["status"] != "ok" {
				t.Errorf("answer %s, want status ok", body)
			}
			if tt.opts.Latency != nil && time.Since(start) < 20*time.Millisecond {
				t.Errorf("answered after %v, before the latency", time.Since(start))
			}

			if j.Count() != 1 || j.Succeeded() != tt.wantOK {
				t.Errorf("Count %d Succeeded %d, want 1 and %d", j.Count(), j.Succeeded(), tt.wantOK)
			}
			reqs := j.Requests()
			if len(reqs) != 1 {
				t.Fatalf("recorded %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != tt.method || r.Path != RunSingleJobPath || !strings.HasPrefix(r.Host, "127.0.0.1:") ||
				r.Status != tt.wantStatus || !bytes.Equal(r.Body, tt.body) || r.At.Before(start) ||
				r.Header.Get("Content-Type") != "application/json" {
				t.Errorf("recorded %+v", r)
			}
		})
	}
}

func TestJobRunnerRates(t *testing.T) {
	const n = 400
	ctx := testCtx(t)
	j := NewJobRunner(t, JobRunnerOptions{Seed: 7, FailureRate: 0.25, ReadonlyRate: 0.25})
	job := jobgen.New(1).NextOfType("htmlCacheUpdate")
	counts := map[string]int{}
	for range n {
		resp, _ := post(t, ctx, http.MethodPost, j.URL()+"/any/path", job)
		switch {
		case resp.StatusCode == 200:
			counts["ok"]++
		case resp.Header.Get("X-Readonly") == "true":
			counts["readonly"]++
		default:
			counts["failed"]++
		}
	}
	for _, k := range []string{"ok", "readonly", "failed"} {
		if counts[k] < n/8 {
			t.Errorf("%s answered %d of %d times: %v", k, counts[k], n, counts)
		}
	}
	if j.Succeeded() != int64(counts["ok"]) || j.Count() != n {
		t.Errorf("Succeeded %d Count %d, answers %v", j.Succeeded(), j.Count(), counts)
	}
	if r := j.Requests()[0]; r.Body != nil || r.Path != "/any/path" {
		t.Errorf("recorded %+v: body kept without KeepBodies, or wrong path", r)
	}
}

func TestJobRunnerMaxConcurrent(t *testing.T) {
	tests := []struct{ clients int }{{1}, {4}, {8}}
	for _, tt := range tests {
		t.Run("", func(t *testing.T) {
			ctx := testCtx(t)
			// Hold every request until all clients are in, so the peak is exact.
			all := make(chan struct{})
			var arrived sync.WaitGroup
			arrived.Add(tt.clients)
			j := NewJobRunner(t, JobRunnerOptions{Respond: func(r *http.Request, _ []byte) (int, http.Header, []byte, bool) {
				arrived.Done()
				select {
				case <-all:
				case <-r.Context().Done():
				}
				return 0, nil, nil, false
			}})
			go func() { arrived.Wait(); close(all) }()
			job := jobgen.New(2).NextOfType("cdnPurge")
			errs := make(chan error, tt.clients)
			for range tt.clients {
				go func() {
					_, _, err := send(ctx, http.MethodPost, j.URL()+RunSingleJobPath, job)
					errs <- err
				}()
			}
			for range tt.clients {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			if got := j.MaxConcurrent(); got != int64(tt.clients) {
				t.Errorf("MaxConcurrent = %d, want %d", got, tt.clients)
			}
		})
	}
}

func TestJobRunnerWaitFor(t *testing.T) {
	j := NewJobRunner(t, JobRunnerOptions{})
	ctx := testCtx(t)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := j.WaitFor(short, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor with no requests = %v, want deadline exceeded", err)
	}
	if err := j.WaitFor(ctx, 0); err != nil {
		t.Fatalf("WaitFor(0) = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- j.WaitFor(ctx, 3) }()
	job := jobgen.New(3).NextOfType("refreshLinks")
	for range 3 {
		post(t, ctx, http.MethodPost, j.URL()+RunSingleJobPath, job)
	}
	if j.Succeeded() != 3 {
		t.Fatalf("Succeeded = %d, want 3", j.Succeeded())
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestJobRunnerClientGone(t *testing.T) {
	ctx := testCtx(t)
	j := NewJobRunner(t, JobRunnerOptions{Latency: func() time.Duration { return time.Minute }})
	reqCtx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(reqCtx, http.MethodPost, j.URL()+RunSingleJobPath, strings.NewReader(`{}`))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("request answered despite a minute of latency")
	}
	j.Close() // waits for the handler, which the server's cancellation ends
	if reqs := j.Requests(); len(reqs) != 1 || reqs[0].Status != 0 || j.Count() != 0 {
		t.Errorf("recorded %+v, Count %d; want one request with Status 0, not counted", reqs, j.Count())
	}
}

func TestJobRunnerMaxRecorded(t *testing.T) {
	ctx := testCtx(t)
	j := NewJobRunner(t, JobRunnerOptions{MaxRecorded: 10})
	job := jobgen.New(4).NextOfType("refreshLinks")
	for range 25 {
		post(t, ctx, http.MethodPost, j.URL()+RunSingleJobPath, job)
	}
	if n := len(j.Requests()); n > 10 || n < 5 {
		t.Errorf("kept %d requests, want 5..10", n)
	}
	if j.Count() != 25 {
		t.Errorf("Count = %d, want 25", j.Count())
	}
}

// TestJobRunnerAcceptsJobGen: every event jobgen makes, of every job type and
// of an unknown one, is one the JobRunner accepts as RunSingleJob.php would.
func TestJobRunnerAcceptsJobGen(t *testing.T) {
	g := jobgen.New(42)
	for range 200 {
		if _, v := g.Next(); validateJobEvent(v) != nil {
			t.Fatalf("JobRunner would reject %s: %v", v, validateJobEvent(v))
		}
	}
	for _, jt := range append(jobgen.Types(), "someUnknownJob") {
		for range 20 {
			if v := g.NextOfType(jt); validateJobEvent(v) != nil {
				t.Fatalf("JobRunner would reject %s: %v", v, validateJobEvent(v))
			}
		}
	}
	if validateJobEvent([]byte(`{"type":"x"}`)) == nil {
		t.Fatal("an event without meta was accepted")
	}
}
