package dispatch

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"changeprop/rules"
)

// rawServer answers each connection with respond, which reads the
// request from r and writes whatever it likes to w. It records every
// request head it was sent.
type rawServer struct {
	ln    net.Listener
	mu    sync.Mutex
	heads []string
	conns atomic.Int64
}

func newRawServer(t *testing.T, respond func(r *bufio.Reader, w net.Conn, head string) bool) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					head, err := readRequestHead(r)
					if err != nil {
						return
					}
					s.mu.Lock()
					s.heads = append(s.heads, head)
					s.mu.Unlock()
					if !respond(r, c, head) {
						return
					}
				}
			}()
		}
	}()
	return s
}

func (s *rawServer) url() string { return "http://" + s.ln.Addr().String() }

func (s *rawServer) lastHead() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.heads) == 0 {
		return ""
	}
	return s.heads[len(s.heads)-1]
}

func (s *rawServer) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.heads)
}

// readRequestHead reads a request head and its Content-Length body.
func readRequestHead(r *bufio.Reader) (string, error) {
	var b strings.Builder
	length := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		b.WriteString(line)
		if line == "\r\n" {
			break
		}
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && strings.EqualFold(k, "content-length") {
			fmt.Sscan(strings.TrimSpace(v), &length)
		}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(r, body); err != nil {
		return "", err
	}
	return b.String() + string(body), nil
}

func TestHTTPSenderWire(t *testing.T) {
	srv := newRawServer(t, func(_ *bufio.Reader, w net.Conn, _ string) bool {
		_, err := io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return err == nil
	})
	s := NewHTTPSender(HTTPOptions{})
	tests := []struct {
		name string
		req  rules.Request
		want string
	}{
		{"post with host header and canonical names",
			rules.Request{Method: "POST", URI: srv.url() + "/rpc/RunSingleJob.php", Body: []byte(`{"a":1}`),
				Headers: []rules.Header{{Name: "host", Value: "en.wikipedia.org"}, {Name: "content-type", Value: "application/json"},
					{Name: "x-request-id", Value: "r1"}, {Name: "content-length", Value: "999"}}},
			"POST /rpc/RunSingleJob.php HTTP/1.1\r\nHost: en.wikipedia.org\r\nContent-Type: application/json\r\n" +
				"X-Request-Id: r1\r\nContent-Length: 7\r\n\r\n{\"a\":1}"},
		{"get without a body has no length",
			rules.Request{Method: "GET", URI: srv.url() + "?q=1#frag"},
			"GET /?q=1 HTTP/1.1\r\nHost: " + srv.ln.Addr().String() + "\r\n\r\n"},
		{"post without a body says 0",
			rules.Request{Method: "POST", URI: srv.url() + "/x"},
			"POST /x HTTP/1.1\r\nHost: " + srv.ln.Addr().String() + "\r\nContent-Length: 0\r\n\r\n"},
		{"bytes that may not stand in a request line are encoded",
			rules.Request{Method: "PURGE", URI: srv.url() + "/wiki/A b|é?t=a b|c"},
			"PURGE /wiki/A%20b%7C%C3%A9?t=a%20b|c HTTP/1.1\r\nHost: " + srv.ln.Addr().String() + "\r\n\r\n"},
		{"user information is basic authentication",
			rules.Request{Method: "GET", URI: "http://user:p%40ss@" + srv.ln.Addr().String() + "/a"},
			"GET /a HTTP/1.1\r\nHost: " + srv.ln.Addr().String() + "\r\nAuthorization: Basic dXNlcjpwQHNz\r\n\r\n"},
		{"unless the rule sets authorization",
			rules.Request{Method: "GET", URI: "http://user:p%40ss@" + srv.ln.Addr().String() + "/a",
				Headers: []rules.Header{{Name: "authorization", Value: "Bearer t"}}},
			"GET /a HTTP/1.1\r\nHost: " + srv.ln.Addr().String() + "\r\nAuthorization: Bearer t\r\n\r\n"},
		{"a large body is written too",
			rules.Request{Method: "PUT", URI: srv.url() + "/big", Body: []byte(strings.Repeat("b", 128<<10))},
			"PUT /big HTTP/1.1\r\nHost: " + srv.ln.Addr().String() + "\r\nContent-Length: 131072\r\n\r\n" + strings.Repeat("b", 128<<10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := s.Send(context.Background(), &tt.req)
			if err != nil || resp.Status != 200 || string(resp.Body) != "ok" {
				t.Fatalf("Send = %+v, %v", resp, err)
			}
			if got := srv.lastHead(); got != tt.want {
				t.Errorf("sent\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
	if n := srv.conns.Load(); n != 1 {
		t.Errorf("%d connections for %d sequential requests, want 1", n, len(tests))
	}
}

func TestHTTPSenderInvalidRequests(t *testing.T) {
	srv := newRawServer(t, func(_ *bufio.Reader, w net.Conn, _ string) bool {
		_, err := io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		return err == nil
	})
	s := NewHTTPSender(HTTPOptions{})
	tests := []struct {
		name string
		req  rules.Request
	}{
		{"line break in a header value", rules.Request{Method: "GET", URI: srv.url(),
			Headers: []rules.Header{{Name: "x-a", Value: "1\r\nX-Injected: yes"}}}},
		{"line break in the host header", rules.Request{Method: "GET", URI: srv.url(),
			Headers: []rules.Header{{Name: "host", Value: "a\r\nX-Injected: yes"}}}},
		{"space in the host header", rules.Request{Method: "GET", URI: srv.url(),
			Headers: []rules.Header{{Name: "host", Value: "a b"}}}},
		{"not http", rules.Request{Method: "GET", URI: "file:///etc/passwd"}},
		{"relative", rules.Request{Method: "GET", URI: "/rpc"}},
		{"malformed escape in the user information", rules.Request{Method: "GET", URI: "http://user:p%zz@" + srv.ln.Addr().String() + "/"}},
		{"malformed escape", rules.Request{Method: "GET", URI: srv.url() + "/a%zz"}},
		{"truncated escape", rules.Request{Method: "GET", URI: srv.url() + "/a%4"}},
		{"empty host", rules.Request{Method: "GET", URI: "http:///x"}},
		{"two ports", rules.Request{Method: "GET", URI: srv.url() + ":6379/"}},
		{"a port that is not a number", rules.Request{Method: "GET", URI: "http://127.0.0.1:http/"}},
		{"an IPv6 host without its bracket", rules.Request{Method: "GET", URI: "http://[::1/"}},
		{"a colon and no host", rules.Request{Method: "GET", URI: "http://:80/"}},
	}
	for _, tt := range tests {
		_, err := s.Send(context.Background(), &tt.req)
		if !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("%s: Send = %v, want ErrInvalidRequest", tt.name, err)
		}
	}
	if n := srv.requests(); n != 0 {
		t.Errorf("the server received %d requests, want none", n)
	}
}

func TestHTTPSenderResponses(t *testing.T) {
	respond := map[string]string{
		"/chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
		"/interim": "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 1\r\n\r\nx",
		"/nobody":  "HTTP/1.1 204 No Content\r\n\r\n",
		"/head":    "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
		"/readonly": "HTTP/1.1 500 Internal Server Error\r\nX-Readonly: true\r\nContent-Length: 9\r\n\r\n" +
			"read-only",
		"/close":   "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nc",
		"/until":   "HTTP/1.0 200 OK\r\n\r\nto the end",
		"/short":   "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
		"/garbage": "SMTP ready\r\n\r\n",
		"/trailer": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nwiki\r\n0\r\nX-Checksum: 1\r\n\r\n",
		"/lower":   "HTTP/1.1 500 Internal Server Error\r\nx-readonly: true\r\ncontent-length: 2\r\n\r\nro",
		"/keep10":  "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
		"/both":    "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nte\r\n0\r\n\r\n",
		"/twolen":  "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"/fold":    "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n",
		"/gzip":    "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
	}
	srv := newRawServer(t, func(_ *bufio.Reader, w net.Conn, head string) bool {
		path := strings.Fields(head)[1]
		_, err := io.WriteString(w, respond[path])
		return err == nil && !strings.Contains("/until /close /short /garbage /both /twolen /fold /gzip", path)
	})
	s := NewHTTPSender(HTTPOptions{})
	if _, err := s.Send(context.Background(), &rules.Request{Method: "GET", URI: srv.url() + "/nobody"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, method string
		status       int
		body, header string
		err          bool
		newConn      bool // the connection was not reused after this
	}{
		{"/chunked", "GET", 200, "abcde", "", false, false},
		{"/interim", "POST", 202, "x", "", false, false},
		{"/nobody", "DELETE", 204, "", "", false, false},
		{"/head", "HEAD", 200, "", "", false, false},
		{"/readonly", "POST", 500, "read-only", "true", false, false},
		{"/close", "GET", 200, "c", "", false, true},
		{"/until", "GET", 200, "to the end", "", false, true},
		{"/short", "GET", 0, "", "", true, true},
		{"/garbage", "GET", 0, "", "", true, true},
		{"/trailer", "GET", 200, "wiki", "", false, false},
		{"/lower", "POST", 500, "ro", "true", false, false},
		{"/keep10", "GET", 200, "ok", "", false, false},
		{"/both", "GET", 200, "te", "", false, true},
		{"/twolen", "GET", 0, "", "", true, true},
		{"/fold", "GET", 0, "", "", true, true},
		{"/gzip", "GET", 0, "", "", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			before := srv.conns.Load()
			resp, err := s.Send(context.Background(), &rules.Request{Method: tt.method, URI: srv.url() + tt.path})
			if tt.err {
				if err == nil {
					t.Fatalf("Send = %d %q, want an error", resp.Status, resp.Body)
				}
				if !unreachable(err) {
					t.Errorf("unreachable(%v) = false: a broken answer is the destination's failure", err)
				}
			} else if err != nil || resp.Status != tt.status || string(resp.Body) != tt.body || resp.Header.Get("X-Readonly") != tt.header {
				t.Fatalf("Send = %+v, %v; want %d %q", resp, err, tt.status, tt.body)
			}
			// The next request shows whether the connection was kept.
			if _, err := s.Send(context.Background(), &rules.Request{Method: "GET", URI: srv.url() + "/nobody"}); err != nil {
				t.Fatal(err)
			}
			if opened := srv.conns.Load() - before; (opened > 0) != tt.newConn {
				t.Errorf("%d connections opened; want a new one: %v", opened, tt.newConn)
			}
		})
	}
}

func TestHTTPSenderBounds(t *testing.T) {
	srv := newRawServer(t, func(_ *bufio.Reader, w net.Conn, head string) bool {
		switch strings.Fields(head)[1] {
		case "/bighead":
			_, _ = io.WriteString(w, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("h", 4096)+"\r\nContent-Length: 0\r\n\r\n")
		case "/bigbody":
			_, _ = fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", 1<<30)
			// Write until the client goes: it must not read a gigabyte.
			chunk := []byte(strings.Repeat("b", 64<<10))
			for {
				if _, err := w.Write(chunk); err != nil {
					return false
				}
			}
		case "/exact":
			_, _ = io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n"+strings.Repeat("e", 10000))
			return true
		}
		return true
	})
	s := NewHTTPSender(HTTPOptions{MaxResponseHeaderBytes: 1024, MaxResponseBody: 10000})

	if _, err := s.Send(context.Background(), &rules.Request{Method: "GET", URI: srv.url() + "/bighead"}); err == nil || !strings.Contains(err.Error(), "head larger than 1024 bytes") {
		t.Errorf("big head: Send error = %v", err)
	}
	resp, err := s.Send(context.Background(), &rules.Request{Method: "GET", URI: srv.url() + "/bigbody"})
	if err != nil || resp.Status != 200 || len(resp.Body) != MaxBodyExcerpt {
		t.Fatalf("big body: Send = %v, %v; want 200 with a %d-byte excerpt", resp, err, MaxBodyExcerpt)
	}
	// A body of exactly the bound is read to its end and the connection kept.
	before := srv.conns.Load()
	for range 2 {
		resp, err := s.Send(context.Background(), &rules.Request{Method: "GET", URI: srv.url() + "/exact"})
		if err != nil || len(resp.Body) != MaxBodyExcerpt {
			t.Fatalf("exact body: Send = %v, %v", resp, err)
		}
	}
	if n := srv.conns.Load() - before; n != 1 {
		t.Errorf("%d connections for two bodies at the bound, want 1", n)
	}
}

func TestHTTPSenderStaleConnection(t *testing.T) {
	// The server closes every connection after one answer, without
	// saying so: the idle connection is dead when taken again.
	srv := newRawServer(t, func(_ *bufio.Reader, w net.Conn, _ string) bool {
		_, _ = io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		return false
	})
	s := NewHTTPSender(HTTPOptions{})
	req := &rules.Request{Method: "POST", URI: srv.url() + "/", Body: []byte("{}")}
	if _, err := s.Send(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	// Wait until the close has reached us, then age the idle connection
	// past the stale check.
	p := awaitClosedIdle(t, s, srv.url())
	p.mu.Lock()
	p.idle[0].idleSince = time.Now().Add(-2 * staleCheck)
	p.mu.Unlock()
	if _, err := s.Send(context.Background(), req); err != nil {
		t.Fatalf("Send on a pool holding a closed connection: %v", err)
	}
	if n := srv.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

// awaitClosedIdle waits until the pool of url holds one idle connection
// and the server's close of it has reached us, and returns the pool.
func awaitClosedIdle(t *testing.T, s *HTTPSender, url string) *connPool {
	t.Helper()
	tgt, _ := parseTarget(url)
	p := s.pool(&tgt)
	waitUntil(t, "the server's close of the idle connection", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.idle) == 1 && !p.idle[0].alive()
	})
	return p
}

// TestHTTPSenderHalfClosedConnection: a server that stops the way a
// graceful stop does (a half-close of the idle keep-alive connection, then
// reading and dropping what comes) gives the next request on it an error
// at once, not a wait for its timeout. The read right after the request
// finds the end of stream that came while the connection was idle; a client
// that skipped it and waited for the answer's arrival would wait until the
// deadline (docs/benchmarks.md, "Tried, not kept: no read right after the request").
func TestHTTPSenderHalfClosedConnection(t *testing.T) {
	srv := newRawServer(t, func(r *bufio.Reader, w net.Conn, _ string) bool {
		_, _ = io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		_ = w.(*net.TCPConn).CloseWrite()
		_, _ = io.Copy(io.Discard, r)
		return false
	})
	s := NewHTTPSender(HTTPOptions{})
	req := &rules.Request{Method: "POST", URI: srv.url() + "/", Body: []byte("{}"), Timeout: 20 * time.Second}
	if _, err := s.Send(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	awaitClosedIdle(t, s, srv.url())
	start := time.Now()
	_, err := s.Send(context.Background(), req)
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send on a half-closed connection: %v, want an end-of-stream error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the error took %v", d)
	}
}

func TestHTTPSenderIdleExpiry(t *testing.T) {
	srv := newRawServer(t, func(_ *bufio.Reader, w net.Conn, _ string) bool {
		_, err := io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		return err == nil
	})
	s := NewHTTPSender(HTTPOptions{IdleConnTimeout: time.Minute})
	ctx := context.Background()
	var wg sync.WaitGroup
	// Two connections at once, then both idle.
	block := make(chan struct{})
	tgt, _ := parseTarget(srv.url())
	p := s.pool(&tgt)
	for range 2 {
		wg.Go(func() {
			c, err := p.get(ctx, time.Time{}, time.Now())
			if err != nil {
				t.Error(err)
				return
			}
			<-block
			p.put(c)
		})
	}
	waitUntil(t, "condition", func() bool { return srv.conns.Load() == 2 })
	close(block)
	wg.Wait()
	p.mu.Lock()
	p.idle[0].idleSince = time.Now().Add(-2 * time.Minute)
	expired := p.idle[0]
	p.mu.Unlock()
	// A request takes the fresh one and, putting it back, closes the expired one.
	if _, err := s.Send(ctx, &rules.Request{Method: "GET", URI: srv.url()}); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	n := len(p.idle)
	p.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d idle connections, want 1", n)
	}
	if _, err := expired.nc.Write([]byte("x")); err == nil {
		t.Error("the expired connection is still open")
	}
	s.CloseIdle()
	if _, err := s.Send(ctx, &rules.Request{Method: "GET", URI: srv.url()}); err != nil {
		t.Fatal(err)
	}
	if n := srv.conns.Load(); n != 3 {
		t.Errorf("%d connections after CloseIdle, want 3", n)
	}
}

func TestHTTPSenderCancel(t *testing.T) {
	arrived := make(chan struct{}, 1)
	srv := newRawServer(t, func(r *bufio.Reader, w net.Conn, _ string) bool {
		arrived <- struct{}{}
		_, _ = r.ReadByte() // never answers; returns when the client closes
		return false
	})
	s := NewHTTPSender(HTTPOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := s.Send(ctx, &rules.Request{Method: "GET", URI: srv.url(), Timeout: time.Hour})
		errc <- err
	}()
	<-arrived
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Send = %v, want context.Canceled", err)
	}
}

// TestHTTPSenderCancelReusedConnection: a connection keeps its
// registration for the end of the context it served while requests come
// with that context. The end interrupts a later exchange with it on that
// connection, and not one with another context; an end while the
// connection is idle spoils nothing.
func TestHTTPSenderCancelReusedConnection(t *testing.T) {
	arrived := make(chan struct{}, 1)
	srv := newRawServer(t, func(r *bufio.Reader, w net.Conn, head string) bool {
		switch {
		case strings.HasPrefix(head, "GET /hang "):
			arrived <- struct{}{}
			_, _ = r.ReadByte() // never answers; returns when the client closes
			return false
		case strings.HasPrefix(head, "GET /slow "):
			arrived <- struct{}{}
			time.Sleep(200 * time.Millisecond)
		}
		_, err := io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return err == nil
	})
	s := NewHTTPSender(HTTPOptions{})
	send := func(ctx context.Context, path string) error {
		_, err := s.Send(ctx, &rules.Request{Method: "GET", URI: srv.url() + path, Timeout: time.Hour})
		return err
	}

	a, cancelA := context.WithCancel(context.Background())
	for range 2 {
		if err := send(a, "/ok"); err != nil {
			t.Fatal(err)
		}
	}
	cancelA()
	time.Sleep(20 * time.Millisecond) // the registration's function runs, with no exchange to interrupt
	b, cancelB := context.WithCancel(context.Background())
	defer cancelB()
	if err := send(b, "/ok"); err != nil {
		t.Fatalf("on the connection whose idle context ended: %v", err)
	}
	if n := srv.conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1: the end of a context while idle spoils nothing", n)
	}

	// The connection is registered for b; an exchange with c goes on when b ends.
	c, cancelC := context.WithCancel(context.Background())
	defer cancelC()
	errc := make(chan error, 1)
	go func() { errc <- send(c, "/slow") }()
	<-arrived
	cancelB()
	if err := <-errc; err != nil {
		t.Fatalf("the end of another context interrupted the exchange: %v", err)
	}

	// Registered for d by its first request, the connection's second
	// exchange with d is interrupted by d's end, and not reused.
	d, cancelD := context.WithCancel(context.Background())
	if err := send(d, "/ok"); err != nil {
		t.Fatal(err)
	}
	go func() { errc <- send(d, "/hang") }()
	<-arrived
	cancelD()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Send = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the end of the connection's context did not interrupt its exchange")
	}
	if err := send(context.Background(), "/ok"); err != nil {
		t.Fatal(err)
	}
	if n := srv.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2: the interrupted one is not reused", n)
	}
}

func TestHTTPSenderMaxConnsPerHost(t *testing.T) {
	var inflight, most atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-release
		inflight.Add(-1)
	}))
	defer srv.Close()
	s := NewHTTPSender(HTTPOptions{MaxConnsPerHost: 2})
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if _, err := s.Send(context.Background(), &rules.Request{Method: "GET", URI: srv.URL}); err != nil {
				t.Error(err)
			}
		})
	}
	waitUntil(t, "condition", func() bool { return inflight.Load() == 2 })
	close(release)
	wg.Wait()
	if m := most.Load(); m != 2 {
		t.Errorf("at most %d requests at once, want 2", m)
	}
}

func TestHTTPSenderTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Host", r.Host)
		_, _ = io.WriteString(w, r.Proto)
	}))
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	s := NewHTTPSender(HTTPOptions{TLSConfig: &tls.Config{RootCAs: roots}})
	for range 3 {
		resp, err := s.Send(context.Background(), &rules.Request{Method: "GET", URI: srv.URL + "/",
			Headers: []rules.Header{{Name: "host", Value: "de.wikipedia.org"}}})
		if err != nil || resp.Status != 200 || string(resp.Body) != "HTTP/1.1" || resp.Header.Get("X-Host") != "de.wikipedia.org" {
			t.Fatalf("Send = %+v, %v", resp, err)
		}
	}
	// Without the test server's root the handshake fails.
	_, err := NewHTTPSender(HTTPOptions{}).Send(context.Background(), &rules.Request{Method: "GET", URI: srv.URL})
	if err == nil || !strings.Contains(err.Error(), "tls") {
		t.Errorf("untrusted certificate: Send = %v, want a TLS error", err)
	}
}

// BenchmarkHTTPSender is a 1 KB job POST and its small answer through
// HTTPSender, 50 callers at once, against a minimal server in the same
// process; BenchmarkNetHTTPClient is the same exchange through a net/http
// client tuned as the sender used to be, for comparison.
//
// Its cancellable case sends with one cancellable context shared by every
// caller, as a rule's workers do (the runner's work context).
func BenchmarkHTTPSender(b *testing.B) {
	cancellable, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, bc := range []struct {
		name string
		ctx  context.Context
	}{{"background", context.Background()}, {"cancellable", cancellable}} {
		b.Run(bc.name, func(b *testing.B) {
			url := benchServer(b)
			s := NewHTTPSender(HTTPOptions{})
			body := []byte(strings.Repeat("j", 1024))
			b.ReportAllocs()
			b.SetParallelism(25) // 50 callers on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				req := rules.Request{Method: "POST", URI: url, Body: body, Timeout: time.Minute,
					Headers: []rules.Header{{Name: "host", Value: "en.wikipedia.org"}, {Name: "content-type", Value: "application/json"},
						{Name: "user-agent", Value: "ChangePropagation-JobQueue/Go"}, {Name: "x-request-id", Value: "9f3c"}}}
				for pb.Next() {
					if resp, err := s.Send(bc.ctx, &req); err != nil || resp.Status != 200 {
						b.Fatal(resp, err)
					}
				}
			})
		})
	}
}

func BenchmarkNetHTTPClient(b *testing.B) {
	url := benchServer(b)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, IdleConnTimeout: 90 * time.Second}}
	body := []byte(strings.Repeat("j", 1024))
	b.ReportAllocs()
	b.SetParallelism(25)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			hr, _ := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(string(body)))
			hr.Host = "en.wikipedia.org"
			hr.Header.Set("content-type", "application/json")
			hr.Header.Set("user-agent", "ChangePropagation-JobQueue/Go")
			hr.Header.Set("x-request-id", "9f3c")
			resp, err := client.Do(hr)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxBodyExcerpt))
			resp.Body.Close()
			cancel()
		}
	})
}

// benchServer answers every request with a 200 and a small JSON body,
// reading requests with a bare parser so that the server's cost stays low.
func benchServer(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	const answer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}"
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serveLean(c, answer)
			}()
		}
	}()
	return "http://" + ln.Addr().String() + "/rpc/RunSingleJob.php"
}

// serveLean answers every request on c with answer. It finds the end of
// each head and skips a Content-Length body without allocating.
func serveLean(c net.Conn, answer string) {
	buf := make([]byte, 0, 64<<10)
	out := []byte(answer)
	for {
		end := bytes.Index(buf, []byte("\r\n\r\n"))
		if end < 0 {
			if len(buf) == cap(buf) {
				return
			}
			n, err := c.Read(buf[len(buf):cap(buf)])
			if err != nil {
				return
			}
			buf = buf[:len(buf)+n]
			continue
		}
		length := 0
		if i := bytes.Index(buf[:end], []byte("Content-Length: ")); i >= 0 {
			for _, d := range buf[i+16 : end] {
				if d < '0' || d > '9' {
					break
				}
				length = length*10 + int(d-'0')
			}
		}
		need := end + 4 + length
		for len(buf) < need {
			if len(buf) == cap(buf) {
				return
			}
			n, err := c.Read(buf[len(buf):cap(buf)])
			if err != nil {
				return
			}
			buf = buf[:len(buf)+n]
		}
		buf = buf[:copy(buf, buf[need:])]
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		uri, key, authority, userinfo, path string
	}{
		{"http://a.b:8080/x?y=1#f", "http://a.b:8080", "a.b:8080", "", "/x?y=1"},
		{"HTTPS://a.b", "HTTPS://a.b", "a.b", "", "/"},
		{"http://a.b?q", "http://a.b", "a.b", "", "/?q"},
		{"http://u:p@a.b/", "http://a.b", "a.b", "u:p", "/"},
		{"http://[::1]:7231/v1", "http://[::1]:7231", "[::1]:7231", "", "/v1"},
		{"http://[::1]/", "http://[::1]", "[::1]", "", "/"},
	}
	for _, tt := range tests {
		got, err := parseTarget(tt.uri)
		if err != nil || got.key != tt.key || got.authority != tt.authority || got.userinfo != tt.userinfo || got.path != tt.path {
			t.Errorf("parseTarget(%q) = %+v, %v", tt.uri, got, err)
		}
	}
}

// FuzzReadHead: any bytes a server sends as a response head give a head
// or an error, never a panic; a head read has a status of three digits and
// canonical header names, and the same bytes read by net/http give the
// same status.
func FuzzReadHead(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	f.Add([]byte("HTTP/1.0 500 Internal Server Error\r\nx-readonly: true\r\nConnection: keep-alive\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, _, err := readHead(bufio.NewReaderSize(bytes.NewReader(data), 64), nil)
		if err != nil {
			return
		}
		if h.status < 100 || h.status > 999 {
			t.Fatalf("status %d", h.status)
		}
		for k := range h.header.All() {
			if k != textproto.CanonicalMIMEHeaderKey(k) {
				t.Fatalf("header name %q is not canonical", k)
			}
		}
		if hr, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(data)), nil); err == nil && hr.StatusCode != h.status {
			t.Fatalf("status %d, net/http reads %d", h.status, hr.StatusCode)
		}
	})
}

// TestReadHeadHeader: the fields of a head come as they were sent, names
// canonical; Get and Values take a name in any case, and an error event
// joins a repeated name's values and redacts credentials.
func TestReadHeadHeader(t *testing.T) {
	head := "HTTP/1.1 503 Service Unavailable\r\nretry-after: 5\r\nX-Why: a\r\nSet-Cookie: s=1\r\nx-why: b\r\nContent-Length: 0\r\n\r\n"
	h, _, err := readHead(bufio.NewReader(strings.NewReader(head)), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for k, v := range h.header.All() {
		got = append(got, k+"="+v)
	}
	if want := "Retry-After=5 X-Why=a Set-Cookie=s=1 X-Why=b Content-Length=0"; strings.Join(got, " ") != want {
		t.Errorf("fields %q, want %q", strings.Join(got, " "), want)
	}
	if h.header.Len() != 5 || h.header.Get("RETRY-after") != "5" || h.header.Get("x-why") != "a" || h.header.Get("X-None") != "" ||
		!slices.Equal(h.header.Values("X-Why"), []string{"a", "b"}) || h.header.Values("X-None") != nil {
		t.Errorf("Len %d, Get %q %q, Values %q", h.header.Len(), h.header.Get("retry-after"), h.header.Get("x-why"), h.header.Values("x-why"))
	}
	b := newErrorEvent(&Message{TopicPartition: TopicPartition{Topic: "t"}}, nil, []byte(`{}`), failure{message: "503", status: 503, header: h.header},
		"rule", "emitter", "error", time.Unix(0, 0), 1<<20)
	var e errorEvent
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"retry-after": "5", "x-why": "a, b", "set-cookie": rules.Redacted, "content-length": "0"}
	if !maps.Equal(e.Details.Headers, want) {
		t.Errorf("error event headers %v, want %v", e.Details.Headers, want)
	}
}
