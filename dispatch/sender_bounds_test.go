package dispatch

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"changeprop/internal/testio"
	"changeprop/rules"
)

// TestSenderResponseBounds holds a Sender to HTTPOptions' bounds with
// hostile servers: a 100 MB body is read only up to MaxResponseBody and its
// connection closed instead of drained; a body within the bound keeps its
// connection; headers over MaxResponseHeaderBytes are ErrResponseTooLarge.
func TestSenderResponseBounds(t *testing.T) {
	const huge = 100 << 20
	var conns atomic.Int64
	written := make(chan int64, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/huge":
			w.Header().Set("Content-Length", "104857600")
			written <- testio.WriteUntil(w, huge, 'y')
		case "/fits":
			_, _ = w.Write([]byte(strings.Repeat("z", 32<<10)))
		case "/fat-headers":
			w.Header().Set("X-Fat", strings.Repeat("h", 200<<10))
			w.WriteHeader(200)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	const maxBody = 256 << 10
	var s Sender = NewHTTPSender(HTTPOptions{MaxResponseBody: maxBody, MaxResponseHeaderBytes: 16 << 10})
	ctx := context.Background()

	t.Run("100 MB body", func(t *testing.T) {
		resp, err := s.Send(ctx, &rules.Request{Method: "GET", URI: srv.URL + "/huge"})
		if err != nil || resp.Status != 200 || len(resp.Body) != MaxBodyExcerpt {
			t.Fatalf("Send = %v, %v; want status 200 with a %d-byte excerpt", resp, err, MaxBodyExcerpt)
		}
		// The server's writes fail once the connection is closed; what it
		// got out is the bound plus what the sockets' buffers took.
		if n := <-written; n >= huge/4 {
			t.Fatalf("the server wrote %d of %d bytes: the body was drained, not cut off", n, huge)
		} else {
			t.Logf("the server wrote %d bytes before the connection closed", n)
		}
	})
	t.Run("body within the bound keeps the connection", func(t *testing.T) {
		if _, err := s.Send(ctx, &rules.Request{Method: "GET", URI: srv.URL + "/fits"}); err != nil {
			t.Fatal(err)
		}
		before := conns.Load()
		for range 10 {
			resp, err := s.Send(ctx, &rules.Request{Method: "GET", URI: srv.URL + "/fits"})
			if err != nil || resp.Status != 200 {
				t.Fatalf("Send = %v, %v", resp, err)
			}
		}
		if n := conns.Load() - before; n != 0 {
			t.Fatalf("%d new connections for 10 bodies within the bound, want 0", n)
		}
	})
	t.Run("headers over the bound", func(t *testing.T) {
		_, err := s.Send(ctx, &rules.Request{Method: "GET", URI: srv.URL + "/fat-headers"})
		if !errors.Is(err, ErrResponseTooLarge) {
			t.Fatalf("Send = %v, want ErrResponseTooLarge", err)
		}
	})
	t.Run("defaults", func(t *testing.T) {
		var d Sender = NewHTTPSender(HTTPOptions{})
		// 200 KB of headers is over the 64 KB default.
		if _, err := d.Send(ctx, &rules.Request{Method: "GET", URI: srv.URL + "/fat-headers"}); !errors.Is(err, ErrResponseTooLarge) {
			t.Fatalf("Send = %v, want ErrResponseTooLarge", err)
		}
		resp, err := d.Send(ctx, &rules.Request{Method: "GET", URI: srv.URL + "/huge"})
		if err != nil || resp.Status != 200 {
			t.Fatalf("Send = %v, %v", resp, err)
		}
		if n := <-written; n >= huge/4 {
			t.Fatalf("the server wrote %d of %d bytes", n, huge)
		}
	})
}
