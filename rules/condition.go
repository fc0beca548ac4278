package rules

import (
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Condition is a compiled retry_on or ignore condition: an object of
// response field -> value or list of values, where a list means any of them.
// Fields:
//
//	status   numbers match exactly; a string of three digits or x, where x
//	         stands for any digit ("50x" = 500-509, "5xx" = 500-599)
//	headers  header name -> string (exact) or /regex/
//
// A condition matches when every field matches. The zero Condition matches
// nothing.
type Condition struct {
	status  []statusPattern
	headers []headerCondition
}

// statusPattern is three digits, 'x' standing for any digit.
type statusPattern [3]byte

func (p statusPattern) match(status int) bool {
	if status < 100 || status > 999 {
		return false
	}
	digits := [3]byte{byte('0' + status/100), byte('0' + status/10%10), byte('0' + status%10)}
	for i, c := range p {
		if c != 'x' && c != digits[i] {
			return false
		}
	}
	return true
}

type headerCondition struct {
	name   string
	values []string
	res    []*regexp.Regexp
}

func (h headerCondition) match(header func(string) string) bool {
	v := header(h.name)
	for _, want := range h.values {
		if v == want {
			return true
		}
	}
	for _, re := range h.res {
		if re.MatchString(v) {
			return true
		}
	}
	return false
}

// IsZero reports whether the condition is empty (matches nothing).
func (c Condition) IsZero() bool { return len(c.status) == 0 && len(c.headers) == 0 }

// Matches reports whether a response with this status and these headers
// meets the condition. header may be nil.
func (c Condition) Matches(status int, header func(name string) string) bool {
	if c.IsZero() {
		return false
	}
	if len(c.status) > 0 {
		ok := false
		for _, p := range c.status {
			if p.match(status) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(c.headers) > 0 {
		if header == nil {
			header = noHeaders
		}
		for _, h := range c.headers {
			if !h.match(header) {
				return false
			}
		}
	}
	return true
}

func noHeaders(string) string { return "" }

// parseStatusPattern reads 412, "412", "50x" or "5xx".
func parseStatusPattern(s string) (statusPattern, bool) {
	var p statusPattern
	if len(s) != 3 {
		return p, false
	}
	for i := range 3 {
		c := s[i]
		if c == 'X' {
			c = 'x'
		}
		if c != 'x' && (c < '0' || c > '9') {
			return p, false
		}
		p[i] = c
	}
	return p, p[0] == 'x' || (p[0] >= '1' && p[0] <= '5')
}

// compileCondition decodes a condition node.
func (p *problems) compileCondition(n *yaml.Node, path string) Condition {
	var c Condition
	o := p.object(path, n)
	if sn, spath := o.get("status"); sn != nil {
		values, ok := p.strings(sn, spath)
		if ok {
			seq := resolve(sn).Kind == yaml.SequenceNode
			for i, v := range values {
				vpath := spath
				if seq {
					vpath = index(spath, i)
				}
				sp, ok := parseStatusPattern(v)
				if !ok {
					p.add(vpath, "bad status pattern %q", v)
					continue
				}
				c.status = append(c.status, sp)
			}
		}
	}
	if hn, hpath := o.get("headers"); hn != nil {
		ho := p.object(hpath, hn)
		for _, e := range ho.entries {
			e.used = true
			values, ok := p.strings(e.node, e.path)
			if !ok {
				continue
			}
			hc := headerCondition{name: strings.ToLower(e.key)}
			for _, v := range values {
				re, isRegex, err := compileRegex(v)
				switch {
				case err != nil:
					p.add(e.path, "%v", err)
				case isRegex:
					hc.res = append(hc.res, re)
				default:
					hc.values = append(hc.values, v)
				}
			}
			c.headers = append(c.headers, hc)
		}
	}
	o.finish()
	return c
}

// statusCondition builds the condition {status: [codes...]} for defaults.
func statusCondition(codes ...string) Condition {
	var c Condition
	for _, s := range codes {
		sp, _ := parseStatusPattern(s)
		c.status = append(c.status, sp)
	}
	return c
}
