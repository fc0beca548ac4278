package main

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"

	"changeprop/rules"
)

// redacted replaces a secret in log lines.
const redacted = rules.Redacted

// minRedacted is the shortest secret scrubbed from logs: a shorter one
// would blot out ordinary words. Use longer secrets.
const minRedacted = 4

// redactor writes to w what is written to it with every secret replaced,
// as written and as it appears inside a JSON string. zerolog writes each
// log line with one Write, so no secret is ever split between two.
type redactor struct {
	w       io.Writer
	r       *strings.Replacer
	secrets [][]byte // every form, to skip the replacer when none occurs
}

// redact wraps w; with no secret to hide it returns w itself.
func redact(w io.Writer, secrets []string) io.Writer {
	var pairs []string
	var forms [][]byte
	seen := map[string]bool{}
	for _, s := range secrets {
		if len(s) < minRedacted {
			continue
		}
		for _, f := range []string{s, jsonEscaped(s)} {
			if !seen[f] {
				seen[f] = true
				pairs = append(pairs, f, redacted)
				forms = append(forms, []byte(f))
			}
		}
	}
	if len(pairs) == 0 {
		return w
	}
	// strings.Replacer tries the pairs in order at each position:
	// secrets come longest first, so one inside another is no problem.
	return &redactor{w: w, r: strings.NewReplacer(pairs...), secrets: forms}
}

func (r *redactor) Write(p []byte) (int, error) {
	for _, s := range r.secrets {
		if bytes.Contains(p, s) {
			if _, err := io.WriteString(r.w, r.r.Replace(string(p))); err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	return r.w.Write(p)
}

// jsonEscaped is s as encoding/json and zerolog write it inside a string.
func jsonEscaped(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	out := strings.TrimSuffix(b.String(), "\n")
	return out[1 : len(out)-1]
}
