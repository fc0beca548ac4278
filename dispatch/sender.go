package dispatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
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
	// Body holds at most the first MaxBodyExcerpt bytes of the response.
	Body []byte
}

// MaxBodyExcerpt bounds how much of a response body is kept.
const MaxBodyExcerpt = 4096

// HTTPSender is a Sender over one pooled keep-alive net/http client.
type HTTPSender struct {
	client  *http.Client
	maxBody int64
}

// HTTPOptions tunes the HTTP transport. The zero value is usable.
type HTTPOptions struct {
	// MaxConnsPerHost caps connections to one destination; 0 means no cap.
	MaxConnsPerHost int
	// MaxIdleConnsPerHost is the keep-alive pool per destination; 0 means 512.
	MaxIdleConnsPerHost int
	// DialTimeout bounds connection set-up; 0 means 5s.
	DialTimeout time.Duration
	// MaxResponseBody is how much of a response body is read at most; 0
	// means DefaultMaxResponseBody. A longer body is not drained: the
	// connection is closed. The response still counts by its status.
	MaxResponseBody int64
	// MaxResponseHeaderBytes bounds a response's status line and headers;
	// 0 means DefaultMaxResponseHeaderBytes. A response over it is an
	// error wrapping ErrResponseTooLarge.
	MaxResponseHeaderBytes int
}

// Defaults of HTTPOptions' bounds.
const (
	DefaultMaxResponseBody        = 1 << 20
	DefaultMaxResponseHeaderBytes = 64 << 10
)

// ErrResponseTooLarge means a response's headers exceeded
// MaxResponseHeaderBytes. The destination answered, but not with anything
// changeprop will read: the event goes to the error topic.
var ErrResponseTooLarge = errors.New("response headers too large")

// NewHTTPSender returns a Sender with its own transport.
func NewHTTPSender(o HTTPOptions) *HTTPSender {
	if o.MaxIdleConnsPerHost == 0 {
		o.MaxIdleConnsPerHost = 512
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.MaxResponseBody <= 0 {
		o.MaxResponseBody = DefaultMaxResponseBody
	}
	if o.MaxResponseHeaderBytes <= 0 {
		o.MaxResponseHeaderBytes = DefaultMaxResponseHeaderBytes
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            (&net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:           0,
		MaxIdleConnsPerHost:    o.MaxIdleConnsPerHost,
		MaxConnsPerHost:        o.MaxConnsPerHost,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    o.DialTimeout,
		ExpectContinueTimeout:  0,
		ForceAttemptHTTP2:      false,
		MaxResponseHeaderBytes: int64(o.MaxResponseHeaderBytes),
	}
	return &HTTPSender{maxBody: o.MaxResponseBody, client: &http.Client{
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
		return nil, fmt.Errorf("build request %s %s: %w", req.Method, RedactURI(req.URI), err)
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
		if strings.Contains(err.Error(), "server response headers exceeded") {
			// net/http says so only in words.
			return nil, fmt.Errorf("%s %s: %w: %v", req.Method, RedactURI(req.URI), ErrResponseTooLarge, err)
		}
		return nil, err
	}
	// Closing a body that was not read to its end closes the connection
	// instead of returning it to the pool.
	defer resp.Body.Close()
	excerpt, err := io.ReadAll(io.LimitReader(resp.Body, min(MaxBodyExcerpt, s.maxBody)))
	if err == nil && int64(len(excerpt)) == min(MaxBodyExcerpt, s.maxBody) {
		// Drain up to the bound so that the connection can be reused.
		_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, s.maxBody-int64(len(excerpt))))
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read response of %s %s: %w", req.Method, RedactURI(req.URI), err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: excerpt}, nil
}

// CloseIdle closes idle keep-alive connections.
func (s *HTTPSender) CloseIdle() { s.client.CloseIdleConnections() }
