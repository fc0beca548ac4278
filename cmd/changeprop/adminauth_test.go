package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"changeprop/rules"
)

// TestAdminGuard holds the endpoints to the admin settings: which
// listener serves what, and what a mutation or pprof answers with no
// token, a wrong one and the right one. The service has no rules, so a
// mutation that gets through answers 404 {"error":"no dispatch rule x"};
// notServed is the 404 of a listener without the endpoint.
func TestAdminGuard(t *testing.T) {
	const token = "guard-token-1234"
	type call struct {
		admin        bool // on admin.listen's handler
		method, path string
		token        string
		want         int
	}
	pause := "/v1/rules/x/pause"
	const notServed = -404 // 404 "page not found": the listener has no such endpoint
	tests := []struct {
		name  string
		admin string // the config's admin section
		calls []call
	}{
		{"no token, one listener: mutations off, pprof open", "{}", []call{
			{false, "POST", pause, "", 403},
			{false, "POST", "/v1/events", token, 403},
			{false, "GET", "/debug/pprof/cmdline", "", 200},
			{false, "GET", "/v1/rules", "", 200},
		}},
		{"token", "{token: " + token + "}", []call{
			{false, "POST", pause, "", 401},
			{false, "POST", pause, "wrong-" + token, 401},
			{false, "POST", pause, token + "x", 401},
			{false, "POST", pause, token, 404},
			{false, "GET", "/debug/pprof/cmdline", "", 401},
			{false, "GET", "/debug/pprof/cmdline", token, 200},
			{false, "GET", "/v1/rules", "", 200},
			{false, "GET", "/metrics", "", 200},
		}},
		{"separate listener, no token", "{listen: '127.0.0.1:7299'}", []call{
			{false, "POST", pause, "", notServed},
			{false, "GET", "/debug/pprof/cmdline", "", notServed},
			{false, "GET", "/v1/rules", "", 200},
			{true, "POST", pause, "", 404},
			{true, "GET", "/debug/pprof/cmdline", "", 200},
			{true, "GET", "/v1/rules", "", 200},
		}},
		{"separate listener and token", "{listen: '127.0.0.1:7299', token: " + token + "}", []call{
			{false, "POST", pause, token, notServed},
			{true, "POST", pause, "", 401},
			{true, "POST", pause, token, 404},
		}},
		{"pprof off", "{token: " + token + ", pprof: false}", []call{
			{false, "GET", "/debug/pprof/cmdline", token, notServed},
			{false, "GET", "/debug/pprof/", token, notServed},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := rules.Load([]byte(`
service_name: s
kafka: {brokers: b}
admin: `+tt.admin+`
rules:
  r: {topic: t}
`), nil)
			if err != nil {
				t.Fatal(err)
			}
			mainH, adminH := adminHandlers(&service{cfg: cfg}, prometheus.NewRegistry(), zerolog.Nop())
			if (adminH != nil) != (cfg.Admin.Listen != "") {
				t.Fatalf("admin handler %v with admin.listen %q", adminH != nil, cfg.Admin.Listen)
			}
			for _, c := range tt.calls {
				h := mainH
				if c.admin {
					h = adminH
				}
				req := httptest.NewRequest(c.method, c.path, strings.NewReader(""))
				if c.token != "" {
					req.Header.Set("Authorization", "Bearer "+c.token)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				got := rec.Code
				if got == 404 && strings.Contains(rec.Body.String(), "page not found") {
					got = notServed
				}
				if got != c.want {
					t.Errorf("%s %s (admin listener %v, token %q) = %d %s, want %d",
						c.method, c.path, c.admin, c.token, rec.Code, rec.Body.String(), c.want)
				}
				if rec.Code == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
					t.Errorf("%s %s: 401 without WWW-Authenticate", c.method, c.path)
				}
			}
		})
	}
}
