package main

import "testing"

func TestParseCPULine(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	got := parseCPULine("cpu  792 3 865 24112 56 7 11 138 40 2")
	want := cpuTicks{busy: 792 + 3 + 865 + 7 + 11, steal: 138, total: 792 + 3 + 865 + 24112 + 56 + 7 + 11 + 138}
	if got != want {
		t.Fatalf("parseCPULine = %+v, want %+v (guest time is in user already; steal is not busy)", got, want)
	}
	d := parseCPULine("cpu  800 3 870 24200 56 7 12 150 40 2").sub(got)
	if d != (cpuTicks{busy: 14, steal: 12, total: 114}) {
		t.Fatalf("sub = %+v", d)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5", "cpu 1 2 3"} {
		if got := parseCPULine(bad); got != (cpuTicks{}) {
			t.Errorf("parseCPULine(%q) = %+v, want zero", bad, got)
		}
	}
}
