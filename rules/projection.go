package rules

import "unicode/utf8"

// projection is the part of an event a rule can read, computed when the
// rule is compiled: a tree of object member names, rooted at the event.
//
// Decoding with a projection builds, in each object on a projected path,
// only the members the node names; the others are checked and passed
// over. A node that is whole, or whose value in the event turns out not to
// be an object (an array, a string, ...), is decoded in full. So for every
// path in the tree, looking the path up in the projected Message gives
// what it gives in the full one: the same value, or the same absence.
// Matching and templates only ever look up such paths (see project), so
// they cannot tell the two decodes apart.
type projection struct {
	name  string                 // the member this node stands for
	whole bool                   // the value is read whole
	keys  map[string]*projection // members read, when not whole
}

// everything is the projection of the full decode.
var everything = &projection{whole: true}

// newProjection returns the projection that reads nothing but meta's
// type, which ParseEvent checks (ErrNoMeta) whatever a rule reads.
func newProjection() *projection {
	p := &projection{}
	p.child("meta")
	return p
}

// child returns the node of member k, adding it if need be. Under a whole
// node everything is read already: the node itself stands for its members.
func (p *projection) child(k string) *projection {
	if p.whole {
		return p
	}
	c := p.keys[k]
	if c == nil {
		if p.keys == nil {
			p.keys = make(map[string]*projection)
		}
		c = &projection{name: k}
		p.keys[k] = c
	}
	return c
}

// add marks the value at the path keys as read whole.
func (p *projection) add(keys []string) {
	for _, k := range keys {
		p = p.child(k)
	}
	p.readWhole()
}

// readWhole marks p's value as read whole; its members need no nodes.
func (p *projection) readWhole() { p.whole, p.keys = true, nil }

// covers reports whether the value at the path keys is decoded whole.
func (p *projection) covers(keys []string) bool {
	for _, k := range keys {
		if p.whole {
			return true
		}
		if p = p.keys[k]; p == nil {
			return false
		}
	}
	return p.whole
}

// projected reads the value at d.pos with the projection p.
func (d *jsonDecoder) projected(p *projection, depth int) (any, error) {
	if !p.whole {
		d.space()
		if d.pos < len(d.data) && d.data[d.pos] == '{' {
			return d.object(p, depth)
		}
	}
	return d.value(depth, true)
}

// object reads the object at d.pos, building only the members p names. A
// member named twice keeps its last value, as in the full decode.
func (d *jsonDecoder) object(p *projection, depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, errBadJSON
	}
	d.pos++
	// Events leave out most of what a rule may read: a hint of more than
	// one group (8) would make a larger table than the members need.
	m := make(map[string]any, min(len(p.keys), 8))
	if d.closes('}') {
		return m, nil
	}
	for {
		sub, err := d.member(p)
		if err != nil {
			return nil, err
		}
		if sub == nil {
			_, err = d.value(depth+1, false)
		} else {
			d.noteMember(depth, sub.name)
			m[sub.name], err = d.projected(sub, depth+1)
		}
		if err != nil {
			return nil, err
		}
		if more, err := d.next('}'); err != nil || !more {
			return m, err
		}
	}
}

// member reads a member's name and colon and returns the node of p it
// stands for, or nil when p does not read it. A name with escapes or
// invalid UTF-8 is decoded first, so that "me\u0074a" is "meta".
func (d *jsonDecoder) member(p *projection) (*projection, error) {
	if err := d.quote(); err != nil {
		return nil, err
	}
	start := d.pos
	plain, err := d.skipString()
	if err != nil {
		return nil, err
	}
	var sub *projection
	switch name := d.data[start+1 : d.pos-1]; {
	case len(p.keys) == 0:
	case plain && utf8.Valid(name):
		sub = p.keys[string(name)]
	default:
		d.pos = start
		k, _ := d.str() // checked by skipString: no error, same end
		sub = p.keys[k]
	}
	return sub, d.colon()
}

// project computes what r can read of an event: nil when that is the
// whole event. It is, joined:
//   - every key path of the match and match_not patterns of its cases; a
//     pattern that is not an object pattern reads its value whole;
//   - the path of every message.<path> in the templates compiled for the
//     rule (project walks r.templates, which holds each one), read whole:
//     merge(message.params, ...) reads all of params. A template that
//     reads the whole message makes the rule read everything, except a
//     body that is exactly {{message}}: it is sent as the raw bytes;
//   - partition_key;
//   - the service fields (fields.go), except for a partitioner: it moves
//     events to their partitioned topic and runs none, so it reads none of
//     them but for a fault's error event, and Get decodes a field that
//     the projection left out on the spot.
//
// Paths are fixed when a template is compiled (the language has no
// computed indexes); a path through an array reads the array whole.
func project(r *Rule) *projection {
	b := projector{root: newProjection()}
	for _, c := range r.Cases {
		for _, p := range c.match {
			b.pattern(p, b.root)
		}
		for _, p := range c.matchNot {
			b.pattern(p, b.root)
		}
	}
	raw := rawBodies(r)
	for _, t := range r.templates {
		if !raw[t] {
			b.template(t)
		}
	}
	if r.Partition != nil {
		b.segments(r.Partition.key)
	}
	if r.Partition == nil {
		for _, f := range serviceFields {
			b.root.add(f.keys())
		}
	}
	if b.full {
		return nil
	}
	return b.root
}

// rawBodies returns the templates of r's exec bodies that are exactly
// {{message}}: Exec.expand sends the event's raw bytes for them and never
// evaluates them.
func rawBodies(r *Rule) map[*Template]bool {
	var out map[*Template]bool
	for _, c := range r.Cases {
		for _, x := range c.Exec {
			if t, ok := x.body.(*Template); ok && t.message {
				if out == nil {
					out = make(map[*Template]bool)
				}
				out[t] = true
			}
		}
	}
	return out
}

// projector builds a projection; full is set once something needs the
// whole event.
type projector struct {
	root *projection
	full bool
}

// pattern adds what a compiled pattern reads of the value at node at.
func (b *projector) pattern(p pattern, at *projection) {
	switch p := p.(type) {
	case *objectPattern:
		for i, k := range p.keys {
			b.pattern(p.subs[i], at.child(k))
		}
	case undefinedPattern:
		// It asks only whether the member is there, which its node
		// tells: an object there decodes as an empty one.
	default:
		// Any other pattern looks at the value as a whole: its type, its
		// text, its elements.
		at.readWhole()
	}
}

func (b *projector) template(t *Template) {
	for _, part := range t.parts {
		if part.e != nil {
			b.expr(part.e)
		}
	}
}

func (b *projector) expr(e expr) {
	switch e := e.(type) {
	case *pathExpr:
		switch e.root {
		case rootMessage:
			if len(e.segs) == 0 {
				b.full = true
			}
			b.segments(e.segs)
		case rootMatch:
			// Captures, made from values the patterns read.
		default:
			// globals itself (globals.message and globals.match are
			// rewritten to their roots when parsed) holds the whole event.
			b.full = true
		}
	case literal:
	case *arrayExpr:
		for _, x := range e.elems {
			b.expr(x)
		}
	case *objectExpr:
		for _, x := range e.vals {
			b.expr(x)
		}
	case *callExpr:
		for _, x := range e.args {
			b.expr(x)
		}
	default:
		b.full = true // an expression this walk does not know
	}
}

// segments adds a path of a template or of partition_key, read whole.
// Array indexes and .length are member names to the projection: the
// array or string they apply to is decoded whole.
func (b *projector) segments(segs []segment) {
	at := b.root
	for _, s := range segs {
		at = at.child(s.key)
	}
	at.readWhole()
}
