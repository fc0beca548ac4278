package rules

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// pattern is one compiled node of a match pattern. present is false when
// the field is absent from the event (v is then nil).
type pattern interface {
	match(v any, present bool, c *captures) bool
}

// captures collects regex capture groups while an event is matched, as the
// nested object that templates see under "match". A nil *captures records
// nothing: rules whose templates never read "match" match without
// allocating.
type captures struct {
	root map[string]any
}

// set stores v at path, creating the intermediate objects.
func (c *captures) set(path []string, v any) {
	if c.root == nil {
		c.root = make(map[string]any)
	}
	m := c.root
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = make(map[string]any)
			m[k] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
}

// objectPattern matches an object whose every listed key matches (AND).
type objectPattern struct {
	keys []string
	subs []pattern
}

func (p *objectPattern) match(v any, present bool, c *captures) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	for i, k := range p.keys {
		fv, ok := m[k]
		if !p.subs[i].match(fv, ok, c) {
			return false
		}
	}
	return true
}

// arrayPattern matches an array in which every element pattern matches
// some element.
type arrayPattern struct{ elems []pattern }

func (p *arrayPattern) match(v any, present bool, c *captures) bool {
	a, ok := v.([]any)
	if !ok {
		return false
	}
	for _, sub := range p.elems {
		found := false
		for _, x := range a {
			if sub.match(x, true, c) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// regexPattern matches string values against a regular expression and, when
// asked to, records its groups at path: unnamed groups as an array whose
// element 0 is the whole match, named groups as an object. A regex without
// groups records the array [whole match], as the Node service's
// re.exec() did, so match.<path>[0] works for it too.
type regexPattern struct {
	re    *regexp.Regexp
	path  []string
	named bool // all groups are named
}

func (p *regexPattern) match(v any, present bool, c *captures) bool {
	s, ok := v.(string)
	if !ok {
		return false
	}
	if c == nil {
		return p.re.MatchString(s)
	}
	idx := p.re.FindStringSubmatchIndex(s)
	if idx == nil {
		return false
	}
	group := func(i int) any {
		if idx[2*i] < 0 {
			return nil
		}
		return s[idx[2*i]:idx[2*i+1]]
	}
	if p.named {
		m := make(map[string]any, p.re.NumSubexp())
		for i, name := range p.re.SubexpNames() {
			if i > 0 {
				m[name] = group(i)
			}
		}
		c.set(p.path, m)
	} else {
		a := make([]any, p.re.NumSubexp()+1)
		for i := range a {
			a[i] = group(i)
		}
		c.set(p.path, a)
	}
	return true
}

// stringPattern matches a string by equality.
type stringPattern string

func (p stringPattern) match(v any, present bool, c *captures) bool {
	s, ok := v.(string)
	return ok && s == string(p)
}

// numberPattern matches a number by value; it never matches a string.
type numberPattern struct {
	text string // canonical source, compared first so large integers stay exact
	f    float64
}

func (p numberPattern) match(v any, present bool, c *captures) bool {
	switch n := v.(type) {
	case json.Number:
		if string(n) == p.text {
			return true
		}
		f, err := strconv.ParseFloat(string(n), 64)
		return err == nil && f == p.f
	case float64:
		return n == p.f
	case int:
		return float64(n) == p.f
	case int64:
		return float64(n) == p.f
	}
	return false
}

// boolPattern matches a boolean by equality.
type boolPattern bool

func (p boolPattern) match(v any, present bool, c *captures) bool {
	b, ok := v.(bool)
	return ok && b == bool(p)
}

// nullPattern matches a present JSON null.
type nullPattern struct{}

func (nullPattern) match(v any, present bool, c *captures) bool { return present && v == nil }

// undefinedPattern ('undefined') matches an absent field.
type undefinedPattern struct{}

func (undefinedPattern) match(v any, present bool, c *captures) bool { return !present }

// compilePattern compiles a YAML pattern node. capPath is where captures of
// regexes inside it are stored; *groups is set when any regex has groups.
func (p *problems) compilePattern(n *yaml.Node, path string, capPath []string, groups *bool) pattern {
	n = resolve(n)
	if n == nil {
		return undefinedPattern{}
	}
	switch n.Kind {
	case yaml.MappingNode:
		o := p.object(path, n)
		op := &objectPattern{}
		for _, e := range o.entries {
			e.used = true
			sub := p.compilePattern(e.node, e.path, appendPath(capPath, e.key), groups)
			op.keys = append(op.keys, e.key)
			op.subs = append(op.subs, sub)
		}
		return op
	case yaml.SequenceNode:
		ap := &arrayPattern{}
		for i, c := range n.Content {
			sub := p.compilePattern(c, index(path, i), appendPath(capPath, strconv.Itoa(i)), groups)
			ap.elems = append(ap.elems, sub)
		}
		return ap
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return nullPattern{}
		case "!!bool":
			var b bool
			if n.Decode(&b) != nil {
				p.add(path, "bad boolean %q", n.Value)
			}
			return boolPattern(b)
		case "!!int", "!!float":
			var f float64
			if err := n.Decode(&f); err != nil {
				p.add(path, "bad number %q", n.Value)
			}
			return numberPattern{text: canonicalNumber(n.Value, f), f: f}
		}
		if n.Value == "undefined" {
			return undefinedPattern{}
		}
		re, isRegex, err := compileRegex(n.Value)
		if !isRegex {
			return stringPattern(n.Value)
		}
		if err != nil {
			p.add(path, "%v", err)
			return stringPattern(n.Value)
		}
		rp := &regexPattern{re: re, path: capPath}
		unnamed, named := 0, 0
		for i, name := range re.SubexpNames() {
			switch {
			case i == 0:
			case name == "":
				unnamed++
			default:
				named++
			}
		}
		if unnamed > 0 && named > 0 {
			p.add(path, "regex %s mixes named and unnamed capture groups", n.Value)
		}
		rp.named = named > 0
		if unnamed+named > 0 {
			*groups = true
		}
		return rp
	}
	p.add(path, "unsupported pattern")
	return undefinedPattern{}
}

func appendPath(path []string, key string) []string {
	out := make([]string, len(path)+1)
	copy(out, path)
	out[len(path)] = key
	return out
}

// canonicalNumber is how a JSON encoder most likely writes the number.
func canonicalNumber(src string, f float64) string {
	if f == float64(int64(f)) && !strings.ContainsAny(src, ".eE") {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// compileRegex recognises a JavaScript-style regex literal /source/flags.
// isRegex is false for any other string. The JavaScript flags i, m and s
// become Go's (?i), (?m) and (?s); g, u, y and d do not change what
// matches and are ignored. A string with other letters after its last
// slash ("/wiki/Main_Page") is not a regex. Named groups (?<name>...) work as in JavaScript.
func compileRegex(s string) (re *regexp.Regexp, isRegex bool, err error) {
	if len(s) < 2 || s[0] != '/' {
		return nil, false, nil
	}
	end := strings.LastIndexByte(s, '/')
	if end == 0 {
		return nil, false, nil
	}
	src, flags := s[1:end], s[end+1:]
	var goFlags strings.Builder
	for _, f := range flags {
		switch f {
		case 'i', 'm', 's':
			if !strings.ContainsRune(goFlags.String(), f) {
				goFlags.WriteRune(f)
			}
		case 'g', 'u', 'y', 'd':
		default:
			// Not a regex literal after all, e.g. "/wiki/Main_Page".
			return nil, false, nil
		}
	}
	if goFlags.Len() > 0 {
		src = "(?" + goFlags.String() + ")" + src
	}
	re, err = regexp.Compile(src)
	if err != nil {
		return nil, true, fmt.Errorf("bad regex %s: %v", s, err)
	}
	return re, true, nil
}
