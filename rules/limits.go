package rules

import (
	"math"
	"regexp"

	"gopkg.in/yaml.v3"
)

// Limiter is one entry of limiters: a limiter type and the template of the
// key it limits (e.g. blacklist: 'html:{message.meta.uri}').
type Limiter struct {
	Type string
	Key  *Template
}

// KeyConcurrency caps in-flight events per concurrency key.
type KeyConcurrency struct {
	Default   int            // default: cap of keys without an override; 0 = uncapped
	Overrides map[string]int // overrides: key -> cap
}

// Limit returns the in-flight cap of key; 0 means uncapped.
func (k *KeyConcurrency) Limit(key string) int {
	if n, ok := k.Overrides[key]; ok {
		return n
	}
	return k.Default
}

// RateLimit is a token bucket per key.
type RateLimit struct {
	Rate  float64   // rate: tokens per second, > 0
	Burst int       // burst: bucket size; default max(1, ceil(Rate))
	Key   *Template // key: nil means the rule's ConcurrencyKey, or one bucket when that is nil too
}

func (p *problems) decodeKeyConcurrency(n *yaml.Node, path string) *KeyConcurrency {
	k := &KeyConcurrency{}
	o := p.object(path, n)
	if n, path := o.get("default"); n != nil {
		if v, ok := p.integer(n, path); ok {
			if v < 0 {
				p.add(path, "must not be negative")
			}
			k.Default = v
		}
	}
	if n, path := o.get("overrides"); !isNull(n) {
		oo := p.object(path, n)
		k.Overrides = make(map[string]int, len(oo.entries))
		for _, e := range oo.entries {
			e.used = true
			if v, ok := p.integer(e.node, e.path); ok {
				if v < 1 {
					p.add(e.path, "must be at least 1")
				}
				k.Overrides[e.key] = v
			}
		}
	}
	o.finish()
	return k
}

func (p *problems) decodeRateLimit(r *Rule, n *yaml.Node, path string) *RateLimit {
	rl := &RateLimit{}
	o := p.object(path, n)
	rn, rpath := o.get("rate")
	if rn == nil {
		p.add(rpath, "required")
	} else if v, ok := p.float(rn, rpath); ok {
		if v <= 0 {
			p.add(rpath, "must be positive")
		}
		rl.Rate = v
	}
	rl.Burst = max(1, int(math.Min(math.Ceil(rl.Rate), math.MaxInt32)))
	if n, path := o.get("burst"); n != nil {
		if v, ok := p.integer(n, path); ok {
			if v < 1 {
				p.add(path, "must be at least 1")
			}
			rl.Burst = v
		}
	}
	if n, path := o.get("key"); !isNull(n) {
		rl.Key = p.template(r, n, path)
	}
	o.finish()
	return rl
}

// titles is one domain's compiled blacklist.
type titles struct {
	exact map[string]bool
	res   []*regexp.Regexp
}

func (p *problems) decodeBlacklist(r *Rule, n *yaml.Node, path string) {
	o := p.object(path, n)
	r.Blacklist = make(map[string][]string, len(o.entries))
	r.blacklist = make(map[string]titles, len(o.entries))
	for _, e := range o.entries {
		e.used = true
		list, ok := p.strings(e.node, e.path)
		if !ok {
			continue
		}
		t := titles{exact: make(map[string]bool)}
		for _, s := range list {
			re, isRegex, err := compileRegex(s)
			switch {
			case err != nil:
				p.add(e.path, "%v", err)
			case isRegex:
				t.res = append(t.res, re)
			default:
				t.exact[s] = true
			}
		}
		r.Blacklist[e.key] = list
		r.blacklist[e.key] = t
	}
}

// HasBlacklist reports whether the rule has a static blacklist in effect:
// without one Blacklisted is false for every event.
func (r *Rule) HasBlacklist() bool { return len(r.blacklist) > 0 && !r.DisableBlacklist }

// Blacklisted reports whether the static blacklist lists title for domain.
// It is false when DisableBlacklist is set.
func (r *Rule) Blacklisted(domain, title string) bool {
	if !r.HasBlacklist() {
		return false
	}
	t, ok := r.blacklist[domain]
	if !ok {
		return false
	}
	if t.exact[title] {
		return true
	}
	for _, re := range t.res {
		if re.MatchString(title) {
			return true
		}
	}
	return false
}
