package breaker

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// IsFailure decides whether a request's outcome counts against its
// destination's breaker. status is the response's status code (0 when there
// was no response); err is the error of sending it or reading its answer.
func IsFailure(status int, err error) bool {
	switch {
	case errors.Is(err, context.Canceled):
		// Our own shutdown or revoke cancelled it: says nothing about the
		// destination, whatever it had answered.
		return false
	case err != nil:
		// Timeouts (context.DeadlineExceeded, net.Error timeouts), refused or
		// reset connections, DNS failures, broken bodies: the destination
		// could not serve us.
		return true
	case status == http.StatusTooManyRequests:
		// 429: the destination is overloaded; back off from all of it.
		return true
	case status >= 500:
		// 5xx: the destination (or its gateway) failed.
		return true
	default:
		// 2xx and 3xx succeeded; other 4xx are the job's fault, not the
		// destination's; 0 without an error is no request at all.
		return false
	}
}

// Destination returns the breaker key of an exec URI: scheme://host:port,
// lower-cased, with the scheme's default port filled in (http 80, https 443).
// A URI without a scheme or host is returned unchanged.
func Destination(uri string) string {
	if d, ok := plainDestination(uri); ok {
		return d
	}
	return parsedDestination(uri)
}

// plainDestination is Destination without parsing for the common URI: an
// http or https scheme and a host of lower-case letters, digits, dots and
// dashes, with or without a port of digits. It then is the URI's own
// prefix, or that prefix and the default port. Anything else is not ok.
func plainDestination(uri string) (string, bool) {
	var port string
	switch {
	case strings.HasPrefix(uri, "http://"):
		port = ":80"
	case strings.HasPrefix(uri, "https://"):
		port = ":443"
	default:
		return "", false
	}
	start := strings.IndexByte(uri, '/') + 2
	end, colon := len(uri), -1
	for i := start; i < len(uri); i++ {
		switch c := uri[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '.', c == '-':
			if colon >= 0 && (c < '0' || c > '9') {
				return "", false // not a port
			}
		case c == ':' && colon < 0:
			colon = i
		case c == '/' || c == '?' || c == '#':
			end = i
			i = len(uri)
		default:
			return "", false
		}
	}
	switch {
	case end == start || colon == start || colon == end-1:
		return "", false // no host, or an empty port
	case colon >= 0:
		return uri[:end], true
	}
	return uri[:end] + port, true
}

// parsedDestination is Destination through url.Parse.
func parsedDestination(uri string) string {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return uri
	}
	scheme := strings.ToLower(u.Scheme)
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	if port == "" {
		if strings.Contains(host, ":") {
			return scheme + "://[" + host + "]"
		}
		return scheme + "://" + host
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// ParseRetryAfter reads a Retry-After header value: delay-seconds (a
// non-negative integer) or an HTTP date. It returns when the wait ends, and
// false when v is empty or malformed. A date in the past is returned as is.
func ParseRetryAfter(v string, now time.Time) (time.Time, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		// Keep the Duration from overflowing; Set.Backoff caps it anyway.
		const maxSecs = uint64(1<<63-1) / uint64(time.Second)
		secs, err := strconv.ParseUint(v, 10, 64)
		if errors.Is(err, strconv.ErrRange) {
			secs, err = maxSecs, nil
		}
		if err != nil {
			return time.Time{}, false
		}
		secs = min(secs, maxSecs)
		return now.Add(time.Duration(secs) * time.Second), true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}
