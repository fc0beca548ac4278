package rules

import (
	"gopkg.in/yaml.v3"
)

// Case is one alternative of a rule: the events it takes and the requests
// it sends. A rule without cases: has exactly one Case made of its
// top-level match, match_not, exec and sample.
type Case struct {
	Exec   []*Exec // requests, run in order; empty means consume and do nothing
	Sample *Sample // nil keeps every event

	match    []pattern // any of these; empty matches every event
	matchNot []pattern // none of these
	static   *Match    // shared result when the rule records no captures
}

// Verdict says why Evaluate did or did not match an event.
type Verdict int

// The verdicts of Evaluate.
const (
	// NoMatch: no case matches the event.
	NoMatch Verdict = iota
	// Matched: a case matches; act on the event.
	Matched
	// SampledOut: the first matching case matches, but its sample drops
	// the event.
	SampledOut
	// Canary: the event is a canary event (meta.domain "canary") and the
	// rule discards those.
	Canary
)

// String returns "no_match", "matched", "sampled_out" or "canary".
func (v Verdict) String() string {
	switch v {
	case NoMatch:
		return "no_match"
	case Matched:
		return "matched"
	case SampledOut:
		return "sampled_out"
	case Canary:
		return "canary"
	}
	return "unknown"
}

// Match is the result of matching an event against a rule. It is
// read-only; when the rule records no captures the same *Match is returned
// for every event of a case.
type Match struct {
	Rule *Rule
	Case *Case
	// Captures are the regex groups of the matching patterns, the object
	// templates see as "match"; nil when there are none.
	Captures map[string]any
}

// Scope returns the template scope of ev under this match.
func (m *Match) Scope(ev *Event) Scope {
	return Scope{Message: m.Rule.eventFor(ev).Message, Match: m.Captures}
}

// Match picks the first matching case, applying discard_canary_events and
// the case's sample. ok is false when the rule does not act on the event;
// Evaluate says why.
func (r *Rule) Match(ev *Event) (m *Match, ok bool) {
	m, v := r.Evaluate(ev)
	return m, v == Matched
}

// Evaluate is Match with the reason: the *Match is non-nil only when the
// verdict is Matched. The first case whose patterns match decides: when its
// sample drops the event, later cases are not tried.
func (r *Rule) Evaluate(ev *Event) (*Match, Verdict) {
	ev = r.eventFor(ev)
	if r.DiscardCanaryEvents && ev.Meta("domain") == "canary" {
		return nil, Canary
	}
	var caps *captures
	if r.captures {
		caps = &captures{}
	}
	for _, c := range r.Cases {
		if caps != nil {
			caps.root = nil // a case that failed may have recorded some
		}
		if !c.test(ev.Message, caps) {
			continue
		}
		m := c.static
		if m == nil {
			m = &Match{Rule: r, Case: c}
			if caps != nil {
				m.Captures = caps.root
			}
		}
		if c.Sample != nil && !c.Sample.Keep(m.Scope(ev)) {
			return nil, SampledOut
		}
		return m, Matched
	}
	return nil, NoMatch
}

// test reports whether the case takes the message, recording captures of
// the pattern that matched.
func (c *Case) test(msg map[string]any, caps *captures) bool {
	for _, p := range c.matchNot {
		if p.match(msg, true, nil) {
			return false
		}
	}
	if len(c.match) == 0 {
		return true
	}
	for _, p := range c.match {
		if caps != nil {
			caps.root = nil
		}
		if p.match(msg, true, caps) {
			return true
		}
	}
	return false
}

// decodeCases builds the rule's cases, from cases: or from the top-level
// match / match_not / exec.
func (p *problems) decodeCases(r *Rule, o *object) {
	cn, cpath := o.get("cases")
	mn, mpath := o.get("match")
	nn, npath := o.get("match_not")
	en, epath := o.get("exec")
	if cn == nil {
		c := &Case{Sample: r.Sample}
		c.match = p.compileMatch(mn, mpath)
		c.matchNot = p.compileMatch(nn, npath)
		c.Exec = p.compileExecs(r, en, epath)
		r.Cases = []*Case{c}
	} else {
		for _, x := range []struct {
			n    *yaml.Node
			path string
		}{{mn, mpath}, {nn, npath}, {en, epath}} {
			if x.n != nil {
				p.add(x.path, "not allowed with cases")
			}
		}
		seq := resolve(cn)
		if seq.Kind != yaml.SequenceNode || len(seq.Content) == 0 {
			p.add(cpath, "must be a non-empty list")
		} else {
			for i, item := range seq.Content {
				r.Cases = append(r.Cases, p.decodeCase(r, item, index(cpath, i)))
			}
		}
	}
	if r.Partition != nil {
		for _, c := range r.Cases {
			if len(c.Exec) > 0 {
				p.add(r.pathOf("partition_stream"), "a partitioner rule cannot have exec")
				break
			}
		}
	}
	if !r.captures {
		for _, c := range r.Cases {
			c.static = &Match{Rule: r, Case: c}
		}
	}
}

func (p *problems) decodeCase(r *Rule, n *yaml.Node, path string) *Case {
	o := p.object(path, n)
	c := &Case{Sample: r.Sample}
	mn, mpath := o.get("match")
	c.match = p.compileMatch(mn, mpath)
	nn, npath := o.get("match_not")
	c.matchNot = p.compileMatch(nn, npath)
	en, epath := o.get("exec")
	c.Exec = p.compileExecs(r, en, epath)
	if sn, spath := o.get("sample"); !isNull(sn) {
		c.Sample = p.compileSample(r, sn, spath)
	}
	o.finish()
	return c
}

// compileMatch compiles match or match_not: an object pattern, or a list
// of them meaning "any of".
func (p *problems) compileMatch(n *yaml.Node, path string) []pattern {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	var groups bool
	switch n.Kind {
	case yaml.MappingNode:
		return []pattern{p.compilePattern(n, path, nil, &groups)}
	case yaml.SequenceNode:
		out := make([]pattern, 0, len(n.Content))
		for i, item := range n.Content {
			ipath := index(path, i)
			if resolve(item).Kind != yaml.MappingNode {
				p.add(ipath, "must be a mapping")
				continue
			}
			out = append(out, p.compilePattern(item, ipath, nil, &groups))
		}
		return out
	}
	p.add(path, "must be a mapping or a list of mappings")
	return nil
}
