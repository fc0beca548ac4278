package dispatch

import (
	"context"
	"crypto/tls"
	"errors"
	"iter"
	"net/textproto"
	"sync"
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
	Header Header
	// Body holds at most the first MaxBodyExcerpt bytes of the response
	// (the request's ResponseLimit when it sets one).
	Body []byte
}

// Header is a response's header fields in the order they came, names in
// canonical form (textproto.CanonicalMIMEHeaderKey): a list rather than an
// http.Header map, which costs a table per response for the one or two
// fields a job looks at.
type Header struct {
	kv []string // name, value, name, value, ...
}

// Get returns the first value of the field name (in any case), or "".
func (h Header) Get(name string) string {
	name = textproto.CanonicalMIMEHeaderKey(name)
	for i := 0; i < len(h.kv); i += 2 {
		if h.kv[i] == name {
			return h.kv[i+1]
		}
	}
	return ""
}

// Values returns every value of the field name (in any case), in order.
func (h Header) Values(name string) []string {
	name = textproto.CanonicalMIMEHeaderKey(name)
	var out []string
	for i := 0; i < len(h.kv); i += 2 {
		if h.kv[i] == name {
			out = append(out, h.kv[i+1])
		}
	}
	return out
}

// Len returns the number of fields, a repeated name counted each time.
func (h Header) Len() int { return len(h.kv) / 2 }

// All yields every field, name and value, in order.
func (h Header) All() iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for i := 0; i < len(h.kv); i += 2 {
			if !yield(h.kv[i], h.kv[i+1]) {
				return
			}
		}
	}
}

// MaxBodyExcerpt bounds how much of a response body is kept.
const MaxBodyExcerpt = 4096

// ErrInvalidRequest marks a request that cannot be sent as expanded (a
// header value with a line break, a URI that is not http(s)): the event's
// fault, not the destination's.
var ErrInvalidRequest = errors.New("invalid request")

// ErrResponseTooLarge means a response's status line and headers exceeded
// MaxResponseHeaderBytes. The destination answered, but not with anything
// changeprop will read: the event goes to the error topic.
var ErrResponseTooLarge = errors.New("response headers too large")

// HTTPOptions tunes the HTTP client. The zero value is usable.
type HTTPOptions struct {
	// MaxConnsPerHost caps connections to one destination; a request
	// beyond it waits for a connection (bounded by its timeout). 0 means
	// no cap.
	MaxConnsPerHost int
	// MaxIdleConnsPerHost is the keep-alive pool per destination; 0 means 512.
	MaxIdleConnsPerHost int
	// IdleConnTimeout closes keep-alive connections unused this long; 0
	// means 90s.
	IdleConnTimeout time.Duration
	// DialTimeout bounds connection set-up, TLS handshake included; 0
	// means 5s.
	DialTimeout time.Duration
	// TLSConfig is used for https destinations; nil means the system's
	// roots. ServerName is always the URI's host.
	TLSConfig *tls.Config
	// MaxResponseHeaderBytes bounds a response's status line and headers;
	// 0 means DefaultMaxResponseHeaderBytes. A response over it is an
	// error wrapping ErrResponseTooLarge.
	MaxResponseHeaderBytes int
	// MaxResponseBody bounds how much of a response body is read: the
	// first MaxBodyExcerpt bytes are kept (or the request's ResponseLimit),
	// the rest is read and dropped so that the connection can be reused,
	// up to this bound, past which the connection is closed instead. The
	// response still counts by its status. 0 means DefaultMaxResponseBody.
	MaxResponseBody int64
}

// Defaults of HTTPOptions' bounds.
const (
	DefaultMaxResponseBody        = 1 << 20
	DefaultMaxResponseHeaderBytes = 64 << 10
)

func (o *HTTPOptions) defaults() {
	if o.MaxIdleConnsPerHost == 0 {
		o.MaxIdleConnsPerHost = 512
	}
	if o.IdleConnTimeout == 0 {
		o.IdleConnTimeout = 90 * time.Second
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.MaxResponseHeaderBytes <= 0 {
		o.MaxResponseHeaderBytes = DefaultMaxResponseHeaderBytes
	}
	if o.MaxResponseBody <= 0 {
		o.MaxResponseBody = DefaultMaxResponseBody
	}
}

// HTTPSender is a Sender over keep-alive HTTP/1.1 connections, pooled per
// destination (scheme://host:port). A request is written with one system
// call and its response read on the calling goroutine: no goroutine of
// the client's own stands between a job and its connection (http1.go).
type HTTPSender struct {
	opts  HTTPOptions
	mu    sync.RWMutex
	pools map[string]*connPool // by scheme://authority of the URI
}

// NewHTTPSender returns a Sender with its own connection pools.
func NewHTTPSender(o HTTPOptions) *HTTPSender {
	o.defaults()
	return &HTTPSender{opts: o, pools: make(map[string]*connPool)}
}

// CloseIdle closes idle keep-alive connections.
func (s *HTTPSender) CloseIdle() {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, p := range s.pools {
		p.closeIdle()
	}
}

// pool returns the connection pool of a destination.
func (s *HTTPSender) pool(t *target) *connPool {
	s.mu.RLock()
	p := s.pools[t.key]
	s.mu.RUnlock()
	if p != nil {
		return p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p = s.pools[t.key]; p == nil {
		p = newConnPool(t, &s.opts)
		s.pools[p.key] = p
	}
	return p
}
