package dispatch

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// target is where a request URI points: its destination's pool key and
// the request target to put in the request line. Its strings are slices
// of the URI.
type target struct {
	key       string // scheme://host[:port]
	tls       bool
	authority string // host[:port]
	userinfo  string // user[:password] before the host, %-encoded; usually ""
	path      string // path and query, without the fragment
}

// parseTarget splits an absolute http(s) URI. A path or query byte that
// may not stand in a request line (a space, a control character, a
// non-ASCII byte) is percent-encoded, as net/http would send it; a URI
// with a malformed percent-encoding is refused. User information becomes
// basic authentication, as with net/http.
func parseTarget(uri string) (target, error) {
	var t target
	var rest string
	switch {
	case len(uri) > 7 && strings.EqualFold(uri[:7], "http://"):
		rest = uri[7:]
	case len(uri) > 8 && strings.EqualFold(uri[:8], "https://"):
		rest, t.tls = uri[8:], true
	default:
		return t, fmt.Errorf("%w: %q is not an absolute http(s) URI", ErrInvalidRequest, RedactURI(uri))
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	t.authority = rest[:end]
	t.key = uri[:len(uri)-len(rest)+end]
	if at := strings.LastIndexByte(t.authority, '@'); at >= 0 {
		t.userinfo, t.authority = t.authority[:at], t.authority[at+1:]
		t.key = uri[:len(uri)-len(rest)] + t.authority
		if !validEscapes(t.userinfo) {
			return t, fmt.Errorf("%w: malformed %%-encoding in the user information of %q", ErrInvalidRequest, RedactURI(uri))
		}
	}
	if !validAuthority(t.authority) {
		return t, fmt.Errorf("%w: host of %q", ErrInvalidRequest, RedactURI(uri))
	}
	p := rest[end:]
	if i := strings.IndexByte(p, '#'); i >= 0 {
		p = p[:i]
	}
	if p == "" || p[0] == '?' {
		p = "/" + p
	}
	if !validEscapes(p) {
		return t, fmt.Errorf("%w: malformed %%-encoding in %q", ErrInvalidRequest, RedactURI(uri))
	}
	t.path = escapeTarget(p)
	return t, nil
}

// escapeTarget percent-encodes the bytes of a request target that may not
// stand in a request line; it returns p itself when there are none.
func escapeTarget(p string) string {
	q := strings.IndexByte(p, '?')
	if q < 0 {
		q = len(p)
	}
	bad := func(i int) bool {
		c := p[i]
		if c <= ' ' || c >= 0x7f {
			return true
		}
		// In the path, also what net/http's URL encoding escapes.
		return i < q && strings.IndexByte("\"<>\\^`{|}", c) >= 0
	}
	i := 0
	for i < len(p) && !bad(i) {
		i++
	}
	if i == len(p) {
		return p
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(p)+16)
	b = append(b, p[:i]...)
	for ; i < len(p); i++ {
		if bad(i) {
			b = append(b, '%', hex[p[i]>>4], hex[p[i]&15])
		} else {
			b = append(b, p[i])
		}
	}
	return string(b)
}

// validEscapes reports whether every % in s starts a %XX escape.
func validEscapes(s string) bool {
	for i := strings.IndexByte(s, '%'); i >= 0; i = strings.IndexByte(s, '%') {
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return false
		}
		s = s[i+3:]
	}
	return true
}

// validAuthority reports whether a is host[:port] (a bracketed IPv6
// host, or a name or IPv4 address without a colon) with a numeric port.
func validAuthority(a string) bool {
	if !validHost(a) {
		return false
	}
	host, port := a, ""
	if strings.HasPrefix(a, "[") {
		end := strings.IndexByte(a, ']')
		if end < 0 {
			return false
		}
		host, port = a[:end+1], a[end+1:]
		if port != "" && port[0] != ':' {
			return false
		}
		port = strings.TrimPrefix(port, ":")
	} else if i := strings.IndexByte(a, ':'); i >= 0 {
		host, port = a[:i], a[i+1:]
	}
	return host != "" && digits(port)
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// validHost reports whether h may be sent as a Host header: printable
// ASCII without spaces or the characters that end a URI's authority.
func validHost(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; c <= ' ' || c >= 0x7f || strings.IndexByte("/?#\\\"<>{}|^`", c) >= 0 {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether v has no control character but tab: a
// line break in a value would let an event write headers of its own.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// connPool holds one destination's idle keep-alive connections. Idle
// connections are a stack: the most recently used is taken first, so
// that under a light load few connections stay warm and the others expire.
type connPool struct {
	key  string
	addr string // host:port to dial
	tls  *tls.Config
	opts *HTTPOptions

	mu   sync.Mutex
	idle []*conn // idle[0] is the oldest

	slots chan struct{} // requests in flight, with MaxConnsPerHost; nil without
}

func newConnPool(t *target, o *HTTPOptions) *connPool {
	host, port := splitAuthority(t.authority)
	if port == "" {
		port = "80"
		if t.tls {
			port = "443"
		}
	}
	p := &connPool{key: t.key, addr: net.JoinHostPort(host, port), opts: o}
	if t.tls {
		cfg := &tls.Config{}
		if o.TLSConfig != nil {
			cfg = o.TLSConfig.Clone()
		}
		cfg.ServerName = host
		cfg.NextProtos = []string{"http/1.1"}
		p.tls = cfg
	}
	if o.MaxConnsPerHost > 0 {
		p.slots = make(chan struct{}, o.MaxConnsPerHost)
	}
	return p
}

// splitAuthority splits host[:port], with [] around an IPv6 host removed.
func splitAuthority(a string) (host, port string) {
	if i := strings.LastIndexByte(a, ':'); i >= 0 && !strings.Contains(a[i:], "]") {
		host, port = a[:i], a[i+1:]
	} else {
		host = a
	}
	return strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), port
}

// acquire takes a slot for a request, waiting while MaxConnsPerHost
// requests are in flight; release gives it back. Each request holds at
// most one connection, so connections never outnumber the slots.
func (p *connPool) acquire(ctx context.Context, deadline time.Time) error {
	if p.slots == nil {
		return nil
	}
	select {
	case p.slots <- struct{}{}:
		return nil
	default:
	}
	var expire <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		expire = t.C
	}
	select {
	case p.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-expire:
		return os.ErrDeadlineExceeded
	}
}

func (p *connPool) release() {
	if p.slots != nil {
		<-p.slots
	}
}

// staleCheck is how long a connection may have been idle before it is
// checked, when taken, for a close by the server.
const staleCheck = time.Second

// get returns an idle connection, or a new one.
func (p *connPool) get(ctx context.Context, deadline, now time.Time) (*conn, error) {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		idle := now.Sub(c.idleSince)
		if idle > p.opts.IdleConnTimeout || (idle > staleCheck && !c.alive()) {
			c.close()
			continue
		}
		return c, nil
	}
	return p.dial(ctx, deadline)
}

// put returns a connection after a complete exchange, and closes the
// oldest idle one if it expired.
func (p *connPool) put(c *conn) {
	now := time.Now()
	c.idleSince = now
	var expired *conn
	p.mu.Lock()
	if len(p.idle) >= p.opts.MaxIdleConnsPerHost {
		p.mu.Unlock()
		c.close()
		return
	}
	p.idle = append(p.idle, c)
	if old := p.idle[0]; now.Sub(old.idleSince) > p.opts.IdleConnTimeout {
		expired = old
		copy(p.idle, p.idle[1:])
		p.idle[len(p.idle)-1] = nil
		p.idle = p.idle[:len(p.idle)-1]
	}
	p.mu.Unlock()
	if expired != nil {
		expired.close()
	}
}

func (p *connPool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

func (p *connPool) dial(ctx context.Context, deadline time.Time) (*conn, error) {
	d := net.Dialer{Timeout: p.opts.DialTimeout, Deadline: deadline, KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	nc := raw
	if p.tls != nil {
		hctx, cancel := context.WithTimeout(ctx, p.opts.DialTimeout)
		if !deadline.IsZero() {
			hctx, cancel = context.WithDeadline(hctx, deadline)
		}
		tc := tls.Client(raw, p.tls)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", p.addr, err)
		}
		nc = tc
	}
	c := &conn{nc: nc, raw: raw, pool: p}
	c.limit.r = nc
	c.br = newBufReader(&c.limit)
	return c, nil
}

// conn is one keep-alive connection and its buffers. One request at a
// time uses it; in between it sits in its pool.
type conn struct {
	nc        net.Conn // TLS over raw, or raw
	raw       net.Conn
	pool      *connPool
	limit     limitReader // under br: bounds what a response may make us read
	br        *bufio.Reader
	head      []byte // scratch for the response head, reused
	idleSince time.Time

	// The cancellation of a request's context interrupts its exchange.
	// The connection registers for the cancellation of the context it
	// serves once, and keeps the registration while requests come with
	// that context (a rule's workers share their runner's), rather than
	// registering per request: context.AfterFunc allocates three times
	// and takes the shared parent's lock to add and to remove itself
	// (BenchmarkHTTPSender/cancellable).
	mu        sync.Mutex
	watchDone <-chan struct{} // Done of the context registered for; nil: none
	stopWatch func() bool
	active    bool // a request is being exchanged
	spoiled   bool // its context ended during the exchange: the deadline was moved into the past
}

func (c *conn) close() {
	c.mu.Lock()
	if c.stopWatch != nil {
		c.stopWatch()
		c.watchDone, c.stopWatch = nil, nil
	}
	c.mu.Unlock()
	_ = c.nc.Close()
}

// watch makes the end of ctx interrupt the exchange that begins, until
// unwatch. It returns ctx's error when ctx has ended already.
func (c *conn) watch(ctx context.Context) error {
	done := ctx.Done()
	c.mu.Lock()
	if done != c.watchDone {
		if c.stopWatch != nil {
			c.stopWatch()
		}
		c.watchDone = done
		c.stopWatch = context.AfterFunc(ctx, func() { c.ended(done) })
	}
	c.active, c.spoiled = true, false
	c.mu.Unlock()
	select {
	case <-done: // it may have ended before the exchange began, when ended found nothing to interrupt
		return ctx.Err()
	default:
		return nil
	}
}

// ended runs when the context whose Done is done ends: it interrupts the
// exchange in progress, if any, and drops the spent registration.
func (c *conn) ended(done <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if done != c.watchDone {
		return // registered for another context since
	}
	c.watchDone, c.stopWatch = nil, nil
	if c.active {
		_ = c.nc.SetDeadline(aLongTimeAgo)
		c.spoiled = true
	}
}

// unwatch ends the exchange begun by watch and reports whether its
// context's end interrupted it (the connection's deadline is spoiled).
func (c *conn) unwatch() (spoiled bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active = false
	return c.spoiled
}

// alive reports whether an idle connection is still open: a peek that
// does not block finds neither an end of stream nor unexpected bytes
// (such as a TLS close_notify).
func (c *conn) alive() bool {
	sc, ok := c.raw.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true
	})
	return err == nil && alive
}

// errReadLimit is what limitReader returns past its bound.
var errReadLimit = errors.New("response larger than the read bound")

// limitReader reads from r until n bytes have been read, then fails.
type limitReader struct {
	r io.Reader
	n int64
}

func (l *limitReader) Read(b []byte) (int, error) {
	if l.n <= 0 {
		return 0, errReadLimit
	}
	if int64(len(b)) > l.n {
		b = b[:l.n]
	}
	n, err := l.r.Read(b)
	l.n -= int64(n)
	return n, err
}
