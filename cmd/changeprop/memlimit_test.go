package main

import (
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

// TestCgroupMemoryLimit reads the limit of v2 and v1 hierarchies, through
// /proc/self/cgroup's path or at the mount root, and finds none where the
// file says so.
func TestCgroupMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		proc   string
		files  map[string]string
		want   int64
		wantOK bool
	}{
		{"v2 in a namespace", "0::/\n", map[string]string{"memory.max": "1073741824\n"}, 1 << 30, true},
		{"v2 by path", "0::/kubepods/pod1/c1\n", map[string]string{"kubepods/pod1/c1/memory.max": "536870912\n", "memory.max": "max\n"}, 512 << 20, true},
		{"v2 unlimited", "0::/\n", map[string]string{"memory.max": "max\n"}, 0, false},
		{"v1 by path", "4:memory:/docker/abc\n0::/\n", map[string]string{"memory/docker/abc/memory.limit_in_bytes": "268435456\n"}, 256 << 20, true},
		{"v1 with controllers joined", "3:cpu,memory:/x\n", map[string]string{"memory/x/memory.limit_in_bytes": "1000\n"}, 1000, true},
		{"v1 unlimited", "4:memory:/\n", map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"}, 0, false},
		{"no cgroup files", "0::/\n", nil, 0, false},
		{"garbage", "0::/\n", map[string]string{"memory.max": "lots\n"}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"cgroup": tc.proc})
			root := filepath.Join(dir, "fs")
			writeFiles(t, root, tc.files)
			got, ok := cgroupMemoryLimit(filepath.Join(dir, "cgroup"), root)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("got %d, %v; want %d, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

// TestSetMemoryLimit: a cgroup limit becomes the runtime's soft limit, at
// memoryLimitShare of it; GOMEMLIMIT wins; without either nothing changes.
func TestSetMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"cgroup": "0::/\n", "memory.max": "1073741824\n"})
	proc := filepath.Join(dir, "cgroup")
	noEnv := func(string) string { return "" }

	limit, from := setMemoryLimit(noEnv, proc, dir)
	if want := int64(memoryLimitShare * (1 << 30)); limit != want || from != "cgroup" || debug.SetMemoryLimit(-1) != want {
		t.Errorf("cgroup: %d from %s, runtime %d; want %d", limit, from, debug.SetMemoryLimit(-1), want)
	}

	debug.SetMemoryLimit(300 << 20) // as GOMEMLIMIT=300MiB would at start
	env := func(k string) string {
		if k == "GOMEMLIMIT" {
			return "300MiB"
		}
		return ""
	}
	if limit, from := setMemoryLimit(env, proc, dir); limit != 300<<20 || from != "GOMEMLIMIT" {
		t.Errorf("GOMEMLIMIT: %d from %s", limit, from)
	}

	debug.SetMemoryLimit(math.MaxInt64) // as GOMEMLIMIT=off would
	if limit, from := setMemoryLimit(env, proc, dir); limit != 0 || from != "GOMEMLIMIT" {
		t.Errorf("GOMEMLIMIT=off: %d from %s", limit, from)
	}
	if limit, from := setMemoryLimit(noEnv, proc, filepath.Join(dir, "none")); limit != 0 || from != "none" || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Errorf("no limit: %d from %s, runtime %d", limit, from, debug.SetMemoryLimit(-1))
	}
}

// writeFiles writes each file of files (path under dir: contents).
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		f := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
