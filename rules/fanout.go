package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Fanout makes a rule expand an event about a page into events about the
// pages that depend on it (rule key fanout): it asks the MediaWiki Action
// API for the page's backlinks (pages linking to it) or its transclusions
// (pages embedding it), one page of results per pass, and the dispatcher
// turns each result into an event (resource_change by default). When the
// API has more, the dispatcher writes one continuation event carrying the
// API's continue token, and the rule reads it back to ask for the next
// page.
type Fanout struct {
	// List is list: "backlinks" (list=backlinks) or "embeddedin"
	// (list=embeddedin, the pages transcluding a template).
	List string
	// Limit is limit: results per API request (bllimit / eilimit); default
	// 500, the most the API gives a client without the apihighlimits right.
	Limit int
	// Domain is domain: meta.domain of the events, and the host of their
	// meta.uri (https://<domain>/wiki/<title>); default {{message.meta.domain}}.
	Domain *Template
	// Stream is stream: where the events go; default resource_change.
	Stream string
	// Tags is tags: the events' tags; default [change-prop, backlinks] or
	// [change-prop, transcludes, templates].
	Tags []string

	api *Exec // the API request without its continue parameters
}

// Fanout lists and their defaults.
const (
	FanoutBacklinks  = "backlinks"
	FanoutEmbeddedIn = "embeddedin"

	DefaultFanoutLimit  = 500
	DefaultFanoutStream = "resource_change"
	maxFanoutLimit      = 5000 // the API's cap for clients with apihighlimits
)

// prefix is the list's parameter prefix in the Action API.
func (f *Fanout) prefix() string {
	if f.List == FanoutBacklinks {
		return "bl"
	}
	return "ei"
}

func (p *problems) decodeFanout(r *Rule, o *object) {
	n, path := o.get("fanout")
	if isNull(n) {
		return
	}
	fo := p.object(path, n)
	f := &Fanout{Limit: DefaultFanoutLimit, Stream: DefaultFanoutStream}
	x := &Exec{Method: "GET", Timeout: r.Timeout, path: path}
	an, apath := fo.get("api")
	x.URI = p.uriTemplate(r, an, apath, ": the Action API endpoint, e.g. https://{{message.meta.domain}}/w/api.php")
	if hn, hpath := fo.get("headers"); !isNull(hn) {
		x.headers = p.namedTemplates(r, hn, hpath, true)
	}
	if ln, lpath := fo.get("list"); isNull(ln) {
		p.add(lpath, "required: %s or %s", FanoutBacklinks, FanoutEmbeddedIn)
	} else if v, ok := p.str(ln, lpath); ok {
		if v != FanoutBacklinks && v != FanoutEmbeddedIn {
			p.add(lpath, "want %s or %s, got %q", FanoutBacklinks, FanoutEmbeddedIn, v)
		}
		f.List = v
	}
	var title *Template
	if tn, tpath := fo.get("title"); !isNull(tn) {
		title = p.template(r, tn, tpath)
	} else {
		title = r.useDefault("{{message.page_title}}")
	}
	var namespaces []string
	if nn, npath := fo.get("namespace"); !isNull(nn) {
		nn = resolve(nn)
		items := []*yaml.Node{nn}
		if nn.Kind == yaml.SequenceNode {
			items = nn.Content
		}
		for i, item := range items {
			ipath := npath
			if nn.Kind == yaml.SequenceNode {
				ipath = index(npath, i)
			}
			if v, ok := p.integer(item, ipath); ok {
				namespaces = append(namespaces, strconv.Itoa(v))
			}
		}
	}
	if ln, lpath := fo.get("limit"); ln != nil {
		if v, ok := p.integer(ln, lpath); ok {
			if v < 1 || v > maxFanoutLimit {
				p.add(lpath, "must be in [1, %d], got %d", maxFanoutLimit, v)
			}
			f.Limit = v
		}
	}
	if dn, dpath := fo.get("domain"); !isNull(dn) {
		f.Domain = p.template(r, dn, dpath)
	} else {
		f.Domain = r.useDefault("{{message.meta.domain}}")
	}
	if sn, spath := fo.get("stream"); !isNull(sn) {
		if v, ok := p.str(sn, spath); ok {
			if !validTopic(v) {
				p.add(spath, "bad stream name %q", v)
			}
			f.Stream = v
		}
	}
	if tn, tpath := fo.get("tags"); !isNull(tn) {
		if v, ok := p.strings(tn, tpath); ok {
			f.Tags = v
		}
	} else if f.List == FanoutBacklinks {
		f.Tags = []string{"change-prop", "backlinks"}
	} else {
		f.Tags = []string{"change-prop", "transcludes", "templates"}
	}
	if tn, tpath := fo.get("timeout"); tn != nil {
		if d, ok := p.duration(tn, tpath, time.Millisecond); ok {
			if d == 0 {
				p.add(tpath, "must be positive")
			}
			x.Timeout = d
		}
	}
	fo.finish()
	if title == nil || f.List == "" {
		r.Fanout = f // reported above; Load fails
		return
	}
	literal := func(name, value string) namedTemplate {
		t, _ := ParseTemplate(value)
		return namedTemplate{name: name, t: t}
	}
	pre := f.prefix()
	x.query = []namedTemplate{
		literal("action", "query"), literal("format", "json"), literal("formatversion", "2"),
		literal("list", f.List), {name: pre + "title", t: title}, literal(pre+"limit", strconv.Itoa(f.Limit)),
	}
	if len(namespaces) > 0 {
		x.query = append(x.query, literal(pre+"namespace", strings.Join(namespaces, "|")))
	}
	f.api = x
	r.Fanout = f
}

// Request is the API request for one page of results: the first when cont
// is nil, else the one the continue token cont (the API's "continue"
// object) asks for.
func (f *Fanout) Request(m *Match, ev *Event, cont map[string]string) (Request, error) {
	req, err := f.api.Expand(ev, m.Scope(ev))
	if err != nil {
		return req, fmt.Errorf("rule %s: fanout: %w", m.Rule.Name, err)
	}
	keys := make([]string, 0, len(cont))
	for k := range cont {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b := []byte(req.URI)
	for _, k := range keys {
		b = append(b, '&')
		b = appendQueryComponent(b, k)
		b = append(b, '=')
		b = appendQueryComponent(b, cont[k])
	}
	req.URI = string(b)
	return req, nil
}

// Page is one page of an Action API list answer.
type Page struct {
	// Titles are the dependent pages' titles, as the API spells them
	// ("Talk:Main Page").
	Titles []string
	// Continue is the token for the next page; nil when this is the last.
	Continue map[string]string
}

// APIError is an error answer of the Action API ({"error": {"code", "info"}}).
type APIError struct{ Code, Info string }

func (e *APIError) Error() string { return "action API error " + e.Code + ": " + e.Info }

// Retryable reports whether the same request may succeed later: the wiki is
// lagged, read-only or rate-limiting us, or the API failed internally.
func (e *APIError) Retryable() bool {
	switch e.Code {
	case "maxlag", "ratelimited", "readonly":
		return true
	}
	return strings.HasPrefix(e.Code, "internal_api_error")
}

// ErrBadPage means an API answer could not be read as a list page.
var ErrBadPage = errors.New("not an action API list answer")

// ParsePage reads an API answer (formatversion=2). An error answer is an
// *APIError; an answer that is not a list page wraps ErrBadPage.
func (f *Fanout) ParsePage(body []byte) (Page, error) {
	var answer struct {
		Error    *APIError                  `json:"error"`
		Continue map[string]json.RawMessage `json:"continue"`
		Query    map[string]json.RawMessage `json:"query"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&answer); err != nil {
		return Page{}, fmt.Errorf("%w: %v", ErrBadPage, err)
	}
	if answer.Error != nil {
		return Page{}, answer.Error
	}
	var page Page
	if raw, ok := answer.Query[f.List]; ok {
		var items []struct {
			Title string `json:"title"`
		}
		if err := json.Unmarshal(raw, &items); err != nil {
			return Page{}, fmt.Errorf("%w: query.%s: %v", ErrBadPage, f.List, err)
		}
		page.Titles = make([]string, 0, len(items))
		for i, it := range items {
			if it.Title == "" {
				return Page{}, fmt.Errorf("%w: query.%s[%d] has no title", ErrBadPage, f.List, i)
			}
			page.Titles = append(page.Titles, it.Title)
		}
	}
	if len(answer.Continue) > 0 {
		page.Continue = make(map[string]string, len(answer.Continue))
		for k, raw := range answer.Continue {
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				s = string(raw) // a number: its JSON text
			}
			page.Continue[k] = s
		}
	}
	return page, nil
}

// PageURI is the canonical URI of a page, https://<domain>/wiki/<title>,
// with the title written as MediaWiki writes it in URLs: spaces as
// underscores, and every byte but letters, digits and -_.~!*'();:@$,/
// percent-encoded.
func PageURI(domain, title string) string {
	b := make([]byte, 0, len(domain)+len(title)+16)
	b = append(b, "https://"...)
	b = append(b, domain...)
	b = append(b, "/wiki/"...)
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(title); i++ {
		c := title[i]
		switch {
		case c == ' ':
			b = append(b, '_')
		case unreserved[c] || strings.IndexByte(";:@$,/", c) >= 0:
			b = append(b, c)
		default:
			b = append(b, '%', hex[c>>4], hex[c&15])
		}
	}
	return string(b)
}
