package deploytest

import (
	"os/exec"
	"testing"
)

// TestRunScript checks deploy/kind/run.sh without running it (it needs
// Docker and kind): bash parses it, and shellcheck, when installed, finds
// nothing.
func TestRunScript(t *testing.T) {
	const script = "../kind/run.sh"
	if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n %s: %v\n%s", script, err, out)
	}
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Log("shellcheck not installed; skipped")
		return
	}
	if out, err := exec.Command("shellcheck", script).CombinedOutput(); err != nil {
		t.Errorf("shellcheck %s: %v\n%s", script, err, out)
	}
}
