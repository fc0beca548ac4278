package rules

import (
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Rule is one compiled rule: which topics to read, which events to act on,
// which requests to send, and how to treat the answers. Every field holds
// its effective value: the rule's own, else the one under defaults:, else
// the built-in default. A Rule is immutable after Load.
type Rule struct {
	Name                 string
	Topics               []Topic       // topic / topics
	ExcludeTopics        []string      // exclude_topics: names removed from regex subscriptions
	Cases                []*Case       // cases, or one case made of match / match_not / exec / sample
	DiscardCanaryEvents  bool          // discard_canary_events; default true
	Concurrency          int           // concurrency: in-flight events per process; default 30
	PartitionConcurrency int           // partition_concurrency: in-flight cap per partition; default Concurrency
	Timeout              time.Duration // timeout: default per-request timeout; default 7m (integer = ms)
	RetryDelay           time.Duration // retry_delay: first retry delay; default 60s (integer = ms)
	RetryFactor          float64       // retry_factor: later retries wait this many times longer; default 6
	RetryLimit           int           // retry_limit: retries after the first attempt; default 2; 0 = none
	RetryOn              Condition     // retry_on; default {status: ['50x']}
	Ignore               Condition     // ignore; default {status: [412]}
	Sample               *Sample       // sample; nil keeps every event (cases may set their own)

	Limiters         []Limiter           // limiters, in file order
	Blacklist        map[string][]string // blacklist: domain -> titles (exact or /regex/)
	DisableBlacklist bool                // disable_blacklist
	DisableRatelimit bool                // disable_ratelimit

	ReenqueueDelay          time.Duration // reenqueue_delay; default 20s (integer = s)
	DisableDelayedExecution bool          // disable_delayed_execution: ignore delay_until
	ClaimTTL                time.Duration // claim_ttl: abandon events whose meta.dt is older; 0 = never (integer = s)
	RootClaimTTL            time.Duration // root_claim_ttl: same for root_event.dt; 0 = never (integer = s)

	Consumer          map[string]string // consumer: librdkafka properties over kafka.consumer
	ConsumerBatchSize int               // consumer_batch_size: accepted for compatibility, unused

	ConcurrencyKey *Template       // concurrency_key: names the key of key_concurrency, ordered and rate_limit; nil = none
	KeyConcurrency *KeyConcurrency // key_concurrency; nil = no per-key cap
	Ordered        bool            // ordered: one event at a time per concurrency key, in offset order
	RateLimit      *RateLimit      // rate_limit; nil = none
	Breaker        Breaker         // breaker: the top-level breaker settings with this rule's overrides
	Partition      *Partitioner    // partition_*: non-nil makes the rule a partitioner

	captures  bool              // some template reads "match": record regex groups
	blacklist map[string]titles // compiled Blacklist
	paths     map[string]string // key -> path it was read from, for messages
}

// Topic is a topic the rule reads.
type Topic struct {
	// Name is the topic name, or for a regex topic the pattern source (in Go
	// syntax, flags included, without the slashes).
	Name string
	// Regex is non-nil for a topic written /regex/: every matching topic,
	// including ones created later.
	Regex *regexp.Regexp
}

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

// Partitioner makes a rule repartition its events instead of executing them.
type Partitioner struct {
	// Stream is partition_stream, the template of the destination topic
	// (before the dc prefix), e.g. cpjobqueue.partitioned.{{message.meta.stream}}.
	Stream *Template
	// Key is partition_key, a dotted path in the event ("database").
	Key string
	// Map is partition_map: key value -> partition. Nil means a stable hash
	// of the value modulo the partition count.
	Map map[string]int
	// Default is partition_default: the partition of values not in Map.
	Default int

	key []segment
}

// KeyValue returns the event's value at Key as text ("" when absent).
func (p *Partitioner) KeyValue(ev *Event) string {
	var v any = ev.Message
	for _, s := range p.key {
		v = step(v, s)
	}
	return string(appendValue(nil, v))
}

// Built-in defaults of rule keys.
const (
	DefaultConcurrency    = 30
	DefaultTimeout        = 7 * time.Minute
	DefaultRetryDelay     = 60 * time.Second
	DefaultRetryFactor    = 6.0
	DefaultRetryLimit     = 2
	DefaultReenqueueDelay = 20 * time.Second
)

// exclusive maps a key the rule sets itself to the keys of defaults: that
// it keeps out (a rule with cases takes no match or exec from defaults).
var exclusive = map[string][]string{
	"cases":     {"match", "match_not", "exec"},
	"match":     {"cases"},
	"match_not": {"cases"},
	"exec":      {"cases"},
	"topic":     {"topics"},
	"topics":    {"topic"},
	// A partitioner forwards events; an exec under defaults is for the
	// rules that run them.
	"partition_stream": {"exec"},
}

// pathOf returns where key was read from: the rule's own path or defaults.
func (r *Rule) pathOf(key string) string {
	if p, ok := r.paths[key]; ok {
		return p
	}
	return "rules." + r.Name + "." + key
}

func (p *problems) decodeRule(c *Config, name string, n *yaml.Node, path string, defaults *object) *Rule {
	o := p.object(path, n)
	own := make(map[string]bool, len(o.entries))
	for _, e := range o.entries {
		own[e.key] = true
	}
	for _, d := range defaults.entries {
		if o.has(d.key) {
			continue
		}
		blocked := false
		for k, keys := range exclusive {
			if own[k] && slices.Contains(keys, d.key) {
				blocked = true
			}
		}
		if !blocked {
			o.put(d.key, d.node, d.path)
		}
	}
	r := &Rule{
		Name:                name,
		DiscardCanaryEvents: true,
		Concurrency:         DefaultConcurrency,
		Timeout:             DefaultTimeout,
		RetryDelay:          DefaultRetryDelay,
		RetryFactor:         DefaultRetryFactor,
		RetryLimit:          DefaultRetryLimit,
		RetryOn:             statusCondition("50x"),
		Ignore:              statusCondition("412"),
		ReenqueueDelay:      DefaultReenqueueDelay,
		Breaker:             c.Breaker,
		paths:               make(map[string]string, len(o.entries)),
	}
	for _, e := range o.entries {
		r.paths[e.key] = e.path
	}
	get := o.get

	p.decodeTopics(r, o)
	if n, path := get("exclude_topics"); !isNull(n) {
		if v, ok := p.strings(n, path); ok {
			r.ExcludeTopics = v
		}
	}
	if n, path := get("discard_canary_events"); n != nil {
		if v, ok := p.boolean(n, path); ok {
			r.DiscardCanaryEvents = v
		}
	}
	if n, path := get("concurrency"); n != nil {
		if v, ok := p.integer(n, path); ok {
			r.Concurrency = v
		}
	}
	r.PartitionConcurrency = r.Concurrency
	if n, path := get("partition_concurrency"); n != nil {
		if v, ok := p.integer(n, path); ok {
			r.PartitionConcurrency = v
		}
	}
	if n, path := get("timeout"); n != nil {
		if v, ok := p.duration(n, path, time.Millisecond); ok {
			r.Timeout = v
		}
	}
	if n, path := get("retry_delay"); n != nil {
		if v, ok := p.duration(n, path, time.Millisecond); ok {
			r.RetryDelay = v
		}
	}
	if n, path := get("retry_factor"); n != nil {
		if v, ok := p.float(n, path); ok {
			r.RetryFactor = v
		}
	}
	if n, path := get("retry_limit"); n != nil {
		if v, ok := p.integer(n, path); ok {
			r.RetryLimit = v
		}
	}
	if n, path := get("retry_on"); n != nil {
		r.RetryOn = p.compileCondition(n, path)
	}
	if n, path := get("ignore"); n != nil {
		r.Ignore = p.compileCondition(n, path)
	}
	if n, path := get("sample"); !isNull(n) {
		r.Sample = p.compileSample(r, n, path)
	}
	if n, path := get("limiters"); !isNull(n) {
		lo := p.object(path, n)
		for _, e := range lo.entries {
			e.used = true
			if t := p.template(r, e.node, e.path); t != nil {
				r.Limiters = append(r.Limiters, Limiter{Type: e.key, Key: t})
			}
		}
	}
	if n, path := get("blacklist"); !isNull(n) {
		p.decodeBlacklist(r, n, path)
	}
	if n, path := get("disable_blacklist"); n != nil {
		if v, ok := p.boolean(n, path); ok {
			r.DisableBlacklist = v
		}
	}
	if n, path := get("disable_ratelimit"); n != nil {
		if v, ok := p.boolean(n, path); ok {
			r.DisableRatelimit = v
		}
	}
	if n, path := get("reenqueue_delay"); n != nil {
		if v, ok := p.duration(n, path, time.Second); ok {
			r.ReenqueueDelay = v
		}
	}
	if n, path := get("disable_delayed_execution"); n != nil {
		if v, ok := p.boolean(n, path); ok {
			r.DisableDelayedExecution = v
		}
	}
	if n, path := get("claim_ttl"); !isNull(n) {
		if v, ok := p.duration(n, path, time.Second); ok {
			r.ClaimTTL = v
		}
	}
	if n, path := get("root_claim_ttl"); !isNull(n) {
		if v, ok := p.duration(n, path, time.Second); ok {
			r.RootClaimTTL = v
		}
	}
	if n, path := get("consumer"); !isNull(n) {
		r.Consumer = p.props(n, path)
	}
	if n, path := get("consumer_batch_size"); n != nil {
		if v, ok := p.integer(n, path); ok {
			r.ConsumerBatchSize = v
		}
	}
	if n, path := get("concurrency_key"); !isNull(n) {
		r.ConcurrencyKey = p.template(r, n, path)
	}
	if n, path := get("key_concurrency"); !isNull(n) {
		r.KeyConcurrency = p.decodeKeyConcurrency(n, path)
	}
	if n, path := get("ordered"); n != nil {
		if v, ok := p.boolean(n, path); ok {
			r.Ordered = v
		}
	}
	if n, path := get("rate_limit"); !isNull(n) {
		r.RateLimit = p.decodeRateLimit(r, n, path)
	}
	if n, path := get("breaker"); n != nil {
		r.Breaker = p.breaker(n, path, c.Breaker)
	}
	p.decodePartitioner(r, o)
	p.decodeCases(r, o)
	o.finish()
	return r
}

func (p *problems) decodeTopics(r *Rule, o *object) {
	tn, tpath := o.get("topic")
	sn, spath := o.get("topics")
	switch {
	case tn != nil && sn != nil:
		p.add(spath, "use topic or topics, not both")
	case tn == nil && sn == nil:
		p.add(tpath, "required")
		return
	case sn != nil:
		tn, tpath = sn, spath
	}
	names, ok := p.strings(tn, tpath)
	if !ok {
		return
	}
	if len(names) == 0 {
		p.add(tpath, "at least one topic is required")
	}
	seq := resolve(tn).Kind == yaml.SequenceNode
	for i, name := range names {
		path := tpath
		if seq {
			path = index(tpath, i)
		}
		re, isRegex, err := compileRegex(name)
		switch {
		case err != nil:
			p.add(path, "%v", err)
		case isRegex:
			r.Topics = append(r.Topics, Topic{Name: re.String(), Regex: re})
		case !validTopic(name):
			p.add(path, "bad topic name %q", name)
		default:
			r.Topics = append(r.Topics, Topic{Name: name})
		}
	}
}

// validTopic reports whether name is a legal Kafka topic name.
func validTopic(name string) bool {
	if name == "" || len(name) > 249 || name == "." || name == ".." {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '.' || c == '_' || c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
			return false
		}
	}
	return true
}

// template compiles a scalar template node; nil on problems.
func (p *problems) template(r *Rule, n *yaml.Node, path string) *Template {
	s, ok := p.str(n, path)
	if !ok {
		return nil
	}
	t, err := ParseTemplate(s)
	if err != nil {
		p.add(path, "%v", err)
		return nil
	}
	r.captures = r.captures || t.usesMatch
	return t
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

func (p *problems) decodePartitioner(r *Rule, o *object) {
	sn, spath := o.get("partition_stream")
	kn, kpath := o.get("partition_key")
	mn, mpath := o.get("partition_map")
	dn, dpath := o.get("partition_default")
	if sn == nil {
		for _, x := range []struct {
			n    *yaml.Node
			path string
		}{{kn, kpath}, {mn, mpath}, {dn, dpath}} {
			if x.n != nil {
				p.add(x.path, "needs partition_stream")
			}
		}
		return
	}
	pt := &Partitioner{}
	pt.Stream = p.template(r, sn, spath)
	if kn == nil {
		p.add(kpath, "required with partition_stream")
	} else if key, ok := p.str(kn, kpath); ok {
		pt.Key = key
		for _, s := range strings.Split(key, ".") {
			if s == "" {
				p.add(kpath, "bad path %q", key)
				break
			}
			pt.key = append(pt.key, newSegment(s))
		}
	}
	if !isNull(mn) {
		mo := p.object(mpath, mn)
		pt.Map = make(map[string]int, len(mo.entries))
		for _, e := range mo.entries {
			e.used = true
			if v, ok := p.integer(e.node, e.path); ok {
				if v < 0 {
					p.add(e.path, "must not be negative")
				}
				pt.Map[e.key] = v
			}
		}
	}
	if dn != nil {
		if v, ok := p.integer(dn, dpath); ok {
			if v < 0 {
				p.add(dpath, "must not be negative")
			}
			pt.Default = v
		}
	}
	r.Partition = pt
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

// Blacklisted reports whether the static blacklist lists title for domain.
// It is false when DisableBlacklist is set.
func (r *Rule) Blacklisted(domain, title string) bool {
	if r.DisableBlacklist {
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

// NeedsCaptures reports whether some template of the rule reads the
// "match" captures, so that Match records regex groups.
func (r *Rule) NeedsCaptures() bool { return r.captures }

// Subscribes reports whether the rule reads topic (a name without the dc
// prefix; see Config.TopicName): a listed topic, or one that matches a
// /regex/ topic and is not in ExcludeTopics.
func (r *Rule) Subscribes(topic string) bool {
	for _, t := range r.Topics {
		if t.Regex == nil && t.Name == topic {
			return true
		}
	}
	if slices.Contains(r.ExcludeTopics, topic) {
		return false
	}
	for _, t := range r.Topics {
		if t.Regex != nil && t.Regex.MatchString(topic) {
			return true
		}
	}
	return false
}
