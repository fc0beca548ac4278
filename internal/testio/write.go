package testio

import (
	"bytes"
	"io"
)

// WriteUntil writes n bytes of fill to w in 64 KB chunks, stopping at the
// first error (a client that hung up), and returns how many were written:
// a server's huge response body.
func WriteUntil(w io.Writer, n int64, fill byte) int64 {
	chunk := bytes.Repeat([]byte{fill}, 64<<10)
	var written int64
	for written < n {
		m, err := w.Write(chunk[:min(int64(len(chunk)), n-written)])
		written += int64(m)
		if err != nil {
			break
		}
	}
	return written
}
