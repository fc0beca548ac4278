package rules

import (
	"fmt"
	"net/url"
	"strings"

	"gopkg.in/yaml.v3"
)

// Purge makes a rule send an HTTP PURGE for the URIs of its events to each
// of a list of caches (rule key purge). The rule runs as one instance per
// cache (Instances): each cache is a destination of its own, with its own
// consumer group, concurrency, breaker and offsets, so a cache that is
// down holds back only its own instance.
type Purge struct {
	// Caches is caches: the base URI (http://host:port) of each cache's
	// purge listener.
	Caches []string
	// URIs is uris: templates of the URIs to purge; default
	// ['{{message.meta.uri}}'].
	URIs []*Template
	// Cache is set on an instance (see Rule.Instances): the one cache it
	// purges. It is "" on the rule itself, which sends nothing.
	Cache string
}

func (p *problems) decodePurge(r *Rule, o *object) {
	n, path := o.get("purge")
	if isNull(n) {
		return
	}
	po := p.object(path, n)
	pu := &Purge{}
	cn, cpath := po.get("caches")
	seen := map[string]bool{}
	if isNull(cn) {
		p.add(cpath, "required: the caches' purge endpoints, e.g. [http://cache1:3128]")
	} else if list, ok := p.strings(cn, cpath); ok {
		if len(list) == 0 {
			p.add(cpath, "at least one cache is required")
		}
		for i, c := range list {
			ipath := index(cpath, i)
			u, err := url.Parse(c)
			switch {
			case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
				p.add(ipath, "want http(s)://host[:port], got %q", c)
			case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
				p.add(ipath, "want http(s)://host[:port] without path, query or user, got %q", c)
			case seen[u.Host]:
				p.add(ipath, "duplicate cache %s", u.Host)
			default:
				seen[u.Host] = true
				pu.Caches = append(pu.Caches, u.Scheme+"://"+u.Host)
			}
		}
	}
	if un, upath := po.get("uris"); !isNull(un) {
		list, _ := p.strings(un, upath)
		if len(list) == 0 {
			p.add(upath, "at least one uri is required")
		}
		for i := range list {
			ipath := upath
			if resolve(un).Kind == yaml.SequenceNode {
				ipath = index(upath, i)
			}
			if t, err := ParseTemplate(list[i]); err != nil {
				p.add(ipath, "%v", err)
			} else {
				r.use(t)
				pu.URIs = append(pu.URIs, t)
			}
		}
	} else {
		pu.URIs = []*Template{r.useDefault("{{message.meta.uri}}")}
	}
	po.finish()
	r.Purge = pu
}

// Instances returns the rules to run for r: r itself, or for a rule with
// purge one copy per cache, named <rule>@<host:port>, whose Purge.Cache is
// that cache. The copies are made once, when the configuration is loaded.
func (r *Rule) Instances() []*Rule {
	if r.instances != nil {
		return r.instances
	}
	return []*Rule{r}
}

// makeInstances builds a purge rule's per-cache copies.
func (r *Rule) makeInstances() {
	if r.Purge == nil || r.Purge.Cache != "" {
		return
	}
	for _, cache := range r.Purge.Caches {
		inst := *r
		inst.instances = nil
		inst.Name = r.Name + "@" + strings.TrimPrefix(strings.TrimPrefix(cache, "http://"), "https://")
		pu := *r.Purge
		pu.Cache = cache
		inst.Purge = &pu
		inst.Cases = make([]*Case, len(r.Cases))
		for i, c := range r.Cases {
			nc := *c
			if c.static != nil {
				nc.static = &Match{Rule: &inst, Case: &nc}
			}
			inst.Cases[i] = &nc
		}
		r.instances = append(r.instances, &inst)
	}
}

// requests are the PURGE requests of an event for the instance's cache:
// one per URI, sent to the cache with the URI's path and query, and the
// URI's host as the host header (what a cache keys its objects by).
func (pu *Purge) requests(m *Match, ev *Event) ([]Request, error) {
	if pu.Cache == "" {
		return nil, fmt.Errorf("rule %s: purge: run one of the rule's Instances", m.Rule.Name)
	}
	s := m.Scope(ev)
	out := make([]Request, 0, len(pu.URIs))
	for i, t := range pu.URIs {
		uri, err := t.Text(s)
		if err != nil {
			return nil, fmt.Errorf("rule %s: purge.uris[%d]: %w", m.Rule.Name, i, err)
		}
		host, path, err := purgeTarget(uri)
		if err != nil {
			return nil, fmt.Errorf("rule %s: purge.uris[%d]: %w", m.Rule.Name, i, err)
		}
		out = append(out, Request{
			Method:  "PURGE",
			URI:     pu.Cache + path,
			Headers: []Header{{Name: "host", Value: host}},
			Timeout: m.Rule.Timeout,
		})
	}
	return out, nil
}

// purgeTarget splits a URI to purge (http://, https:// or protocol-relative
// //host/path, as resource_change events write them) into its host and
// its path with the query, byte for byte; the fragment is dropped.
func purgeTarget(uri string) (host, path string, err error) {
	rest := uri
	for _, scheme := range []string{"https:", "http:"} {
		if len(rest) >= len(scheme) && strings.EqualFold(rest[:len(scheme)], scheme) {
			rest = rest[len(scheme):]
			break
		}
	}
	rest, ok := strings.CutPrefix(rest, "//")
	if !ok {
		return "", "", fmt.Errorf("cannot purge %q: want http(s)://host/path or //host/path", uri)
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	host, path = rest[:end], rest[end:]
	if host == "" || strings.ContainsAny(host, " @") {
		return "", "", fmt.Errorf("cannot purge %q: bad host", uri)
	}
	if i := strings.IndexByte(path, '#'); i >= 0 {
		path = path[:i]
	}
	if path == "" || path[0] == '?' {
		path = "/" + path
	}
	return host, path, nil
}
