// Package testio holds I/O helpers for tests that must stay light (no
// cluster, no Redis client): WriteUntil, a hostile server's huge body.
package testio
