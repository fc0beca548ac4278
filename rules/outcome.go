package rules

import (
	"math"
	"strings"
	"time"
)

// Outcome is what became of one attempt at an event.
type Outcome int

// The outcomes, as rules.md "Outcomes" defines them.
const (
	// Done: the request succeeded (2xx, 3xx).
	Done Outcome = iota
	// Ignored: the response matched the rule's ignore condition; the event
	// counts as done.
	Ignored
	// Retry: the response matched retry_on; retry while retries are left,
	// then send the event to the error topic.
	Retry
	// RetryReadonly: 500 with X-Readonly: true, the wiki's database is
	// read-only; retry later without using up a retry.
	RetryReadonly
	// Failed: anything else; send the event to the error topic at once.
	Failed
)

// String returns the name used in metrics: "done", "ignored", "retry",
// "retry_readonly" or "error".
func (o Outcome) String() string {
	switch o {
	case Done:
		return "done"
	case Ignored:
		return "ignored"
	case Retry:
		return "retry"
	case RetryReadonly:
		return "retry_readonly"
	case Failed:
		return "error"
	}
	return "unknown"
}

// NetworkErrorStatus is the status a transport error or timeout counts as.
const NetworkErrorStatus = 504

// Classify maps a response, or a transport error, to an outcome. err != nil
// means the request got no response (connection error, timeout) and counts
// as status 504; status and header are then not looked at. header returns a
// response header by name (as http.Header.Get does) and may be nil.
//
// Classify does not know how many retries are left: Retry means "retryable",
// and the caller sends the event to the error topic when its retries are
// used up.
func (r *Rule) Classify(status int, header func(name string) string, err error) Outcome {
	if err != nil {
		status, header = NetworkErrorStatus, nil
	}
	if header == nil {
		header = noHeaders
	}
	switch {
	case status >= 200 && status < 400:
		// Success. Redirects are never followed, so a 3xx is the answer.
		return Done
	case r.Ignore.Matches(status, header):
		// The rule says this failure is fine (412 by default: the job's
		// precondition no longer holds).
		return Ignored
	case status == 500 && strings.EqualFold(header("X-Readonly"), "true"):
		// The wiki is read-only for maintenance; the job is not at fault
		// and must run later, however many times that takes.
		return RetryReadonly
	case r.RetryOn.Matches(status, header):
		// A transient failure (50x and network errors by default).
		return Retry
	default:
		// The job's own fault (400, 404, 405, 422...): retrying will not help.
		return Failed
	}
}

// RetryDelayFor returns how long to wait before retry number n (0 for the
// first retry): retry_delay * retry_factor^n.
func (r *Rule) RetryDelayFor(n int) time.Duration {
	d := float64(r.RetryDelay) * math.Pow(r.RetryFactor, float64(n))
	if d > math.MaxInt64 || math.IsNaN(d) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(d)
}
