package dispatch

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"strings"
)

// The response side of HTTPSender's exchange: a head parser that builds
// the Header from one copy of the head (net/http's ReadResponse made
// a string per key and value, a textproto reader and a transfer reader for
// every response), and the body framings of HTTP/1.1.

// responseHead is what the head of a response says.
type responseHead struct {
	status  int
	header  Header
	close   bool  // the connection ends with this response
	length  int64 // Content-Length; -1 when not given
	chunked bool  // Transfer-Encoding: chunked

	http10, sawClose, keepAlive bool // what close is made of
}

// errMalformed is a response that is not HTTP/1.x.
var errMalformed = errors.New("malformed HTTP response")

// readHead reads one response head: the status line and the header lines
// up to the empty line. buf is scratch space, returned for reuse.
func readHead(br *bufio.Reader, buf []byte) (responseHead, []byte, error) {
	h := responseHead{length: -1}
	buf = buf[:0]
	lines := 0
	for {
		start := len(buf)
		for {
			frag, err := br.ReadSlice('\n')
			buf = append(buf, frag...)
			if err == nil {
				break
			}
			if err != bufio.ErrBufferFull {
				if err == io.EOF && len(buf) > 0 {
					err = io.ErrUnexpectedEOF
				}
				return h, buf, err
			}
		}
		if line := buf[start:]; len(line) <= 2 && (string(line) == "\r\n" || string(line) == "\n") {
			buf = buf[:start]
			break
		}
		lines++
	}
	s := string(buf) // the one copy keys and values are cut from
	line, rest, _ := strings.Cut(s, "\n")
	if err := h.statusLine(strings.TrimSuffix(line, "\r")); err != nil {
		return h, buf, err
	}
	h.header.kv = make([]string, 0, 2*(lines-1))
	for rest != "" {
		line, rest, _ = strings.Cut(rest, "\n")
		line = strings.TrimSuffix(line, "\r")
		key, value, ok := strings.Cut(line, ":")
		if !ok || key == "" || !validHeaderName(key) {
			return h, buf, fmt.Errorf("%w: header line %q", errMalformed, line)
		}
		key = textproto.CanonicalMIMEHeaderKey(key)
		value = strings.Trim(value, " \t")
		h.header.kv = append(h.header.kv, key, value)
		if err := h.framing(key, value); err != nil {
			return h, buf, err
		}
	}
	// HTTP/1.0 closes unless it says keep-alive; a body both chunked and
	// with a length (which a server must not send) ends the connection.
	h.close = h.sawClose || (h.http10 && !h.keepAlive) || (h.chunked && h.length >= 0)
	return h, buf, nil
}

// statusLine reads "HTTP/1.x NNN reason".
func (h *responseHead) statusLine(line string) error {
	if len(line) < 12 || !strings.HasPrefix(line, "HTTP/1.") || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	code, err := strconv.Atoi(line[9:12])
	if err != nil || code < 100 {
		return fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	h.status = code
	switch line[7] {
	case '1':
	case '0':
		h.http10 = true
	default:
		return fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	return nil
}

// framing notes what a header says of the body and the connection.
func (h *responseHead) framing(key, value string) error {
	switch key {
	case "Content-Length":
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil || n < 0 || (h.length >= 0 && n != h.length) {
			return fmt.Errorf("%w: Content-Length %q", errMalformed, value)
		}
		h.length = n
	case "Transfer-Encoding":
		for _, coding := range strings.Split(value, ",") {
			switch strings.ToLower(strings.TrimSpace(coding)) {
			case "chunked":
				h.chunked = true
			case "identity", "":
			default:
				return fmt.Errorf("%w: unsupported Transfer-Encoding %q", errMalformed, value)
			}
		}
	case "Connection":
		for _, opt := range strings.Split(value, ",") {
			switch strings.ToLower(strings.TrimSpace(opt)) {
			case "close":
				h.sawClose = true
			case "keep-alive":
				h.keepAlive = true
			}
		}
	}
	return nil
}

// body returns the reader of the body that follows h on br, and whether
// the connection ends with it (a body that runs to the end of the stream).
func (h *responseHead) body(br *bufio.Reader, head bool) (io.Reader, bool) {
	switch {
	case head || h.status < 200 || h.status == http.StatusNoContent || h.status == http.StatusNotModified:
		return http.NoBody, false
	case h.chunked:
		return &chunkedBody{r: httputil.NewChunkedReader(br), br: br}, false
	case h.length >= 0:
		return &lengthBody{r: br, n: h.length}, false
	}
	return br, true
}

// lengthBody is a body of n bytes; one cut short is io.ErrUnexpectedEOF.
type lengthBody struct {
	r io.Reader
	n int64
}

func (b *lengthBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	if err == io.EOF && b.n > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err == nil && b.n == 0 {
		err = io.EOF
	}
	return n, err
}

// chunkedBody reads a chunked body and, at its end, the trailer section,
// so that the connection is left at the next response.
type chunkedBody struct {
	r  io.Reader
	br *bufio.Reader
}

func (b *chunkedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != io.EOF {
		return n, err
	}
	for {
		line, err := b.br.ReadSlice('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		if len(line) <= 2 && (string(line) == "\r\n" || string(line) == "\n") {
			return n, io.EOF
		}
	}
}

// validHeaderName reports whether n is an HTTP token.
func validHeaderName(n string) bool {
	for i := 0; i < len(n); i++ {
		c := n[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return n != ""
}
