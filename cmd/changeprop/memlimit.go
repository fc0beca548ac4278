package main

import (
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
)

// memoryLimitShare is the share of the cgroup's memory limit given to the
// Go runtime as its soft limit (debug.SetMemoryLimit) when GOMEMLIMIT is
// not set. The rest is for what Go does not count: librdkafka's queues
// and buffers (the 8 MB prefetch budget and each client's own), its
// threads' stacks, and the C side of cgo. Near the soft limit the
// collector runs more often instead of letting the heap double, so a
// burst (a backlog, a rebalance) costs CPU rather than an OOM kill.
const memoryLimitShare = 0.75

// unlimitedV1 is where cgroup v1 reports "no limit": memory.limit_in_bytes
// holds the largest page-aligned int64 then.
const unlimitedV1 = 1 << 62

// cgroupMemoryLimit returns the memory limit of the process's cgroup:
// cgroup v2's memory.max or v1's memory.limit_in_bytes, found through
// /proc/self/cgroup (proc) under the cgroup mount root, then at the root
// itself (a container with its own cgroup namespace sees its cgroup
// there). ok is false when there is no limit or no cgroup file.
func cgroupMemoryLimit(proc, root string) (limit int64, ok bool) {
	var files []string
	b, _ := os.ReadFile(proc)
	for line := range strings.Lines(string(b)) {
		// hierarchy-ID:controllers:path; v2 is "0::path".
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		switch {
		case len(parts) != 3:
		case parts[0] == "0" && parts[1] == "":
			files = append(files, filepath.Join(root, parts[2], "memory.max"))
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			files = append(files, filepath.Join(root, "memory", parts[2], "memory.limit_in_bytes"))
		}
	}
	files = append(files, filepath.Join(root, "memory.max"), filepath.Join(root, "memory", "memory.limit_in_bytes"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 || n >= unlimitedV1 {
			return 0, false
		}
		return n, true
	}
	return 0, false
}

// setMemoryLimit gives the Go runtime a soft memory limit of
// memoryLimitShare of the cgroup's limit, unless GOMEMLIMIT (getenv) sets
// one already or there is no cgroup limit. It returns the limit in force
// (0: none) and where it came from, for the start log.
func setMemoryLimit(getenv func(string) string, proc, root string) (limit int64, from string) {
	if getenv("GOMEMLIMIT") != "" {
		if limit = debug.SetMemoryLimit(-1); limit == math.MaxInt64 { // GOMEMLIMIT=off
			limit = 0
		}
		return limit, "GOMEMLIMIT"
	}
	cg, ok := cgroupMemoryLimit(proc, root)
	if !ok {
		return 0, "none"
	}
	limit = int64(float64(cg) * memoryLimitShare)
	debug.SetMemoryLimit(limit)
	return limit, "cgroup"
}
