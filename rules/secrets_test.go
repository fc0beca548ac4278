package rules

import (
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"
)

const secretsBase = `
service_name: s
kafka:
  brokers: b
  properties: {security.protocol: SASL_SSL, sasl.mechanism: SCRAM-SHA-512, sasl.username: cp}
  %s
redis: {addr: 'r:6379', username: cp, %s}
admin: {%s}
rules:
  a:
    topic: t
    exec:
      uri: 'http://user:uri-pw-1@x/'
      headers: {authorization: 'Bearer hdr-token-1', host: '{{message.meta.domain}}'}
`

func loadSecrets(t *testing.T, kafka, redis, admin string, env map[string]string, files map[string]string) (*Config, error) {
	t.Helper()
	src := strings.NewReplacer("%s", "\x00").Replace(secretsBase)
	for _, v := range []string{kafka, redis, admin} {
		src = strings.Replace(src, "\x00", v, 1)
	}
	return LoadEnv([]byte(src), Environment{
		Getenv: func(k string) string { return env[k] },
		ReadFile: func(path string) ([]byte, error) {
			if v, ok := files[path]; ok {
				return []byte(v), nil
			}
			return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
		},
	})
}

func TestSecretsFromFilesAndEnvironment(t *testing.T) {
	files := map[string]string{"/s/kafka": "kafka-pw-file\n", "/s/redis": "redis-pw-file\r\n", "/s/token": "token-file"}
	tests := []struct {
		name                 string
		kafka, redis, admin  string
		env                  map[string]string
		sasl, redisPW, token string
	}{
		{"inline", "", "password: redis-inline", "token: token-inline", nil, "", "redis-inline", "token-inline"},
		{"files, line breaks trimmed", "sasl_password_file: /s/kafka", "password_file: /s/redis", "token_file: /s/token", nil,
			"kafka-pw-file", "redis-pw-file", "token-file"},
		{"environment wins", "sasl_password_file: /s/kafka", "password_file: /s/redis", "token: token-inline",
			map[string]string{EnvKafkaSASLPassword: "kafka-env", EnvRedisPassword: "redis-env", EnvAdminToken: "token-env"},
			"kafka-env", "redis-env", "token-env"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadSecrets(t, tt.kafka, tt.redis, tt.admin, tt.env, files)
			if err != nil {
				t.Fatal(err)
			}
			var sasl []string
			for _, l := range c.ConsumerProperties(c.Rules[0]) {
				if v, ok := l["sasl.password"]; ok {
					sasl = append(sasl, v)
				}
			}
			if tt.sasl == "" && len(sasl) != 0 || tt.sasl != "" && !slices.Equal(sasl, []string{tt.sasl}) {
				t.Errorf("consumer sasl.password layers %q, want %q", sasl, tt.sasl)
			}
			if got := c.ProducerProperties(); got[len(got)-1]["sasl.password"] != tt.sasl {
				t.Errorf("producer sasl.password %q, want %q", got[len(got)-1]["sasl.password"], tt.sasl)
			}
			if c.Redis.Password != tt.redisPW || c.Redis.Username != "cp" || c.Admin.Token != tt.token {
				t.Errorf("redis %q/%q, token %q", c.Redis.Username, c.Redis.Password, c.Admin.Token)
			}
			secrets := c.Secrets()
			for _, want := range []string{tt.sasl, tt.redisPW, tt.token, "uri-pw-1", "hdr-token-1", "Bearer hdr-token-1"} {
				if want != "" && !slices.Contains(secrets, want) {
					t.Errorf("Secrets() = %q lacks %q", secrets, want)
				}
			}
			for _, s := range secrets {
				if s == "cp" || s == "SCRAM-SHA-512" {
					t.Errorf("Secrets() holds %q, which is not a secret", s)
				}
			}
		})
	}
}

func TestSecretProblems(t *testing.T) {
	_, err := loadSecrets(t, "sasl_password_file: /s/missing", "password: redis-inline-1, password_file: /s/redis",
		"token_file: /s/empty, listen: '127.0.0.1:7200'", nil, map[string]string{"/s/redis": "redis-in-file-1", "/s/empty": "\n"})
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		"kafka.sasl_password_file: open /s/missing",
		"redis.password_file: set either password or password_file, not both",
		"admin.token_file: file /s/empty is empty",
		"admin.listen: must differ from listen",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("problems lack %q:\n%s", want, msg)
		}
	}
	for _, secret := range []string{"redis-inline-1", "redis-in-file-1"} {
		if strings.Contains(msg, secret) {
			t.Errorf("problems quote the secret %q:\n%s", secret, msg)
		}
	}
	_, err = loadSecrets(t, "sasl_password: x", "", "", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "kafka.sasl_password: unknown key") {
		t.Errorf("inline kafka.sasl_password: %v", err)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		t.Error("problems are text, not wrapped errors")
	}
}

func TestRedisTLSAndAdmin(t *testing.T) {
	c, err := loadSecrets(t, "", "tls: {ca_file: /ca.pem, server_name: redis.svc}", "listen: '127.0.0.1:7201', pprof: false", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Redis.TLS == nil || c.Redis.TLS.CAFile != "/ca.pem" || c.Redis.TLS.ServerName != "redis.svc" {
		t.Errorf("redis.tls = %+v", c.Redis.TLS)
	}
	if c.Admin.Listen != "127.0.0.1:7201" || c.Admin.Pprof || c.Admin.Token != "" {
		t.Errorf("admin = %+v", c.Admin)
	}
	if _, err := loadSecrets(t, "", "tls: {cert_file: /c.pem}", "", nil, nil); err == nil || !strings.Contains(err.Error(), "redis.tls: cert_file and key_file go together") {
		t.Errorf("cert without key: %v", err)
	}
	d := mustLoad(t, minimal)
	if !d.Admin.Pprof || d.Admin.Listen != "" || d.Limits != DefaultLimits {
		t.Errorf("defaults: admin %+v limits %+v", d.Admin, d.Limits)
	}
}

func TestLimits(t *testing.T) {
	c := mustLoad(t, minimal+"limits: {max_event_bytes: 2MiB, max_request_bytes: 3000000, max_header_bytes: 8KB, max_response_body_bytes: 10 MiB, max_response_header_bytes: 32KiB}\n")
	want := Limits{MaxEventBytes: 2 << 20, MaxRequestBytes: 3000000, MaxHeaderBytes: 8000, MaxResponseBodyBytes: 10 << 20, MaxResponseHeaderBytes: 32 << 10}
	if c.Limits != want {
		t.Errorf("limits = %+v, want %+v", c.Limits, want)
	}
	_, err := Load([]byte(minimal+"limits: {max_event_bytes: 0, max_header_bytes: lots, max_request_bytes: 2GiB, max_size: 1}\n"), nil)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"limits.max_event_bytes: size \"0\"", "limits.max_header_bytes: bad size", "limits.max_request_bytes: size \"2GiB\"", "limits.max_size: unknown key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("problems lack %q:\n%v", want, err)
		}
	}
}
