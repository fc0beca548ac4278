package rules

import (
	"fmt"
	"net"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is a loaded, compiled and validated configuration file.
// It is immutable after Load and safe for concurrent use.
type Config struct {
	ServiceName     string        // service_name: consumer groups are <service_name>-<rule>
	DC              string        // dc: optional topic prefix
	ConsumeDC       string        // consume_dc: prefix of the topics rules read; default DC
	ProduceDC       string        // produce_dc: prefix of every topic changeprop writes (retry, error, produced events); default DC
	Kafka           Kafka         // kafka
	Redis           *Redis        // redis; nil when absent
	Listen          string        // listen; default "127.0.0.1:7200"
	UserAgent       string        // user_agent; default "ChangePropagation-JobQueue/Go"
	AllowedHosts    []string      // allowed_hosts; empty allows every host
	ShutdownTimeout time.Duration // shutdown_timeout; default 30s
	Breaker         Breaker       // breaker: defaults of every rule's circuit breakers
	Admin           Admin         // admin: the token and listener of the mutating endpoints
	Limits          Limits        // limits: bounds on events, requests and responses
	Rules           []*Rule       // rules, in file order
}

// Kafka holds the Kafka settings.
type Kafka struct {
	Brokers        string            // brokers; required (after the environment override)
	Properties     map[string]string // properties: librdkafka properties for every client (TLS, SASL)
	Consumer       map[string]string // librdkafka properties for every consumer
	Producer       map[string]string // librdkafka properties for the producer
	CommitInterval time.Duration     // commit_interval; default 1s
	ClientLogs     string            // client_logs: ClientLogsForward (default) or ClientLogsStderr

	// secrets is the last layer of every client's properties: sasl.password
	// from sasl_password_file or the environment.
	secrets map[string]string
}

// The values of kafka.client_logs: where librdkafka's log lines go.
const (
	// ClientLogsForward writes them to changeprop's log, each client's
	// through a goroutine of the binding that waits in librdkafka for
	// them (100 ms at a time, for as long as the client lives).
	ClientLogsForward = "forward"
	// ClientLogsStderr leaves them to librdkafka, which prints its own
	// lines on standard error: no goroutine per client, and a third to a
	// half less CPU for an idle 30-rule process (docs/benchmarks.md).
	ClientLogsStderr = "stderr"
)

// Redis holds the dedupe store settings.
type Redis struct {
	Addr     string    // addr; required
	Prefix   string    // prefix; default "CPJQ"
	Username string    // username: an ACL user; empty means the default user
	Password string    // password, password_file or CHANGEPROP_REDIS_PASSWORD
	DB       int       // db
	TLS      *RedisTLS // tls; nil means plain TCP
}

// Breaker holds circuit-breaker settings (one breaker per destination).
type Breaker struct {
	FailureRatio     float64       // failure_ratio: open when this share of requests failed...; default 0.5
	MinRequests      int           // min_requests: ...and at least this many were made; default 20
	Interval         time.Duration // interval: counting window while closed; default 10s (integer = ms)
	OpenTimeout      time.Duration // open_timeout: time open before half-open; default 30s (integer = ms)
	HalfOpenRequests int           // half_open_requests: trial requests when half-open; default 5
	// Key (a rule's breaker.key only) is a template naming the breaker an
	// event's requests count against, e.g. '{{message.database}}'; nil
	// means one breaker per destination (scheme://host:port).
	Key *Template
}

// Defaults of the configuration file.
const (
	DefaultListen      = "127.0.0.1:7200"
	DefaultUserAgent   = "ChangePropagation-JobQueue/Go"
	DefaultRedisPrefix = "CPJQ"
)

// DefaultBreaker is the breaker setting used for keys the file leaves out.
var DefaultBreaker = Breaker{
	FailureRatio:     0.5,
	MinRequests:      20,
	Interval:         10 * time.Second,
	OpenTimeout:      30 * time.Second,
	HalfOpenRequests: 5,
}

// Environment variables that override the file.
const (
	EnvKafkaBrokers = "CHANGEPROP_KAFKA_BROKERS"
	EnvRedisAddr    = "CHANGEPROP_REDIS_ADDR"
)

// Load decodes a YAML configuration strictly (unknown keys are errors at
// every level), applies defaults, compiles matchers and templates, and
// validates. On failure the error joins (errors.Join) every problem, each
// formatted "path: problem", e.g. "rules.refreshLinks.exec[0].uri: required".
//
// env may be nil; otherwise non-empty env(EnvKafkaBrokers) and
// env(EnvRedisAddr) override kafka.brokers and redis.addr (the latter also
// when the file has no redis section). Load reads no secret file; LoadEnv
// does.
func Load(data []byte, env func(string) string) (*Config, error) {
	return LoadEnv(data, Environment{Getenv: env})
}

// LoadEnv is Load with the environment's variables and secret files (see
// Environment). Problems never quote a secret.
func LoadEnv(data []byte, env Environment) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := checkAliases(&doc); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	p := &problems{}
	var root *yaml.Node
	if len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	if isNull(root) {
		p.add("config", "empty")
		return nil, p.err()
	}
	c := decodeConfig(p, root, env)
	c.validate(p)
	if err := p.err(); err != nil {
		return nil, err
	}
	return c, nil
}

func decodeConfig(p *problems, root *yaml.Node, e Environment) *Config {
	c := &Config{
		Listen:          DefaultListen,
		UserAgent:       DefaultUserAgent,
		ShutdownTimeout: 30 * time.Second,
		Breaker:         DefaultBreaker,
		Kafka:           Kafka{CommitInterval: time.Second, ClientLogs: ClientLogsForward},
		Admin:           Admin{Pprof: true},
		Limits:          DefaultLimits,
	}
	env := e.Getenv
	o := p.object("", root)
	if n, path := o.get("service_name"); n != nil {
		if v, ok := p.str(n, path); ok {
			c.ServiceName = v
		}
	}
	if n, path := o.get("dc"); !isNull(n) {
		if v, ok := p.str(n, path); ok {
			c.DC = v
		}
	}
	c.ConsumeDC, c.ProduceDC = c.DC, c.DC
	if n, path := o.get("consume_dc"); !isNull(n) {
		if v, ok := p.str(n, path); ok {
			c.ConsumeDC = v
		}
	}
	if n, path := o.get("produce_dc"); !isNull(n) {
		if v, ok := p.str(n, path); ok {
			c.ProduceDC = v
		}
	}
	if n, path := o.get("kafka"); n != nil {
		ko := p.object(path, n)
		if n, path := ko.get("brokers"); n != nil {
			if list, ok := p.strings(n, path); ok {
				c.Kafka.Brokers = strings.Join(list, ",")
			}
		}
		if n, path := ko.get("properties"); n != nil {
			c.Kafka.Properties = p.props(n, path)
		}
		if n, path := ko.get("consumer"); n != nil {
			c.Kafka.Consumer = p.props(n, path)
		}
		if n, path := ko.get("producer"); n != nil {
			c.Kafka.Producer = p.props(n, path)
		}
		if n, path := ko.get("commit_interval"); n != nil {
			if v, ok := p.duration(n, path, time.Millisecond); ok {
				c.Kafka.CommitInterval = v
			}
		}
		if n, path := ko.get("client_logs"); n != nil {
			if v, ok := p.str(n, path); ok {
				if v != ClientLogsForward && v != ClientLogsStderr {
					p.add(path, "%q: want %q or %q", v, ClientLogsForward, ClientLogsStderr)
				} else {
					c.Kafka.ClientLogs = v
				}
			}
		}
		pw := p.decodeSecret(ko, "sasl_password")
		if pw.inline != "" {
			p.add(pw.inlinePath, "unknown key (write sasl.password under kafka.properties, or use sasl_password_file)")
		}
		if v := pw.resolve(p, e, EnvKafkaSASLPassword); v != "" {
			c.Kafka.secrets = map[string]string{"sasl.password": v}
		}
		ko.finish()
	} else if v := (secretSource{}).resolve(p, e, EnvKafkaSASLPassword); v != "" {
		c.Kafka.secrets = map[string]string{"sasl.password": v}
	}
	if n, path := o.get("redis"); !isNull(n) {
		c.Redis = p.decodeRedis(n, path, e)
	}
	if n, path := o.get("listen"); n != nil {
		if v, ok := p.str(n, path); ok {
			c.Listen = v
		}
	}
	if n, path := o.get("user_agent"); n != nil {
		if v, ok := p.str(n, path); ok {
			c.UserAgent = v
		}
	}
	if n, path := o.get("allowed_hosts"); !isNull(n) {
		if v, ok := p.strings(n, path); ok {
			c.AllowedHosts = v
		}
	}
	if n, path := o.get("shutdown_timeout"); n != nil {
		if v, ok := p.duration(n, path, time.Millisecond); ok {
			c.ShutdownTimeout = v
		}
	}
	if n, path := o.get("breaker"); n != nil {
		c.Breaker = p.breaker(n, path, DefaultBreaker, nil)
	}
	if n, path := o.get("admin"); n != nil {
		c.Admin = p.decodeAdmin(n, path, e)
	} else {
		c.Admin.Token = (secretSource{}).resolve(p, e, EnvAdminToken)
	}
	if n, path := o.get("limits"); n != nil {
		c.Limits = p.decodeLimits(n, path)
	}
	if env != nil {
		if v := env(EnvKafkaBrokers); v != "" {
			c.Kafka.Brokers = v
		}
		if v := env(EnvRedisAddr); v != "" {
			if c.Redis == nil {
				c.Redis = &Redis{Prefix: DefaultRedisPrefix}
				c.Redis.Password = (secretSource{}).resolve(p, e, EnvRedisPassword)
			}
			c.Redis.Addr = v
		}
	}
	dn, _ := o.get("defaults")
	defaults := p.object("defaults", dn)
	rn, rpath := o.get("rules")
	c.Rules = p.decodeRules(c, resolve(rn), rpath, defaults)
	o.finish()
	return c
}

// breaker decodes breaker settings over base; key is allowed only in a
// rule's settings (r != nil).
func (p *problems) breaker(n *yaml.Node, path string, base Breaker, r *Rule) Breaker {
	b := base
	o := p.object(path, n)
	if kn, kpath := o.get("key"); kn != nil {
		if r == nil {
			p.add(kpath, "only a rule's breaker may set a key")
		} else {
			b.Key = p.template(r, kn, kpath)
		}
	}
	if n, path := o.get("failure_ratio"); n != nil {
		if v, ok := p.float(n, path); ok {
			b.FailureRatio = v
		}
	}
	if n, path := o.get("min_requests"); n != nil {
		if v, ok := p.integer(n, path); ok {
			b.MinRequests = v
		}
	}
	if n, path := o.get("interval"); n != nil {
		if v, ok := p.duration(n, path, time.Millisecond); ok {
			b.Interval = v
		}
	}
	if n, path := o.get("open_timeout"); n != nil {
		if v, ok := p.duration(n, path, time.Millisecond); ok {
			b.OpenTimeout = v
		}
	}
	if n, path := o.get("half_open_requests"); n != nil {
		if v, ok := p.integer(n, path); ok {
			b.HalfOpenRequests = v
		}
	}
	o.finish()
	return b
}

// decodeRules decodes the rules mapping in file order.
func (p *problems) decodeRules(c *Config, n *yaml.Node, path string, defaults *object) []*Rule {
	if isNull(n) {
		p.add(path, "at least one rule is required")
		return nil
	}
	o := p.object(path, n)
	var rules []*Rule
	for _, e := range o.entries {
		e.used = true
		if r := p.decodeRule(c, e.key, e.node, e.path, defaults); r != nil {
			rules = append(rules, r)
		}
	}
	if len(o.entries) == 0 {
		p.add(path, "at least one rule is required")
	}
	return rules
}

// Topic returns the Kafka topic changeprop writes stream name to: with the
// produce_dc prefix ("eqiad.resource_change"), or name itself when
// ProduceDC is "".
func (c *Config) Topic(name string) string { return prefixed(c.ProduceDC, name) }

// ConsumeTopic returns the Kafka topic rules read for the topic name in
// rules: with the consume_dc prefix ("codfw.mediawiki.job.X"), or name
// itself when ConsumeDC is "".
func (c *Config) ConsumeTopic(name string) string { return prefixed(c.ConsumeDC, name) }

func prefixed(dc, name string) string {
	if dc == "" {
		return name
	}
	return dc + "." + name
}

// TopicName is the inverse of ConsumeTopic: the name in rules of a Kafka
// topic, without the consume_dc prefix. Topics without the prefix are
// returned unchanged.
func (c *Config) TopicName(topic string) string {
	if c.ConsumeDC == "" {
		return topic
	}
	if name, ok := strings.CutPrefix(topic, c.ConsumeDC+"."); ok {
		return name
	}
	return topic
}

// Rule returns the rule with this name, or nil.
func (c *Config) Rule(name string) *Rule {
	for _, r := range c.Rules {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// HostAllowed reports whether an exec URI may target hostport ("host" or
// "host:port"). Every host is allowed when AllowedHosts is empty. A pattern
// is host[:port] where host may contain * wildcards ("*.svc.eqiad.wmnet");
// a pattern without a port allows every port.
func (c *Config) HostAllowed(hostport string) bool {
	if len(c.AllowedHosts) == 0 {
		return true
	}
	host, port := splitHostPort(hostport)
	host = strings.ToLower(host)
	for _, pat := range c.AllowedHosts {
		phost, pport := splitHostPort(pat)
		if pport != "" && pport != port {
			continue
		}
		if glob(strings.ToLower(phost), host) {
			return true
		}
	}
	return false
}

// splitHostPort is net.SplitHostPort with a host and no port for what
// does not split: "host", a bare IPv6 address. Checked on every request,
// it makes no error for a name without a port.
func splitHostPort(hostport string) (host, port string) {
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 || (hostport[0] != '[' && strings.IndexByte(hostport[:i], ':') >= 0) {
		return hostport, "" // no port, or an IPv6 address without brackets
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport, ""
	}
	return host, port
}

// glob matches s against a pattern in which * stands for any run of
// characters.
func glob(pattern, s string) bool {
	star := strings.IndexByte(pattern, '*')
	if star < 0 {
		return pattern == s
	}
	prefix, rest := pattern[:star], pattern[star+1:]
	if !strings.HasPrefix(s, prefix) {
		return false
	}
	s = s[len(prefix):]
	for i := 0; i <= len(s); i++ {
		if glob(rest, s[i:]) {
			return true
		}
	}
	return false
}
