// Package partition chooses partitions and, later, lanes: the
// repartitioner's key -> partition mapping now, per-partition and per-key
// concurrency pools and rate limiters as they arrive.
//
// It imports nothing from changeprop and builds without cgo.
//
//	p := partition.ForKey([]byte("enwiki"), 8) // stable across processes and restarts
package partition
