package kafka

/*
#include <malloc.h>

// arenaMax caps glibc's malloc arenas. librdkafka's threads (several per
// client, and there is a client per rule) would otherwise each get an
// arena of their own, up to eight per core, and freed memory stays in
// them.
static void arenaMax(int n) {
#ifdef M_ARENA_MAX
	mallopt(M_ARENA_MAX, n);
#endif
}
*/
import "C"

import "os"

// mallocArenas is the number of malloc arenas the C heap may use: after a
// 30-rule drain the process kept 220 MB resident with glibc's default,
// 167 MB with 2 (docs/benchmarks.md).
const mallocArenas = 2

func init() {
	// MALLOC_ARENA_MAX in the environment says otherwise.
	if _, set := os.LookupEnv("MALLOC_ARENA_MAX"); !set {
		C.arenaMax(mallocArenas)
	}
}
