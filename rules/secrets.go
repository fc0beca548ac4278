package rules

import (
	"net/url"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Environment is what Load may read besides the file itself. Either field
// may be nil: without Getenv no variable overrides the file, without
// ReadFile no secret file is read (its secret stays empty), which suits
// checks of a configuration's shape.
type Environment struct {
	Getenv   func(string) string
	ReadFile func(path string) ([]byte, error)
}

// Environment variables holding secrets. Each one, when set and non-empty,
// wins over the file's inline value and its *_file key.
const (
	EnvRedisPassword     = "CHANGEPROP_REDIS_PASSWORD"
	EnvKafkaSASLPassword = "CHANGEPROP_KAFKA_SASL_PASSWORD"
	EnvAdminToken        = "CHANGEPROP_ADMIN_TOKEN"
)

// RedisTLS is redis.tls: present means the connection uses TLS.
type RedisTLS struct {
	CAFile             string // ca_file: PEM roots; empty means the system's
	CertFile           string // cert_file: client certificate (with key_file)
	KeyFile            string // key_file
	ServerName         string // server_name: name checked in the server's certificate; default the host of addr
	InsecureSkipVerify bool   // insecure_skip_verify: accept any certificate (tests only)
}

// Admin is the admin section: who may change the running service.
type Admin struct {
	// Token is the bearer token that POST /v1/... requires (admin.token,
	// admin.token_file or CHANGEPROP_ADMIN_TOKEN); empty means none.
	Token string
	// Listen, when set, is a second listener that alone serves the
	// mutations (and pprof); the main listener then serves reads only.
	Listen string
	// Pprof serves /debug/pprof/ (default true).
	Pprof bool
}

// secretSource is a secret that may be written inline, in a file, or in an
// environment variable.
type secretSource struct {
	inline, inlinePath string
	file, filePath     string
}

// setStr decodes the string under key into dst when o has the key.
func (p *problems) setStr(o *object, key string, dst *string) {
	if n, path := o.get(key); n != nil {
		if v, ok := p.str(n, path); ok {
			*dst = v
		}
	}
}

// decodeSecret reads key and key_file from o.
func (p *problems) decodeSecret(o *object, key string) secretSource {
	s := secretSource{inlinePath: join(o.path, key), filePath: join(o.path, key+"_file")}
	p.setStr(o, key, &s.inline)
	p.setStr(o, key+"_file", &s.file)
	return s
}

// resolve returns the secret: the environment variable when it is set,
// else the file's content without its trailing line break, else the inline
// value. Setting both the inline value and the file is a problem.
func (s secretSource) resolve(p *problems, e Environment, env string) string {
	if s.inline != "" && s.file != "" {
		p.add(s.filePath, "set either %s or %s, not both", lastKey(s.inlinePath), lastKey(s.filePath))
	}
	if e.Getenv != nil && env != "" {
		if v := e.Getenv(env); v != "" {
			return v
		}
	}
	if s.file != "" {
		if e.ReadFile == nil {
			return ""
		}
		b, err := e.ReadFile(s.file)
		if err != nil {
			// The error names the file, never its content.
			p.add(s.filePath, "%v", err)
			return ""
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			p.add(s.filePath, "file %s is empty", s.file)
		}
		return v
	}
	return s.inline
}

func lastKey(path string) string { return path[strings.LastIndexByte(path, '.')+1:] }

// decodeRedis decodes the redis section.
func (p *problems) decodeRedis(n *yaml.Node, path string, e Environment) *Redis {
	r := &Redis{Prefix: DefaultRedisPrefix}
	o := p.object(path, n)
	p.setStr(o, "addr", &r.Addr)
	p.setStr(o, "prefix", &r.Prefix)
	p.setStr(o, "username", &r.Username)
	r.Password = p.decodeSecret(o, "password").resolve(p, e, EnvRedisPassword)
	if n, path := o.get("db"); n != nil {
		if v, ok := p.integer(n, path); ok {
			r.DB = v
		}
	}
	if n, path := o.get("tls"); n != nil {
		r.TLS = p.decodeRedisTLS(n, path)
	}
	o.finish()
	return r
}

func (p *problems) decodeRedisTLS(n *yaml.Node, path string) *RedisTLS {
	t := &RedisTLS{}
	o := p.object(path, n)
	p.setStr(o, "ca_file", &t.CAFile)
	p.setStr(o, "cert_file", &t.CertFile)
	p.setStr(o, "key_file", &t.KeyFile)
	p.setStr(o, "server_name", &t.ServerName)
	if n, path := o.get("insecure_skip_verify"); n != nil {
		t.InsecureSkipVerify, _ = p.boolean(n, path)
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		p.add(path, "cert_file and key_file go together")
	}
	o.finish()
	return t
}

// decodeAdmin decodes the admin section.
func (p *problems) decodeAdmin(n *yaml.Node, path string, e Environment) Admin {
	a := Admin{Pprof: true}
	o := p.object(path, n)
	a.Token = p.decodeSecret(o, "token").resolve(p, e, EnvAdminToken)
	p.setStr(o, "listen", &a.Listen)
	if n, path := o.get("pprof"); n != nil {
		if v, ok := p.boolean(n, path); ok {
			a.Pprof = v
		}
	}
	o.finish()
	return a
}

// ConsumerProperties are the librdkafka property layers of rule r's
// consumers (r may be nil for a consumer of no rule), in order: the
// binding's log setting (kafka.client_logs), those of every client,
// kafka.consumer, the rule's consumer, then the secrets read from files
// and the environment.
func (c *Config) ConsumerProperties(r *Rule) []map[string]string {
	layers := []map[string]string{c.Kafka.logs(), c.Kafka.Properties, c.Kafka.Consumer}
	if r != nil {
		layers = append(layers, r.Consumer)
	}
	return append(layers, c.Kafka.secrets)
}

// ProducerProperties are the producer's librdkafka property layers, in
// order: the binding's log setting, those of every client, kafka.producer,
// then the secrets.
func (c *Config) ProducerProperties() []map[string]string {
	return []map[string]string{c.Kafka.logs(), c.Kafka.Properties, c.Kafka.Producer, c.Kafka.secrets}
}

// LogsChannelProperty is the binding's own property (confluent-kafka-go's,
// not librdkafka's) that forwards a client's log lines to a Go channel;
// "false" in a client's layers leaves them to librdkafka's own printer.
const LogsChannelProperty = "go.logs.channel.enable"

// logs is the property layer of kafka.client_logs: nil when forwarded.
func (k *Kafka) logs() map[string]string {
	if k.ClientLogs == ClientLogsStderr {
		return map[string]string{LogsChannelProperty: "false"}
	}
	return nil
}

// secretProperty reports whether a librdkafka property holds a secret.
func secretProperty(name string) bool {
	name = strings.ToLower(name)
	return strings.Contains(name, "password") || strings.Contains(name, "secret") ||
		strings.Contains(name, "jaas") || strings.HasSuffix(name, ".pem") && strings.Contains(name, "key") ||
		strings.Contains(name, "oauthbearer.config") || strings.Contains(name, "token")
}

// Redacted stands in for a secret in logs, answers and error events.
const Redacted = "[redacted]"

// credentialHeaders name the headers that carry credentials, asked for or
// handed out: a rule's literal values of them are secrets, and error
// events leave their values out of the responses they keep.
var credentialHeaders = map[string]bool{
	"authorization": true, "proxy-authorization": true, "cookie": true, "set-cookie": true,
	"www-authenticate": true, "proxy-authenticate": true, "x-api-key": true, "x-auth-token": true,
}

// CredentialHeader reports whether the header named name (lower case)
// carries credentials.
func CredentialHeader(name string) bool { return credentialHeaders[name] }

// Secrets returns every secret the configuration holds, longest first:
// Kafka passwords and keys (from any properties layer, files or the
// environment), the Redis password, the admin token, literal
// authorization-like request headers and passwords written in exec URIs.
// Logs and answers are scrubbed of them.
func (c *Config) Secrets() []string {
	seen := map[string]bool{}
	add := func(s string) {
		if s != "" {
			seen[s] = true
		}
	}
	layers := append(c.ProducerProperties(), c.Kafka.Consumer)
	for _, r := range c.Rules {
		layers = append(layers, r.Consumer)
	}
	for _, l := range layers {
		for k, v := range l {
			if secretProperty(k) {
				add(v)
			}
		}
	}
	if c.Redis != nil {
		add(c.Redis.Password)
	}
	add(c.Admin.Token)
	for _, r := range c.Rules {
		for _, cs := range r.Cases {
			for _, x := range cs.Exec {
				if x.URI != nil && x.URI.IsLiteral() {
					if u, err := url.Parse(x.URI.String()); err == nil && u.User != nil {
						pw, _ := u.User.Password()
						add(pw)
					}
				}
				for _, h := range x.headers {
					if credentialHeaders[h.name] && h.t.IsLiteral() {
						add(h.t.String())
						if _, cred, ok := strings.Cut(h.t.String(), " "); ok {
							add(cred) // "Bearer <token>": the token alone too
						}
					}
				}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) || len(out[i]) == len(out[j]) && out[i] < out[j] })
	return out
}
