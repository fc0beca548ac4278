package rules

import (
	"regexp"
	"slices"
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
	Fanout         *Fanout         // fanout: non-nil makes the rule expand events into their dependent pages' events
	Purge          *Purge          // purge: non-nil makes the rule purge caches (run its Instances)

	captures  bool              // some template reads "match": record regex groups
	templates []*Template       // every template compiled for the rule, for project
	proj      *projection       // what ParseEvent decodes; nil: everything
	blacklist map[string]titles // compiled Blacklist
	paths     map[string]string // key -> path it was read from, for messages
	instances []*Rule           // a purge rule's per-cache copies
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
	// fanout and purge are the rule's action: they replace exec.
	"fanout": {"exec", "cases"},
	"purge":  {"exec", "cases"},
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
		r.Breaker = p.breaker(n, path, c.Breaker, r)
	}
	p.decodePartitioner(r, o)
	p.decodeFanout(r, o)
	p.decodePurge(r, o)
	p.decodeCases(r, o)
	o.finish()
	r.proj = project(r)
	r.makeInstances() // after project: the instances share the projection
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
	r.use(t)
	return t
}

// use records a template compiled for the rule.
func (r *Rule) use(t *Template) {
	r.captures = r.captures || t.usesMatch
	r.templates = append(r.templates, t)
}

// useDefault compiles and records a template the rule uses when its
// configuration names none; src must be valid.
func (r *Rule) useDefault(src string) *Template {
	t, err := ParseTemplate(src)
	if err != nil {
		panic("rules: default template " + src + ": " + err.Error())
	}
	r.use(t)
	return t
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
