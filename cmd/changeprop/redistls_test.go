package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"changeprop/internal/testkit"
	"changeprop/rules"
)

func TestRedisTLSConfig(t *testing.T) {
	dir := t.TempDir()
	ca, err := testkit.NewCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := redisTLSConfig(nil, "r:6379"); c != nil || err != nil {
		t.Errorf("no tls section: %v, %v", c, err)
	}
	c, err := redisTLSConfig(&rules.RedisTLS{CAFile: ca.CAFile, CertFile: ca.CertFile, KeyFile: ca.KeyFile}, "redis.svc:6380")
	if err != nil || c.ServerName != "redis.svc" || c.RootCAs == nil || len(c.Certificates) != 1 {
		t.Errorf("config %+v, %v", c, err)
	}
	for _, tt := range []struct {
		tls  rules.RedisTLS
		want string
	}{
		{rules.RedisTLS{CAFile: filepath.Join(dir, "missing.pem")}, "redis.tls.ca_file: open"},
		{rules.RedisTLS{CAFile: notPEM}, "redis.tls.ca_file: no PEM certificate"},
		{rules.RedisTLS{CertFile: ca.CertFile, KeyFile: notPEM}, "redis.tls.cert_file, key_file"},
	} {
		if _, err := redisTLSConfig(&tt.tls, "r:1"); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.tls, err, tt.want)
		}
	}
}
