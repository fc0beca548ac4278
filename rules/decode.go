package rules

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// problems collects every configuration problem, each as "path: problem",
// in the order found and without duplicates (a bad key under defaults is
// seen once per rule but reported once).
type problems struct {
	list []string
	seen map[string]bool
}

func (p *problems) add(path, format string, args ...any) {
	msg := path + ": " + fmt.Sprintf(format, args...)
	if p.seen == nil {
		p.seen = make(map[string]bool)
	}
	if p.seen[msg] {
		return
	}
	p.seen[msg] = true
	p.list = append(p.list, msg)
}

func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	errs := make([]error, len(p.list))
	for i, m := range p.list {
		errs[i] = errors.New(m)
	}
	return errors.Join(errs...)
}

// entry is one key of a YAML mapping with the path it is reported under.
type entry struct {
	key  string
	node *yaml.Node
	path string
	used bool
}

// object is a YAML mapping being decoded: get marks keys as used, and
// finish reports the keys nobody asked for.
type object struct {
	p       *problems
	path    string
	entries []*entry
	index   map[string]*entry
}

// resolve follows YAML aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// object decodes a mapping node. A nil or null node is an empty mapping;
// anything else is a problem and also yields an empty mapping.
func (p *problems) object(path string, n *yaml.Node) *object {
	o := &object{p: p, path: path, index: make(map[string]*entry)}
	n = resolve(n)
	if isNull(n) {
		return o
	}
	if n.Kind != yaml.MappingNode {
		p.add(path, "must be a mapping")
		return o
	}
	o.addMapping(n, path, true)
	return o
}

func (o *object) addMapping(n *yaml.Node, path string, own bool) {
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			o.p.add(path, "keys must be scalars")
			continue
		}
		if k.Tag == "!!merge" {
			merges = append(merges, resolve(v))
			continue
		}
		if _, dup := o.index[k.Value]; dup {
			if own {
				o.p.add(join(path, k.Value), "duplicate key")
			}
			continue
		}
		o.put(k.Value, v, join(path, k.Value))
	}
	// YAML merge keys (<<: *anchor): keys already present win.
	for _, m := range merges {
		switch m.Kind {
		case yaml.MappingNode:
			o.addMapping(m, path, false)
		case yaml.SequenceNode:
			for _, mm := range m.Content {
				if mm = resolve(mm); mm.Kind == yaml.MappingNode {
					o.addMapping(mm, path, false)
				}
			}
		default:
			o.p.add(join(path, "<<"), "merge value must be a mapping")
		}
	}
}

func (o *object) put(key string, n *yaml.Node, path string) {
	e := &entry{key: key, node: n, path: path}
	o.entries = append(o.entries, e)
	o.index[key] = e
}

// get returns the node under key (nil when absent) and its path.
func (o *object) get(key string) (*yaml.Node, string) {
	e, ok := o.index[key]
	if !ok {
		return nil, join(o.path, key)
	}
	e.used = true
	return e.node, e.path
}

func (o *object) has(key string) bool {
	_, ok := o.index[key]
	return ok
}

// finish reports every key that was not asked for.
func (o *object) finish() {
	for _, e := range o.entries {
		if !e.used {
			o.p.add(e.path, "unknown key")
		}
	}
}

func (p *problems) scalar(n *yaml.Node, path, what string) (*yaml.Node, bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.add(path, "must be %s", what)
		return nil, false
	}
	return n, true
}

// str decodes any non-null scalar as a string.
func (p *problems) str(n *yaml.Node, path string) (string, bool) {
	s, ok := p.scalar(n, path, "a string")
	if !ok {
		return "", false
	}
	return s.Value, true
}

func (p *problems) integer(n *yaml.Node, path string) (int, bool) {
	s, ok := p.scalar(n, path, "an integer")
	if !ok {
		return 0, false
	}
	var i int
	if s.Tag != "!!int" || s.Decode(&i) != nil {
		p.add(path, "must be an integer, not %q", s.Value)
		return 0, false
	}
	return i, true
}

func (p *problems) float(n *yaml.Node, path string) (float64, bool) {
	s, ok := p.scalar(n, path, "a number")
	if !ok {
		return 0, false
	}
	var f float64
	if (s.Tag != "!!int" && s.Tag != "!!float") || s.Decode(&f) != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		p.add(path, "must be a number, not %q", s.Value)
		return 0, false
	}
	return f, true
}

func (p *problems) boolean(n *yaml.Node, path string) (bool, bool) {
	s, ok := p.scalar(n, path, "a boolean")
	if !ok {
		return false, false
	}
	var b bool
	if s.Tag != "!!bool" || s.Decode(&b) != nil {
		p.add(path, "must be a boolean, not %q", s.Value)
		return false, false
	}
	return b, true
}

// duration decodes an integer or float in unit (the unit the Node service
// used for this key), or a Go duration string such as "60s". Negative
// durations are problems.
func (p *problems) duration(n *yaml.Node, path string, unit time.Duration) (time.Duration, bool) {
	s, ok := p.scalar(n, path, "a duration")
	if !ok {
		return 0, false
	}
	d, err := parseDuration(s.Tag, s.Value, unit)
	if err != nil {
		p.add(path, "%v", err)
		return 0, false
	}
	return d, true
}

// strings decodes a scalar or a list of scalars.
func (p *problems) strings(n *yaml.Node, path string) ([]string, bool) {
	n = resolve(n)
	if n != nil && n.Kind == yaml.SequenceNode {
		out := make([]string, 0, len(n.Content))
		ok := true
		for i, c := range n.Content {
			s, good := p.str(c, index(path, i))
			ok = ok && good
			out = append(out, s)
		}
		return out, ok
	}
	s, ok := p.str(n, path)
	if !ok {
		return nil, false
	}
	return []string{s}, true
}

// props decodes a mapping of librdkafka-style properties; scalar values
// of any type (ints, bools) become their string form.
func (p *problems) props(n *yaml.Node, path string) map[string]string {
	o := p.object(path, n)
	out := make(map[string]string, len(o.entries))
	for _, e := range o.entries {
		e.used = true
		if v, ok := p.str(e.node, e.path); ok {
			out[e.key] = v
		}
	}
	return out
}

// maxExpandedNodes bounds the size of a document with its aliases
// expanded, which is what decoding walks: a few lines of nested aliases
// can otherwise stand for billions of nodes. Real configurations are
// thousands of nodes.
const maxExpandedNodes = 1 << 18

// checkAliases rejects what yaml.v3 accepts into a yaml.Node but decoding
// cannot walk: an alias inside the node it refers to (&a {x: *a}, or a
// merge key <<: *a inside &a), which would recurse forever, and aliases
// that expand to more than maxExpandedNodes nodes. It runs in time linear
// in the document.
func checkAliases(doc *yaml.Node) error {
	const open = -1                  // the node is on the current path
	size := make(map[*yaml.Node]int) // expanded size of each node walked
	var walk func(n *yaml.Node) (int, error)
	walk = func(n *yaml.Node) (int, error) {
		if s, ok := size[n]; ok && s != open {
			return s, nil
		}
		children := n.Content
		if n.Kind == yaml.AliasNode {
			if size[n.Alias] == open {
				return 0, fmt.Errorf("line %d: alias *%s refers to a node that contains it", n.Line, n.Value)
			}
			children = []*yaml.Node{n.Alias}
		}
		size[n] = open
		total := 1
		for _, c := range children {
			if c == nil {
				continue
			}
			s, err := walk(c)
			if err != nil {
				return 0, err
			}
			if total += s; total > maxExpandedNodes {
				return 0, fmt.Errorf("line %d: aliases expand to more than %d nodes", n.Line, maxExpandedNodes)
			}
		}
		size[n] = total
		return total, nil
	}
	_, err := walk(doc)
	return err
}
