package deploytest

import (
	"os/exec"
	"testing"
)

// TestScripts checks the shell scripts without running them (deploy's need
// Docker, and kind; .ci's are what make test and CI run): bash parses them,
// and shellcheck, when installed, finds nothing.
func TestScripts(t *testing.T) {
	for _, script := range []string{"../kind/run.sh", "../docker/smoke.sh", "../../.ci/run", "../../.ci/vulncheck.sh", "../../.ci/fuzz.sh"} {
		if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
			t.Fatalf("bash -n %s: %v\n%s", script, err, out)
		}
		if _, err := exec.LookPath("shellcheck"); err != nil {
			t.Log("shellcheck not installed; skipped")
			continue
		}
		if out, err := exec.Command("shellcheck", script).CombinedOutput(); err != nil {
			t.Errorf("shellcheck %s: %v\n%s", script, err, out)
		}
	}
}
