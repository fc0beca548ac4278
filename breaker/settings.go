package breaker

import "time"

// Settings configures every breaker of a Set. The zero value of each field
// means its default, so Settings{} is the service's documented defaults.
type Settings struct {
	// FailureRatio opens a closed breaker when at least this share of the
	// requests finished in the window failed. 0 means 0.5; a value above 1
	// never opens.
	FailureRatio float64
	// MinRequests is how many requests must have finished in the window
	// before FailureRatio is considered. 0 means 20.
	MinRequests int
	// Interval is the length of the rolling window of a closed breaker,
	// counted in ten buckets. 0 means 10s.
	Interval time.Duration
	// OpenTimeout is how long a breaker stays open before it lets trial
	// requests through (half-open). 0 means 30s.
	OpenTimeout time.Duration
	// HalfOpenRequests is how many trial requests a half-open breaker lets
	// through; that many successes close it, one failure opens it again.
	// 0 means 5.
	HalfOpenRequests int
	// IdleTTL evicts a closed breaker that has not been used this long and
	// has nothing in flight. Open and half-open breakers are never evicted.
	// 0 means 10m.
	IdleTTL time.Duration
	// MaxBackoff caps how far ahead Backoff (a Retry-After) may hold a
	// destination, so a bad header cannot stall it for a day. 0 means 5m.
	MaxBackoff time.Duration
}

// withDefaults returns s with every zero (or negative) field set to its
// default: the one place defaults live.
func (s Settings) withDefaults() Settings {
	if s.FailureRatio <= 0 {
		s.FailureRatio = 0.5
	}
	if s.MinRequests <= 0 {
		s.MinRequests = 20
	}
	if s.Interval <= 0 {
		s.Interval = 10 * time.Second
	}
	if s.OpenTimeout <= 0 {
		s.OpenTimeout = 30 * time.Second
	}
	if s.HalfOpenRequests <= 0 {
		s.HalfOpenRequests = 5
	}
	if s.IdleTTL <= 0 {
		s.IdleTTL = 10 * time.Minute
	}
	if s.MaxBackoff <= 0 {
		s.MaxBackoff = 5 * time.Minute
	}
	return s
}
