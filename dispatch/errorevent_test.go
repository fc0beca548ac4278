package dispatch

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestErrorEventFitsASmallLimit: with a small producer limit, an error event
// keeps as much of the original as fits, even when escaping makes the
// excerpt several times its size, and says how large the original was.
func TestErrorEventFitsASmallLimit(t *testing.T) {
	m := &Message{TopicPartition: TopicPartition{Topic: "mediawiki.job.refreshLinks"}}
	for _, raw := range [][]byte{
		[]byte(`{"type":"x","params":"` + strings.Repeat("a", 50_000) + `"}`),
		bytes.Repeat([]byte{0}, 50_000), // each byte escaped to \u0000
	} {
		for _, limit := range []int{75_000, 15_000, DefaultMaxProduceBytes} {
			b := newErrorEvent(m, nil, raw, failure{message: "event is not a JSON object"}, "job", "cp#job", "error",
				time.Unix(0, 0), limit)
			var e errorEvent
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatal(err)
			}
			switch {
			case len(b) > limit:
				t.Errorf("limit %d: error event of %d bytes", limit, len(b))
			case len(raw) <= limit/4 && e.RawEvent != string(raw):
				t.Errorf("limit %d: a %d-byte event that fits was cut", limit, len(raw))
			case e.RawEvent != string(raw) && (e.RawEventBytes != len(raw) || !strings.HasPrefix(string(raw), e.RawEvent) || e.RawEvent == ""):
				t.Errorf("limit %d: raw_event of %d bytes, raw_event_bytes %d, want a prefix of the %d-byte original",
					limit, len(e.RawEvent), e.RawEventBytes, len(raw))
			}
		}
	}
}
