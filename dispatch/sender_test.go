package dispatch

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"changeprop/rules"
)

func TestHTTPSender(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case "/big":
			_, _ = io.WriteString(w, strings.Repeat("x", 3*MaxBodyExcerpt))
		case "/echo":
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Host", r.Host)
			w.Header().Set("X-Type", r.Header.Get("content-type"))
			w.Header().Set("X-Method", r.Method)
			w.WriteHeader(201)
			_, _ = w.Write(body)
		case "/elsewhere":
			t.Error("redirect was followed")
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	s := NewHTTPSender(HTTPOptions{})
	ctx := context.Background()

	t.Run("redirect is not followed", func(t *testing.T) {
		resp, err := s.Send(ctx, &rules.Request{Method: "GET", URI: srv.URL + "/redirect"})
		if err != nil || resp.Status != http.StatusFound {
			t.Fatalf("Send = %v, %v; want 302", resp, err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		_, err := s.Send(ctx, &rules.Request{Method: "GET", URI: srv.URL + "/slow", Timeout: 20 * time.Millisecond})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Send = %v, want a deadline error", err)
		}
	})
	t.Run("body excerpt is bounded", func(t *testing.T) {
		resp, err := s.Send(ctx, &rules.Request{Method: "GET", URI: srv.URL + "/big"})
		if err != nil || len(resp.Body) != MaxBodyExcerpt {
			t.Fatalf("Send = %d bytes, %v; want %d", len(resp.Body), err, MaxBodyExcerpt)
		}
		resp, err = s.Send(ctx, &rules.Request{Method: "GET", URI: srv.URL + "/big", ResponseLimit: 2 * MaxBodyExcerpt})
		if err != nil || len(resp.Body) != 2*MaxBodyExcerpt {
			t.Fatalf("Send with ResponseLimit = %d bytes, %v; want %d", len(resp.Body), err, 2*MaxBodyExcerpt)
		}
	})
	t.Run("method, host header, headers and body", func(t *testing.T) {
		resp, err := s.Send(ctx, &rules.Request{
			Method: "POST", URI: srv.URL + "/echo", Body: []byte(`{"a":1}`),
			Headers: []rules.Header{{Name: "host", Value: "en.wikipedia.org"}, {Name: "content-type", Value: "application/json"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != 201 || string(resp.Body) != `{"a":1}` || resp.Header.Get("X-Host") != "en.wikipedia.org" ||
			resp.Header.Get("X-Type") != "application/json" || resp.Header.Get("X-Method") != "POST" {
			t.Fatalf("got %d %q %v", resp.Status, resp.Body, resp.Header)
		}
	})
	t.Run("connections are reused", func(t *testing.T) {
		before := conns.Load()
		for range 50 {
			if _, err := s.Send(ctx, &rules.Request{Method: "GET", URI: srv.URL + "/big"}); err != nil {
				t.Fatal(err)
			}
		}
		if n := conns.Load() - before; n > 1 {
			t.Fatalf("%d new connections for 50 sequential requests, want at most 1", n)
		}
	})
}

func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	resetting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, _ := w.(http.Hijacker).Hijack()
		c.Close()
	}))
	defer resetting.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer slow.Close()
	s := NewHTTPSender(HTTPOptions{})
	tests := []struct {
		name string
		req  rules.Request
		want bool
	}{
		{"connection refused", rules.Request{Method: "GET", URI: "http://" + closed + "/"}, true},
		{"connection closed before an answer", rules.Request{Method: "GET", URI: resetting.URL}, true},
		{"timeout", rules.Request{Method: "GET", URI: slow.URL, Timeout: 20 * time.Millisecond}, false},
	}
	for _, tt := range tests {
		_, err := s.Send(context.Background(), &tt.req)
		if err == nil {
			t.Fatalf("%s: no error", tt.name)
		}
		if got := unreachable(err); got != tt.want {
			t.Errorf("%s: unreachable(%v) = %v, want %v", tt.name, err, got, tt.want)
		}
	}
	if unreachable(nil) {
		t.Error("unreachable(nil)")
	}
}
