package rules

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Limits bound what hostile input can make changeprop hold or send. An
// event over MaxEventBytes, or whose expanded request is over
// MaxRequestBytes or MaxHeaderBytes, goes to the error topic unsent; a
// response's body is read up to MaxResponseBodyBytes (the rest is not read
// and its connection is closed) and its headers up to
// MaxResponseHeaderBytes (a response over it sends the event to the error
// topic).
type Limits struct {
	MaxEventBytes          int   // max_event_bytes: a message read from Kafka; default 1 MiB
	MaxRequestBytes        int   // max_request_bytes: an expanded request's URI, headers and body; default 2 MiB
	MaxHeaderBytes         int   // max_header_bytes: an expanded request's URI and headers; default 16 KiB
	MaxResponseBodyBytes   int64 // max_response_body_bytes; default 1 MiB
	MaxResponseHeaderBytes int   // max_response_header_bytes; default 64 KiB
}

// DefaultLimits are the limits the file leaves out.
var DefaultLimits = Limits{
	MaxEventBytes:          1 << 20,
	MaxRequestBytes:        2 << 20,
	MaxHeaderBytes:         16 << 10,
	MaxResponseBodyBytes:   1 << 20,
	MaxResponseHeaderBytes: 64 << 10,
}

func (p *problems) decodeLimits(n *yaml.Node, path string) Limits {
	l := DefaultLimits
	o := p.object(path, n)
	ints := map[string]*int{
		"max_event_bytes": &l.MaxEventBytes, "max_request_bytes": &l.MaxRequestBytes,
		"max_header_bytes": &l.MaxHeaderBytes, "max_response_header_bytes": &l.MaxResponseHeaderBytes,
	}
	for _, key := range []string{"max_event_bytes", "max_request_bytes", "max_header_bytes", "max_response_header_bytes", "max_response_body_bytes"} {
		n, path := o.get(key)
		if n == nil {
			continue
		}
		v, ok := p.size(n, path)
		if !ok {
			continue
		}
		if dst, isInt := ints[key]; isInt {
			*dst = int(v)
		} else {
			l.MaxResponseBodyBytes = v
		}
	}
	o.finish()
	return l
}

// size decodes a positive byte count: an integer, or a number with a unit
// (KB, MB, GB in powers of 1000; KiB, MiB, GiB in powers of 1024). It is at
// most 1 GiB.
func (p *problems) size(n *yaml.Node, path string) (int64, bool) {
	s, ok := p.scalar(n, path, "a size")
	if !ok {
		return 0, false
	}
	v, err := parseSize(s.Value)
	if err != nil {
		p.add(path, "%v", err)
		return 0, false
	}
	return v, true
}

const maxSize = 1 << 30

func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	num, mult := strings.TrimSpace(s), 1.0
	for _, u := range units {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("bad size %q: want bytes, or a number with KB, MB, KiB or MiB", s)
	}
	v := f * mult
	if v < 1 || v > maxSize {
		return 0, fmt.Errorf("size %q must be between 1 byte and 1GiB", s)
	}
	return int64(v), nil
}
