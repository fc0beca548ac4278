package rules

import (
	"net"
	"strings"
)

// validate checks the values that decoding accepted one by one but that
// are wrong on their own terms or together. Every problem is reported with
// the path it was read from.
func (c *Config) validate(p *problems) {
	if c.ServiceName == "" {
		p.add("service_name", "required")
	} else if !validTopic(c.ServiceName) {
		p.add("service_name", "bad name %q: use letters, digits, '.', '_' and '-'", c.ServiceName)
	}
	for _, dc := range []struct{ key, v string }{{"dc", c.DC}, {"consume_dc", c.ConsumeDC}, {"produce_dc", c.ProduceDC}} {
		if dc.v != "" && !validTopic(dc.v) {
			p.add(dc.key, "bad topic prefix %q", dc.v)
		}
	}
	if c.Kafka.Brokers == "" {
		p.add("kafka.brokers", "required (or set "+EnvKafkaBrokers+")")
	}
	if c.Kafka.CommitInterval <= 0 {
		p.add("kafka.commit_interval", "must be positive")
	}
	if c.Redis != nil {
		if c.Redis.Addr == "" {
			p.add("redis.addr", "required (or set "+EnvRedisAddr+")")
		}
		if c.Redis.DB < 0 {
			p.add("redis.db", "must not be negative")
		}
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		p.add("listen", "want host:port, got %q", c.Listen)
	}
	if c.Admin.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Admin.Listen); err != nil {
			p.add("admin.listen", "want host:port, got %q", c.Admin.Listen)
		} else if c.Admin.Listen == c.Listen {
			p.add("admin.listen", "must differ from listen")
		}
	}
	if c.UserAgent == "" {
		p.add("user_agent", "must not be empty")
	}
	if c.ShutdownTimeout <= 0 {
		p.add("shutdown_timeout", "must be positive")
	}
	for i, h := range c.AllowedHosts {
		if h == "" {
			p.add(index("allowed_hosts", i), "must not be empty")
		}
	}
	c.Breaker.validate(p, "breaker")
	for _, r := range c.Rules {
		r.validate(p, c)
	}
}

func (b Breaker) validate(p *problems, path string) {
	if b.FailureRatio <= 0 || b.FailureRatio > 1 {
		p.add(path+".failure_ratio", "must be in (0, 1], got %v", b.FailureRatio)
	}
	if b.MinRequests < 1 {
		p.add(path+".min_requests", "must be at least 1")
	}
	if b.Interval <= 0 {
		p.add(path+".interval", "must be positive")
	}
	if b.OpenTimeout <= 0 {
		p.add(path+".open_timeout", "must be positive")
	}
	if b.HalfOpenRequests < 1 {
		p.add(path+".half_open_requests", "must be at least 1")
	}
}

func (r *Rule) validate(p *problems, c *Config) {
	if !validTopic(r.Name) {
		p.add("rules."+r.Name, "bad rule name: use letters, digits, '.', '_' and '-'")
	}
	if r.Concurrency < 1 {
		p.add(r.pathOf("concurrency"), "must be at least 1, got %d", r.Concurrency)
	}
	if r.PartitionConcurrency < 1 && r.paths["partition_concurrency"] != "" {
		p.add(r.pathOf("partition_concurrency"), "must be at least 1, got %d", r.PartitionConcurrency)
	}
	if r.Timeout <= 0 {
		p.add(r.pathOf("timeout"), "must be positive")
	}
	if r.RetryFactor < 1 {
		p.add(r.pathOf("retry_factor"), "must be at least 1, got %v", r.RetryFactor)
	}
	if r.RetryLimit < 0 {
		p.add(r.pathOf("retry_limit"), "must not be negative, got %d", r.RetryLimit)
	}
	if r.ConsumerBatchSize < 0 {
		p.add(r.pathOf("consumer_batch_size"), "must not be negative")
	}
	if len(r.ExcludeTopics) > 0 {
		regex := false
		for _, t := range r.Topics {
			regex = regex || t.Regex != nil
		}
		if !regex {
			p.add(r.pathOf("exclude_topics"), "only applies to /regex/ topics")
		}
	}
	if r.ConcurrencyKey == nil {
		if r.KeyConcurrency != nil {
			p.add(r.pathOf("key_concurrency"), "needs concurrency_key")
		}
		if r.Ordered {
			p.add(r.pathOf("ordered"), "needs concurrency_key")
		}
	}
	if r.paths["breaker"] != "" {
		r.Breaker.validate(p, r.pathOf("breaker"))
	}
	for _, cs := range r.Cases {
		for _, x := range cs.Exec {
			if host, ok := literalHost(x.URI); ok && !c.HostAllowed(host) {
				p.add(x.path+".uri", "host %q is not in allowed_hosts", host)
			}
		}
	}
	r.validateAction(p, c)
}

// validateAction checks that a rule has one action: exec, fanout, purge or
// partition_stream, and that the hosts fanout and purge send to are allowed.
func (r *Rule) validateAction(p *problems, c *Config) {
	var actions []string
	for _, k := range []string{"fanout", "purge", "partition_stream"} {
		if r.paths[k] != "" {
			actions = append(actions, k)
		}
	}
	if len(actions) > 1 {
		p.add(r.pathOf(actions[1]), "not allowed with %s: a rule has one action", actions[0])
	}
	for _, k := range []string{"fanout", "purge"} {
		if r.paths[k] == "" {
			continue
		}
		for _, own := range []string{"exec", "cases"} {
			if r.paths[own] != "" {
				p.add(r.pathOf(own), "not allowed with %s: %s is the rule's action (use match and match_not)", k, k)
			}
		}
	}
	if f := r.Fanout; f != nil && f.api != nil {
		if host, ok := literalHost(f.api.URI); ok && !c.HostAllowed(host) {
			p.add(r.pathOf("fanout")+".api", "host %q is not in allowed_hosts", host)
		}
	}
	if pu := r.Purge; pu != nil {
		for i, cache := range pu.Caches {
			if host, _ := literalHost(mustTemplate(cache)); !c.HostAllowed(host) {
				p.add(index(r.pathOf("purge")+".caches", i), "host %q is not in allowed_hosts", host)
			}
		}
	}
}

// mustTemplate is the literal template of a string without expressions.
func mustTemplate(s string) *Template {
	t, _ := ParseTemplate(s)
	return t
}

// literalHost returns the host[:port] of a URI template when it is written
// out, not computed.
func literalHost(t *Template) (string, bool) {
	if t == nil || len(t.parts) == 0 || t.parts[0].e != nil {
		return "", false
	}
	lit := t.parts[0].lit
	i := strings.Index(lit, "://")
	if i < 0 {
		return "", false
	}
	rest := lit[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		if !t.IsLiteral() {
			return "", false // the host continues into an expression
		}
		end = len(rest)
	}
	host := rest[:end]
	if at := strings.LastIndexByte(host, '@'); at >= 0 {
		host = host[at+1:]
	}
	return host, host != ""
}
