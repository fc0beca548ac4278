package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

// Every secret a test of this package uses is made by testSecret and
// carries secretMark. All output the package's tests capture (every
// changeprop process's log, and what the secret tests read from the
// endpoints, the error topic and validate) also goes to suiteOutput, and
// TestMain fails the run when suiteOutput holds the mark anywhere: a
// secret, or any piece of one longer than the mark, that reached a log.

// secretMark is in every test secret and in nothing else.
const secretMark = "s3cr3t"

// testSecret is a secret for a test: name, the mark and random hex.
func testSecret(name string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return name + "-" + secretMark + "-" + hex.EncodeToString(b)
}

// suiteOutput is everything the package's tests captured.
var suiteOutput syncBuffer

// captured tees w into suiteOutput.
func captured(w io.Writer) io.Writer { return io.MultiWriter(w, &suiteOutput) }

// leaks returns the lines of out that hold the mark.
func leaks(out string) []string {
	var found []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, secretMark) {
			found = append(found, line)
		}
	}
	return found
}

// checkSuiteLeaks is TestMain's last word: 1 when a captured line holds a
// secret.
func checkSuiteLeaks() int {
	found := leaks(suiteOutput.String())
	if len(found) == 0 {
		return 0
	}
	fmt.Fprintf(os.Stderr, "FAIL: %d captured lines hold a secret (%q):\n", len(found), secretMark)
	for i, l := range found {
		if i == 20 {
			fmt.Fprintf(os.Stderr, "... and %d more\n", len(found)-i)
			break
		}
		fmt.Fprintln(os.Stderr, l)
	}
	return 1
}

// TestLeakCheckSeesSecrets holds the check itself to account: a secret
// written to a captured log as is, inside a JSON string, or cut short is
// found, and the redactor changeprop writes its logs through removes it.
func TestLeakCheckSeesSecrets(t *testing.T) {
	s := testSecret("probe")
	withQuote := testSecret(`pro"be\`)
	for _, line := range []string{
		`{"level":"info","message":"password ` + s + `"}`,
		`{"level":"info","error":"` + jsonEscaped(withQuote) + `"}`,
		"user:" + s[:len(s)-4],
	} {
		if len(leaks(line)) != 1 {
			t.Errorf("leaks(%q) found nothing", line)
		}
	}
	var out strings.Builder
	w := redact(&out, []string{s, withQuote})
	fmt.Fprintf(w, `{"a":%q,"b":"%s","c":"x%sy"}`+"\n", s, jsonEscaped(withQuote), s)
	if got := leaks(out.String()); len(got) != 0 || strings.Count(out.String(), redacted) != 3 {
		t.Errorf("redacted line %q", out.String())
	}
}
