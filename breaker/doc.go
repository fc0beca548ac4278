// Package breaker will hold changeprop's per-destination circuit breakers
// (sony/gobreaker, one two-step breaker per scheme://host:port) and their
// state collector. Until then every destination is always allowed: package
// dispatch sends without consulting a breaker.
package breaker
