package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"changeprop/rules"
)

// produceExec runs an exec whose uri is kafka:///<stream>: it produces the
// expanded body, an event or a list of events, to [produce_dc.]<stream>,
// and returns outcomeDone once Kafka acknowledged every one. Each event's
// meta.stream is set to the stream; meta.id, meta.dt and meta.request_id
// are filled when the body leaves them out (a new id, now, the source
// event's request id), and triggered_by, when absent, is the chain that
// led here, so the rules reading the stream extend it.
//
// A body that is not an event, or an event over the producer's limit, goes
// to the error topic; a shutdown before every acknowledgement leaves the
// source event unfinished (read again).
func (h *handler) produceExec(ctx context.Context, j *job, req *rules.Request, triggeredBy string) outcome {
	events, err := decodeEvents(req.Body)
	if err != nil {
		return h.toErrorTopic(ctx, j, failure{message: fmt.Sprintf("%s: %v", req.URI, err), attempts: h.attempt(j)})
	}
	topic := h.names.Topic(req.Stream)
	now := h.now().UTC().Format(time.RFC3339Nano)
	requestID := j.ev.Meta("request_id")
	msgs := make([]message, len(events))
	for i, ev := range events {
		meta, ok := ev["meta"].(map[string]any)
		if !ok {
			meta = map[string]any{}
			ev["meta"] = meta
		}
		meta["stream"] = req.Stream
		fill := func(key, value string) {
			if s, _ := meta[key].(string); s == "" && value != "" {
				meta[key] = value
			}
		}
		fill("id", NewEventID())
		fill("dt", now)
		fill("request_id", requestID)
		if _, ok := ev["triggered_by"]; !ok {
			ev["triggered_by"] = triggeredBy
		}
		b, err := json.Marshal(ev)
		if err != nil {
			return h.toErrorTopic(ctx, j, failure{message: fmt.Sprintf("%s: %v", req.URI, err), attempts: h.attempt(j)})
		}
		if reason := overProducerLimit(fmt.Sprintf("event %d", i), len(b), h.maxProduce); reason != "" {
			return h.toErrorTopic(ctx, j, failure{message: req.URI + ": " + reason, attempts: h.attempt(j)})
		}
		msgs[i] = message{topic: topic, partition: -1, value: b}
	}
	if err := produceAllAcked(ctx, h.producer, h.log, msgs, h.metrics.produced); err != nil {
		return outcomeCancelled
	}
	return outcomeDone
}

// decodeEvents reads a produce body: a JSON object, or an array of them.
func decodeEvents(body []byte) ([]map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("body is not JSON: %w", err)
	}
	switch x := v.(type) {
	case map[string]any:
		return []map[string]any{x}, nil
	case []any:
		out := make([]map[string]any, 0, len(x))
		for _, e := range x {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, errNotEvent
			}
			out = append(out, m)
		}
		if len(out) > 0 {
			return out, nil
		}
	}
	return nil, errNotEvent
}

var errNotEvent = errors.New("body is not an event (an object) or a list of events")
