package dispatch

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"changeprop/rules"
)

// The HTTP/1.1 exchange of HTTPSender. One request at a time per
// connection: the request head (and a body up to inlineBody) is built in
// the connection's buffer and written with one system call, the response
// is read on the caller's goroutine (http1_response.go), and the
// connection goes back to its pool when the
// response was read to its end and neither side asked to close. Timeouts
// and cancellation are connection deadlines, so no goroutine or timer of
// the client's own runs per request.

// Send implements Sender. The request's timeout (and ctx's deadline, if
// sooner) bounds the whole exchange: waiting for a connection, connecting,
// writing and reading the response, body included.
func (s *HTTPSender) Send(ctx context.Context, req *rules.Request) (*Response, error) {
	t, err := parseTarget(req.URI)
	if err != nil {
		return nil, err
	}
	host := t.authority
	if v := req.Header("host"); v != "" {
		host = v
	}
	if !validHost(host) {
		return nil, fmt.Errorf("%w: host %q", ErrInvalidRequest, host)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := time.Now()
	var deadline time.Time
	if req.Timeout > 0 {
		deadline = now.Add(req.Timeout)
	}
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline = d
	}
	p := s.pool(&t)
	if err := p.acquire(ctx, deadline); err != nil {
		return nil, s.timeout(ctx, req, "wait for a connection", err)
	}
	defer p.release()
	c, err := p.get(ctx, deadline, now)
	if err != nil {
		return nil, s.timeout(ctx, req, "connect", err)
	}
	resp, reuse, err := c.roundTrip(ctx, req, &t, host, deadline)
	if err != nil {
		c.close()
		return nil, s.timeout(ctx, req, "", err)
	}
	if reuse {
		p.put(c)
	} else {
		c.close()
	}
	return resp, nil
}

// timeout turns a deadline error into ctx's error when ctx ended, or into
// a timeoutError when the request's own timeout passed; other errors pass.
func (s *HTTPSender) timeout(ctx context.Context, req *rules.Request, op string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return &timeoutError{after: req.Timeout}
	}
	if op != "" {
		return fmt.Errorf("%s: %w", op, err)
	}
	return err
}

// timeoutError is a request that did not complete within its timeout. It
// is a net.Error whose Timeout is true, and it matches
// context.DeadlineExceeded.
type timeoutError struct{ after time.Duration }

func (e *timeoutError) Error() string {
	return "no complete response within the timeout of " + e.after.String()
}
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }
func (e *timeoutError) Is(target error) bool {
	return target == context.DeadlineExceeded || target == os.ErrDeadlineExceeded
}

var _ net.Error = (*timeoutError)(nil)

// keptBuffer is the largest request buffer that goes back to requestBufs
// for the next request. A body that fits in one with its head is copied
// after the head (one write); a larger one is written from its own slice
// (writev), so that no request grows a buffer only to drop it.
const keptBuffer = 16 << 10

// requestBufs holds the buffers requests are written from. A buffer is
// needed only for the write, so they are shared rather than kept by each
// connection: there may be a connection per job in flight (850 with the
// 30-rule config under load, 3.5 MB of buffers when each kept its own).
var requestBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// roundTrip writes req and reads its response. reuse reports whether the
// connection may serve another request.
func (c *conn) roundTrip(ctx context.Context, req *rules.Request, t *target, host string, deadline time.Time) (resp *Response, reuse bool, err error) {
	if err := c.nc.SetDeadline(deadline); err != nil {
		return nil, false, err
	}
	if ctx.Done() != nil {
		defer func() {
			if c.unwatch() && err == nil {
				// Cancelled while the response came: the connection's
				// deadline is spoiled.
				reuse = false
			}
		}()
		if err := c.watch(ctx); err != nil {
			return nil, false, err
		}
	}
	bp := requestBufs.Get().(*[]byte)
	head, err := appendRequest((*bp)[:0], req, t, host)
	if err != nil {
		requestBufs.Put(bp)
		return nil, false, err
	}
	if req.Body != nil && len(head)+len(req.Body) <= keptBuffer {
		head = append(head, req.Body...)
		_, err = c.nc.Write(head)
	} else if req.Body != nil {
		bufs := net.Buffers{head, req.Body}
		_, err = bufs.WriteTo(c.nc)
	} else {
		_, err = c.nc.Write(head)
	}
	if cap(head) <= keptBuffer {
		*bp = head[:0]
	}
	requestBufs.Put(bp)
	if err != nil {
		return nil, false, fmt.Errorf("write request: %w", err)
	}
	return c.readResponse(req.Method == http.MethodHead, max(req.ResponseLimit, MaxBodyExcerpt))
}

// aLongTimeAgo is a deadline that has passed: it interrupts a blocked read
// or write at once.
var aLongTimeAgo = time.Unix(1, 0)

// readResponse reads the response head (skipping 1xx interim responses)
// and body: the first keep bytes are kept, the rest up to
// MaxResponseBody read and dropped.
func (c *conn) readResponse(head bool, keep int) (*Response, bool, error) {
	var h responseHead
	for {
		c.limit.n = int64(c.pool.opts.MaxResponseHeaderBytes)
		var err error
		h, c.head, err = readHead(c.br, c.head)
		if cap(c.head) > keptBuffer {
			c.head = nil
		}
		if err != nil {
			if errors.Is(err, errReadLimit) {
				return nil, false, fmt.Errorf("read response: %w: head larger than %d bytes", ErrResponseTooLarge, c.pool.opts.MaxResponseHeaderBytes)
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, false, fmt.Errorf("read response: %w", err)
		}
		if h.status >= 200 {
			break
		}
		if h.status == http.StatusSwitchingProtocols {
			return nil, false, errors.New("read response: unexpected 101 Switching Protocols")
		}
		// 100 Continue, 103 Early Hints: the answer follows.
	}
	body, toEnd := h.body(c.br, head)
	bound := c.pool.opts.MaxResponseBody
	if keep > MaxBodyExcerpt {
		bound = max(bound, int64(keep)) // a larger answer asked for (ResponseLimit)
	}
	keep = int(min(int64(keep), bound))
	c.limit.n = bound + int64(c.br.Buffered()) + 1
	resp := &Response{Status: h.status, Header: h.header}
	var n int
	var err error
	if keep <= MaxBodyExcerpt {
		buf := excerpts.Get().(*[MaxBodyExcerpt]byte)
		n, err = readUpTo(body, buf[:keep])
		if n > 0 {
			resp.Body = append([]byte(nil), buf[:n]...)
		}
		excerpts.Put(buf)
	} else {
		// A larger answer to keep (an API response): as large as it is.
		resp.Body, err = io.ReadAll(io.LimitReader(body, int64(keep)))
		if n = len(resp.Body); err == nil && n < keep {
			err = io.EOF
		}
	}
	complete := false
	switch {
	case err == io.EOF:
		complete, err = true, nil
	case err == nil:
		// More than the excerpt: drop the rest up to the bound.
		var rest int64
		rest, err = io.CopyN(io.Discard, body, bound-int64(n))
		switch {
		case err == io.EOF:
			complete, err = true, nil
		case err == nil && rest == bound-int64(n):
			// The bound is reached: close rather than read on, unless
			// the body ends right here.
			var one [1]byte
			m, e := body.Read(one[:])
			complete = m == 0 && e == io.EOF
		}
	}
	if errors.Is(err, errReadLimit) {
		// Our own bound, not the destination's failure: the excerpt
		// stands, the connection goes.
		return resp, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read response body: %w", err)
	}
	return resp, complete && !toEnd && !h.close, nil
}

// readUpTo reads into buf until it is full or r fails; err is r's error
// as is (io.EOF at the end of the body).
func readUpTo(r io.Reader, buf []byte) (n int, err error) {
	for n < len(buf) && err == nil {
		var m int
		m, err = r.Read(buf[n:])
		n += m
	}
	return n, err
}

// appendRequest appends the request line and head of req to dst: the
// host header as Host, the rule's headers with canonical names, basic
// authentication from the URI's user information unless the rule sets
// authorization, and a Content-Length when there is a body (or the method
// expects one). A header value with a control character is refused
// (ErrInvalidRequest).
func appendRequest(dst []byte, req *rules.Request, t *target, host string) ([]byte, error) {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	dst = append(dst, method...)
	dst = append(dst, ' ')
	dst = append(dst, t.path...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	dst = append(dst, "\r\n"...)
	for _, h := range req.Headers {
		switch h.Name {
		case "host", "content-length", "transfer-encoding":
			continue // Host is above; the body's framing is ours
		}
		// Names are tokens: the rules were checked when loaded.
		if !validHeaderValue(h.Value) {
			return dst, fmt.Errorf("%w: value of header %s has a control character", ErrInvalidRequest, h.Name)
		}
		dst = appendCanonicalName(dst, h.Name)
		dst = append(dst, ": "...)
		dst = append(dst, h.Value...)
		dst = append(dst, "\r\n"...)
	}
	if t.userinfo != "" && req.Header("authorization") == "" {
		dst = appendBasicAuth(dst, t.userinfo)
	}
	switch {
	case req.Body != nil:
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, int64(len(req.Body)), 10)
		dst = append(dst, "\r\n"...)
	case method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch:
		dst = append(dst, "Content-Length: 0\r\n"...)
	}
	return append(dst, "\r\n"...), nil
}

// appendBasicAuth appends the Authorization header of user[:password],
// decoded from its %-encoding, as net/http sends it for a URI's user
// information.
func appendBasicAuth(dst []byte, userinfo string) []byte {
	user, pass, _ := strings.Cut(userinfo, ":")
	user, _ = url.PathUnescape(user)
	pass, _ = url.PathUnescape(pass)
	dst = append(dst, "Authorization: Basic "...)
	dst = base64.StdEncoding.AppendEncode(dst, []byte(user+":"+pass))
	return append(dst, "\r\n"...)
}

// appendCanonicalName appends a header name in its canonical form
// (content-type -> Content-Type), as net/http sends it.
func appendCanonicalName(dst []byte, name string) []byte {
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
		upper = c == '-'
	}
	return dst
}

// bufReader is the connection's read buffer size: a response head is a
// few hundred bytes.
const bufReader = 2048

// excerpts are the buffers a body excerpt is read into before it is
// copied out at its size.
var excerpts = sync.Pool{New: func() any { return new([MaxBodyExcerpt]byte) }}

func newBufReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, bufReader) }
