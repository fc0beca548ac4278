package breaker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

var _ net.Error = timeoutErr{}

func TestIsFailure(t *testing.T) {
	urlErr := func(err error) error { return &url.Error{Op: "Post", URL: "http://x/rpc", Err: err} }
	tests := []struct {
		name   string
		status int
		err    error
		want   bool
	}{
		{"200", 200, nil, false},
		{"204", 204, nil, false},
		{"301", 301, nil, false},
		{"400 job's fault", 400, nil, false},
		{"404", 404, nil, false},
		{"408 is a 4xx", 408, nil, false},
		{"412", 412, nil, false},
		{"429 overloaded", 429, nil, true},
		{"500", 500, nil, true},
		{"502", 502, nil, true},
		{"503", 503, nil, true},
		{"504", 504, nil, true},
		{"no request", 0, nil, false},
		{"client timeout", 0, urlErr(context.DeadlineExceeded), true},
		{"net timeout", 0, urlErr(timeoutErr{}), true},
		{"connection refused", 0, urlErr(&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), true},
		{"dns", 0, urlErr(&net.DNSError{Err: "no such host", Name: "x"}), true},
		{"body read failed after 200", 200, errors.New("unexpected EOF"), true},
		{"our shutdown", 0, urlErr(context.Canceled), false},
		{"our shutdown after a 503", 503, fmt.Errorf("reading body: %w", context.Canceled), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsFailure(tt.status, tt.err); got != tt.want {
				t.Errorf("IsFailure(%d, %v) = %v, want %v", tt.status, tt.err, got, tt.want)
			}
		})
	}
}

func TestDestination(t *testing.T) {
	tests := []struct{ uri, want string }{
		{"http://jobrunner.svc.eqiad.wmnet/rpc/RunSingleJob.php", "http://jobrunner.svc.eqiad.wmnet:80"},
		{"https://jobrunner.discovery.wmnet:443/rpc/RunSingleJob.php", "https://jobrunner.discovery.wmnet:443"},
		{"https://restbase.svc/en.wikipedia.org/v1/page", "https://restbase.svc:443"},
		{"http://Jobrunner.SVC:8080/x?y=1", "http://jobrunner.svc:8080"},
		{"HTTP://host", "http://host:80"},
		{"http://user:pw@host:81/x", "http://host:81"},
		{"http://[::1]/x", "http://[::1]:80"},
		{"https://[2001:db8::1]:8443/", "https://[2001:db8::1]:8443"},
		{"ftp://host/file", "ftp://host"},
		{"enwiki", "enwiki"},
		{"", ""},
		{"/relative/path", "/relative/path"},
		{"http://host:/x", "http://host:80"},
		{"http://host:0080", "http://host:0080"},
		{"https://a-b.c9.svc?q", "https://a-b.c9.svc:443"},
		{"http://host#frag", "http://host:80"},
		{"http://host:8a/x", "http://host:8a/x"},
		{"http://", "http://"},
		{"http:///path", "http:///path"},
	}
	for _, tt := range tests {
		if got := Destination(tt.uri); got != tt.want {
			t.Errorf("Destination(%q) = %q, want %q", tt.uri, got, tt.want)
		}
	}
}

// TestPlainDestinationAgrees checks the fast path against url.Parse on
// URIs built from the characters that decide it.
func TestPlainDestinationAgrees(t *testing.T) {
	parts := []string{"http://", "https://", "HTTP://", "h", "a.b", "-", "9", ":", ":80", ":443", ":x",
		"/", "?q=1", "#f", "@", "[::1]", "%41", " ", "Z", "_", ""}
	rng := rand.New(rand.NewPCG(1, 2))
	checked := 0
	for range 200_000 {
		var b strings.Builder
		b.WriteString(parts[rng.IntN(3)])
		for range rng.IntN(6) {
			b.WriteString(parts[rng.IntN(len(parts))])
		}
		uri := b.String()
		d, ok := plainDestination(uri)
		if !ok {
			continue
		}
		checked++
		if want := parsedDestination(uri); d != want {
			t.Fatalf("plainDestination(%q) = %q, url.Parse gives %q", uri, d, want)
		}
	}
	if checked < 5_000 {
		t.Fatalf("only %d URIs took the fast path", checked)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		v      string
		want   time.Time
		wantOK bool
	}{
		{"120", now.Add(2 * time.Minute), true},
		{"0", now, true},
		{" 5 ", now.Add(5 * time.Second), true},
		{"Sun, 01 Mar 2026 12:00:30 GMT", now.Add(30 * time.Second), true},
		{"Sunday, 01-Mar-26 12:00:30 GMT", now.Add(30 * time.Second), true}, // RFC 850
		{"Sun Mar  1 12:00:30 2026", now.Add(30 * time.Second), true},       // asctime
		{"Sun, 01 Mar 2026 11:00:00 GMT", now.Add(-time.Hour), true},        // past: as is
		{"99999999999999999999", now.Add(time.Duration(1<<63-1) / time.Second * time.Second), true},
		{"", time.Time{}, false},
		{"-5", time.Time{}, false},
		{"1.5", time.Time{}, false},
		{"soon", time.Time{}, false},
		{"5s", time.Time{}, false},
	}
	for _, tt := range tests {
		got, ok := ParseRetryAfter(tt.v, now)
		if ok != tt.wantOK || !got.Equal(tt.want) {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tt.v, got, ok, tt.want, tt.wantOK)
		}
	}
}

func BenchmarkDestination(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Destination("https://jobrunner.discovery.wmnet/rpc/RunSingleJob.php")
	}
}
