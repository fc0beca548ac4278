package dispatch

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"changeprop/rules"
)

// job is one message on its way through a Runner: read, possibly delayed
// (a retry not yet due, a delayed job), run, finished. The poll goroutine
// owns it except while a worker runs it.
type job struct {
	p   *part
	msg *Message
	// Filled by the first pass of the handler, kept for the next.
	ev      *rules.Event
	match   *rules.Match
	retry   *retryEnvelope // set when msg is a retry event of this rule
	phase   phase
	due     time.Time // when a delayed job may continue
	key     string    // concurrency key (per wiki); "" without concurrency_key
	rateKey string    // rate-limit bucket
	rated   bool      // took its rate-limit token
	blocked bool      // waits for an open breaker
	fail    failure   // phaseError: why the job goes to the error topic
	// meta.dt and root_event.dt of ev, read once (metaDT, rootDT).
	dt, root stamp
}

// stamp is a time read from an event, once.
type stamp struct {
	t        time.Time
	ok, read bool
}

func (s *stamp) get(ev *rules.Event, f rules.Field) (time.Time, bool) {
	if !s.read {
		s.t, s.ok = eventTime(ev.Get(f))
		s.read = true
	}
	return s.t, s.ok
}

// metaDT is the job's meta.dt; ok is false when it has none it can read.
func (j *job) metaDT() (time.Time, bool) { return j.dt.get(j.ev, rules.FieldMetaDT) }

// rootDT is the job's root_event.dt.
func (j *job) rootDT() (time.Time, bool) { return j.root.get(j.ev, rules.FieldRootDT) }

// phase is where a job stands when a worker picks it up.
type phase uint8

const (
	phaseNew       phase = iota // just read: classify, maybe delay
	phaseRun                    // due: send the requests
	phaseReenqueue              // a delayed job whose reenqueue_delay passed: produce it again
	phaseError                  // unusable: write its error event
)

// RetrySchema is the $schema of retry events.
const RetrySchema = "/change-prop/retry/1.0.0"

// retryEnvelope is a retry event (service.md) with our fields due_at and
// attempts. OriginalEvent keeps the original's bytes exactly: job runners
// check signatures over them.
type retryEnvelope struct {
	Schema        string          `json:"$schema"`
	Meta          eventMeta       `json:"meta"`
	TriggeredBy   string          `json:"triggered_by"`
	EmitterID     string          `json:"emitter_id"`
	RetriesLeft   int             `json:"retries_left"`
	OriginalEvent json.RawMessage `json:"original_event"`
	Reason        string          `json:"reason"`
	ErrorStatus   int             `json:"error_status"`
	DueAt         time.Time       `json:"due_at"`
	Attempts      int             `json:"attempts"`
	// Continue is set for a step of a fanout rule after the first: the
	// Action API's continue token of the page to ask for.
	Continue map[string]string `json:"continue,omitempty"`
}

func parseRetry(b []byte) (*retryEnvelope, error) {
	var r retryEnvelope
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("retry event: %w", err)
	}
	if len(r.OriginalEvent) == 0 || r.OriginalEvent[0] != '{' {
		return nil, fmt.Errorf("retry event: original_event is not an object")
	}
	if r.Attempts < 1 {
		r.Attempts = 1 // written by a service that did not count attempts
	}
	return &r, nil
}

// eventTime reads a timestamp field: an ISO 8601 / RFC 3339 string, or
// epoch seconds as a number or numeric string. ok is false when the field
// is absent or unreadable.
func eventTime(v any) (time.Time, bool) {
	switch x := v.(type) {
	case string:
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "20060102150405"} {
			if t, err := time.Parse(layout, x); err == nil {
				return t, true
			}
		}
		if n, err := strconv.ParseFloat(x, 64); err == nil {
			return time.Unix(0, int64(n*1e9)), true
		}
	case json.Number:
		if n, err := x.Float64(); err == nil {
			return time.Unix(0, int64(n*1e9)), true
		}
	case float64:
		return time.Unix(0, int64(x*1e9)), true
	}
	return time.Time{}, false
}
