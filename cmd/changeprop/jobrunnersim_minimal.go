package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
)

// The minimal server (jobrunner-sim -server minimal) answers the same
// requests as the net/http one, with the same handler semantics (job,
// the stats endpoints), for what a benchmark sends: HTTP/1.1 requests on
// kept-alive connections, bodies with a Content-Length or chunked. It
// parses a request's line and headers in place and writes a fixed-form
// response, so that the simulator takes less of the CPU that a benchmark
// shares with the process it measures. A request it cannot parse is
// answered 400 and the connection closed.

// serveMinimal accepts connections on ln until it is closed, then waits
// for the connections' goroutines, which end when ctx does (a connection
// waiting for a request is closed then).
func (s *jobSim) serveMinimal(ctx context.Context, ln net.Listener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			c.Close()
		}
	})
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			s.serveConn(ctx, c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		})
	}
}

// minimalRequest is what serveConn reads of a request.
type minimalRequest struct {
	method, target, host string
	contentLength        int64 // -1: none given
	chunked, close       bool
}

// serveConn serves the requests of one connection, one after the other.
func (s *jobSim) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 16<<10)
	bw := bufio.NewWriterSize(c, 4<<10)
	defer bw.Flush()
	var body []byte
	for {
		req, err := readMinimalRequest(br)
		switch {
		case errors.Is(err, io.EOF):
			return
		case err != nil:
			writeAnswer(bw, answer{status: http.StatusBadRequest, body: `{"error":"malformed request"}`}, true)
			return
		}
		at := s.now()
		path, query, _ := strings.Cut(req.target, "?")
		a, ok := s.control(path, query)
		if ok {
			body, err = readMinimalBody(br, body[:0], req)
		} else {
			s.enter(req.host)
			body, err = readMinimalBody(br, body[:0], req)
			a, ok = s.job(ctx, at, req.method, body, err)
			s.leave(req.host)
			if cap(body) > 64<<10 {
				body = nil
			}
		}
		if !ok {
			return
		}
		closing := req.close || err != nil
		writeAnswer(bw, a, closing)
		if closing {
			return
		}
		if br.Buffered() == 0 {
			if bw.Flush() != nil {
				return
			}
		}
	}
}

// readMinimalRequest reads a request line and headers.
func readMinimalRequest(br *bufio.Reader) (minimalRequest, error) {
	req := minimalRequest{contentLength: -1}
	line, err := br.ReadSlice('\n')
	if err != nil {
		if len(line) == 0 && errors.Is(err, io.EOF) {
			return req, io.EOF
		}
		return req, fmt.Errorf("request line: %w", err)
	}
	method, rest, ok1 := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(" "))
	target, proto, ok2 := bytes.Cut(rest, []byte(" "))
	if !ok1 || !ok2 || len(method) == 0 || len(target) == 0 || !bytes.HasPrefix(proto, []byte("HTTP/1.")) {
		return req, fmt.Errorf("request line %q", line)
	}
	req.method, req.target = string(method), string(target)
	req.close = string(proto) == "HTTP/1.0"
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return req, fmt.Errorf("header: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return req, fmt.Errorf("header %q", line)
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil || n < 0 {
				return req, fmt.Errorf("Content-Length %q", v)
			}
			req.contentLength = n
		case bytes.EqualFold(k, []byte("Host")):
			req.host = string(v)
		case bytes.EqualFold(k, []byte("Connection")):
			if bytes.EqualFold(v, []byte("close")) {
				req.close = true
			} else if bytes.EqualFold(v, []byte("keep-alive")) {
				req.close = false
			}
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			req.chunked = true
		}
	}
	return req, nil
}

// readMinimalBody reads req's body into buf's storage: chunked, of
// Content-Length bytes, or none; at most maxSimBody bytes.
func readMinimalBody(br *bufio.Reader, buf []byte, req minimalRequest) ([]byte, error) {
	if !req.chunked {
		return readN(br, buf, req.contentLength)
	}
	b := bytes.NewBuffer(buf)
	n, err := b.ReadFrom(io.LimitReader(httputil.NewChunkedReader(br), maxSimBody+1))
	if err == nil && n > maxSimBody {
		err = fmt.Errorf("body over %d bytes", maxSimBody)
	}
	for err == nil { // the trailer, up to its empty line
		var line []byte
		if line, err = br.ReadSlice('\n'); err == nil && len(bytes.TrimRight(line, "\r\n")) == 0 {
			break
		}
	}
	return b.Bytes(), err
}

// readN reads a body of n bytes (none when n < 0) into buf's storage.
func readN(br *bufio.Reader, buf []byte, n int64) ([]byte, error) {
	if n <= 0 {
		return buf[:0], nil
	}
	if n > maxSimBody {
		return buf[:0], fmt.Errorf("body of %d bytes", n)
	}
	if int64(cap(buf)) < n {
		buf = make([]byte, 0, n)
	}
	buf = buf[:n]
	_, err := io.ReadFull(br, buf)
	return buf, err
}

// writeAnswer writes a as an HTTP/1.1 response, the body with the newline
// that the net/http server's simJSON adds. It has no Date header: no
// client of the simulator reads one.
func writeAnswer(bw *bufio.Writer, a answer, closing bool) {
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(a.status))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(a.status))
	if a.status != http.StatusNoContent {
		bw.WriteString("\r\nContent-Type: application/json\r\nContent-Length: ")
		bw.WriteString(strconv.Itoa(len(a.body) + 1))
	}
	if a.hk != "" {
		bw.WriteString("\r\n")
		bw.WriteString(a.hk)
		bw.WriteString(": ")
		bw.WriteString(a.hv)
	}
	if closing {
		bw.WriteString("\r\nConnection: close")
	}
	bw.WriteString("\r\n\r\n")
	if a.status != http.StatusNoContent {
		bw.WriteString(a.body)
		bw.WriteByte('\n')
	}
}
