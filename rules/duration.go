package rules

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// parseDuration reads a YAML scalar as a duration. Integers and floats are
// counted in unit (milliseconds for retry_delay and timeout, seconds for
// reenqueue_delay and the claim TTLs, as the Node service did); strings are
// Go durations ("60s", "7m"). Negative values are errors.
func parseDuration(tag, value string, unit time.Duration) (time.Duration, error) {
	var d time.Duration
	switch tag {
	case "!!int":
		n, err := strconv.ParseInt(value, 0, 64)
		if err != nil || n > math.MaxInt64/int64(unit) || n < math.MinInt64/int64(unit) {
			return 0, fmt.Errorf("bad duration %q", value)
		}
		d = time.Duration(n) * unit
	case "!!float":
		f, err := strconv.ParseFloat(value, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f*float64(unit)) > math.MaxInt64 {
			return 0, fmt.Errorf("bad duration %q", value)
		}
		d = time.Duration(f * float64(unit))
	default:
		var err error
		d, err = time.ParseDuration(value)
		if err != nil {
			return 0, fmt.Errorf("bad duration %q: want an integer (%s) or a duration such as \"60s\"", value, unitName(unit))
		}
	}
	if d < 0 {
		return 0, fmt.Errorf("must not be negative, got %q", value)
	}
	return d, nil
}

func unitName(unit time.Duration) string {
	switch unit {
	case time.Millisecond:
		return "milliseconds"
	case time.Second:
		return "seconds"
	}
	return unit.String()
}
