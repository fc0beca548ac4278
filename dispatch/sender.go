package dispatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"changeprop/rules"
)

// Sender sends one expanded request and returns the response. It never
// retries and never follows redirects.
type Sender interface {
	Send(ctx context.Context, req *rules.Request) (*Response, error)
}

// Response is what a Sender got back.
type Response struct {
	Status int
	Header http.Header
	// Body holds at most the first MaxBodyExcerpt bytes of the response
	// (the request's ResponseLimit when it sets one).
	Body []byte
}

// MaxBodyExcerpt bounds how much of a response body is kept.
const MaxBodyExcerpt = 4096

// HTTPSender is a Sender over one pooled keep-alive net/http client.
type HTTPSender struct {
	client *http.Client
}

// HTTPOptions tunes the HTTP transport. The zero value is usable.
type HTTPOptions struct {
	// MaxConnsPerHost caps connections to one destination; 0 means no cap.
	MaxConnsPerHost int
	// MaxIdleConnsPerHost is the keep-alive pool per destination; 0 means 512.
	MaxIdleConnsPerHost int
	// DialTimeout bounds connection set-up; 0 means 5s.
	DialTimeout time.Duration
}

// NewHTTPSender returns a Sender with its own transport.
func NewHTTPSender(o HTTPOptions) *HTTPSender {
	if o.MaxIdleConnsPerHost == 0 {
		o.MaxIdleConnsPerHost = 512
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 5 * time.Second
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   o.MaxIdleConnsPerHost,
		MaxConnsPerHost:       o.MaxConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   o.DialTimeout,
		ExpectContinueTimeout: 0,
		ForceAttemptHTTP2:     false,
	}
	return &HTTPSender{client: &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

// Send implements Sender. The request's timeout bounds the whole exchange,
// body included.
func (s *HTTPSender) Send(ctx context.Context, req *rules.Request) (*Response, error) {
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.Timeout)
		defer cancel()
	}
	var body io.Reader
	if req.Body != nil {
		body = bytes.NewReader(req.Body)
	}
	hr, err := http.NewRequestWithContext(ctx, req.Method, req.URI, body)
	if err != nil {
		return nil, fmt.Errorf("build request %s %s: %w", req.Method, req.URI, err)
	}
	for _, h := range req.Headers {
		if h.Name == "host" {
			hr.Host = h.Value
			continue
		}
		hr.Header.Set(h.Name, h.Value)
	}
	resp, err := s.client.Do(hr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	limit := int64(MaxBodyExcerpt)
	if req.ResponseLimit > 0 {
		limit = int64(req.ResponseLimit)
	}
	excerpt, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err == nil {
		// Drain (bounded) so that the connection can be reused.
		_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read response of %s %s: %w", req.Method, req.URI, err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: excerpt}, nil
}

// CloseIdle closes idle keep-alive connections.
func (s *HTTPSender) CloseIdle() { s.client.CloseIdleConnections() }
