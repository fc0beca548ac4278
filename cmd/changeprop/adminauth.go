package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/rs/zerolog"

	"changeprop/rules"
)

// guard decides who may call the mutating endpoints (POST /v1/...) and
// pprof (admin section of the config):
//   - with admin.token, a request needs "Authorization: Bearer <token>";
//   - without one, mutations are served only on admin.listen (the address
//     is the protection) and refused on the main listener;
//   - pprof is open without a token, like the read endpoints.
type guard struct {
	token    [sha256.Size]byte
	hasToken bool
	separate bool // served on admin.listen
	log      zerolog.Logger
}

func newGuard(a rules.Admin, separate bool, log zerolog.Logger) guard {
	g := guard{hasToken: a.Token != "", separate: separate, log: log}
	if g.hasToken {
		g.token = sha256.Sum256([]byte(a.Token))
	}
	return g
}

// authorized reports whether r carries the token. The comparison takes the
// same time whatever the token presented.
func (g guard) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
	return subtle.ConstantTimeCompare(sum[:], g.token[:]) == 1
}

// mutation wraps a mutating endpoint.
func (g guard) mutation(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch {
		case g.hasToken && !g.authorized(r):
			g.refuse(w, r, http.StatusUnauthorized, "a bearer token is required (admin.token)")
		case !g.hasToken && !g.separate:
			g.refuse(w, r, http.StatusForbidden, "mutations are off: set admin.token (or "+rules.EnvAdminToken+") or admin.listen")
		default:
			h(w, r)
		}
	}
}

// pprof wraps a profiling endpoint: behind the token when there is one.
func (g guard) pprof(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if g.hasToken && !g.authorized(r) {
			g.refuse(w, r, http.StatusUnauthorized, "a bearer token is required (admin.token)")
			return
		}
		h(w, r)
	}
}

func (g guard) refuse(w http.ResponseWriter, r *http.Request, status int, why string) {
	// Never the Authorization header: it may hold a near miss.
	g.log.Warn().Str("method", r.Method).Str("path", r.URL.Path).Str("remote", r.RemoteAddr).Int("status", status).Msg("admin request refused")
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="changeprop"`)
	}
	writeJSON(w, status, map[string]string{"error": why})
}
