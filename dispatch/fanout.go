package dispatch

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"changeprop/dispatch/dedupe"
	"changeprop/rules"
)

// ContinueSchema is the $schema of a fanout rule's continuation events.
const ContinueSchema = "/change-prop/continue/1.0.0"

// ResourceChangeSchema is the $schema of the events a fanout rule writes.
const ResourceChangeSchema = "/resource_change/1.0.0"

// maxAPIAnswer bounds the Action API answer a fanout step reads: a page of
// 5000 titles of 255 bytes, escaped, fits.
const maxAPIAnswer = 8 << 20

// continueEvent is a fanout rule's continuation event: the event the
// expansion started from and the Action API's token for the next page.
// The rule that wrote it (emitter_id) reads it from its continuation topic
// and runs its next step.
type continueEvent struct {
	Schema        string            `json:"$schema"`
	Meta          eventMeta         `json:"meta"`
	TriggeredBy   string            `json:"triggered_by"`
	EmitterID     string            `json:"emitter_id"`
	OriginalEvent json.RawMessage   `json:"original_event"`
	Continue      map[string]string `json:"continue"`
}

// resourceChange is an event about one dependent page.
type resourceChange struct {
	Schema      string    `json:"$schema"`
	Meta        eventMeta `json:"meta"`
	Tags        []string  `json:"tags"`
	TriggeredBy string    `json:"triggered_by"`
}

// continueTopic is the continuation topic of a fanout rule, "" for others.
func continueTopic(cfg RunnerConfig) string {
	if cfg.Rule.Fanout == nil {
		return ""
	}
	return cfg.Names.Continue(cfg.Rule.Name)
}

// readContinue reads a continuation event like a retry event of the rule:
// the original event runs again, with the continue token and a fresh set
// of retries, at once.
func (h *handler) readContinue(j *job) (skip outcome, err error) {
	var c continueEvent
	if err := json.Unmarshal(j.msg.Value, &c); err != nil {
		return outcomeDone, fmt.Errorf("continuation event: %w", err)
	}
	if c.EmitterID != h.names.Emitter(h.rule.Name) {
		return outcomeUnmatched, nil
	}
	if len(c.Continue) == 0 {
		return outcomeDone, errors.New("continuation event: no continue token")
	}
	ev, err := h.rule.ParseEvent(c.OriginalEvent)
	if err != nil {
		return outcomeDone, fmt.Errorf("continuation event: original_event: %w", err)
	}
	j.ev = ev
	j.retry = &retryEnvelope{
		EmitterID: c.EmitterID, TriggeredBy: c.TriggeredBy, OriginalEvent: c.OriginalEvent,
		RetriesLeft: h.rule.RetryLimit, Continue: c.Continue,
	}
	return outcomeDone, nil
}

// fanout runs one step of a fanout rule: it asks the Action API for one
// page of the pages that depend on the event's page (the first page, or
// the one the job's continue token names), produces an event for each of
// them and, when the API has more, one continuation event for the next
// page to the rule's continuation topic. The step is done once Kafka
// acknowledged all of them; until then the event it ran for is not
// committed. A failed API request is retried like any request of the
// rule.
//
// A step after the first is claimed in the dedupe store under an id made
// of the original event and the continue token: should a crash make the
// previous step run twice and write its continuation twice, the second
// copy is a duplicate and the expansion does not fork.
func (h *handler) fanout(ctx context.Context, j *job) outcome {
	f := h.rule.Fanout
	var cont map[string]string
	if j.retry != nil {
		cont = j.retry.Continue
	}
	source := sourceKey(j.ev)
	if cont != nil && h.dedupe != nil {
		claim, out, ok := h.claim(ctx, j, dedupe.Job{
			Namespace: h.rule.Name + ".continue", Domain: j.ev.Meta("domain"),
			ID: h.stepID(source, cont), ClaimTTL: h.rule.Timeout + claimMargin,
		}, h.now())
		if !ok {
			return out
		}
		out = h.fanoutStep(ctx, j, f, source, cont)
		h.settle(ctx, j, claim, out)
		return out
	}
	return h.fanoutStep(ctx, j, f, source, cont)
}

func (h *handler) fanoutStep(ctx context.Context, j *job, f *rules.Fanout, source string, cont map[string]string) outcome {
	req, err := f.Request(j.match, j.ev, cont)
	if err != nil {
		return h.toErrorTopic(ctx, j, failure{message: "expand request: " + err.Error(), attempts: h.attempt(j)})
	}
	req.ResponseLimit = maxAPIAnswer
	triggeredBy := h.triggeredBy(j)
	h.addHeaders(&req, j.ev.Meta("request_id"), triggeredBy)
	resp, out := h.exchange(ctx, j, &req)
	if out != outcomeDone {
		return out // ignored: no page to expand
	}
	page, err := f.ParsePage(resp.Body)
	if err != nil {
		o := rules.Retry
		if apiErr := (*rules.APIError)(nil); errors.As(err, &apiErr) && !apiErr.Retryable() {
			o = rules.Failed
		}
		return h.failed(ctx, j, o, failure{
			message: fmt.Sprintf("%s %s: %v", req.Method, RedactURI(req.URI), err), status: resp.Status,
			header: resp.Header, body: excerpt(resp.Body), attempts: h.attempt(j),
		})
	}
	domain, err := f.Domain.Text(j.match.Scope(j.ev))
	if err != nil || domain == "" {
		return h.toErrorTopic(ctx, j, failure{message: fmt.Sprintf("fanout.domain: no domain (%v)", err), attempts: h.attempt(j)})
	}
	msgs := h.dependentEvents(j, f, page.Titles, domain, source, triggeredBy)
	if page.Continue != nil {
		b, err := json.Marshal(&continueEvent{
			Schema: ContinueSchema,
			Meta: eventMeta{
				URI: j.ev.Meta("uri"), RequestID: j.ev.Meta("request_id"), ID: h.stepID(source, page.Continue),
				DT: h.now().UTC().Format(time.RFC3339Nano), Domain: j.ev.Meta("domain"),
				Stream: h.names.ContinueStream(h.rule.Name),
			},
			TriggeredBy:   triggeredBy,
			EmitterID:     h.names.Emitter(h.rule.Name),
			OriginalEvent: j.ev.Raw,
			Continue:      page.Continue,
		})
		if err != nil {
			return h.toErrorTopic(ctx, j, failure{message: "continuation event: " + err.Error(), attempts: h.attempt(j)})
		}
		msgs = append(msgs, message{topic: h.continueTopic, partition: -1, value: b})
	}
	if len(msgs) == 0 {
		return outcomeDone
	}
	if err := produceAllAcked(ctx, h.producer, h.log, msgs, h.metrics.produced); err != nil {
		return outcomeCancelled
	}
	h.logJob(zerolog.DebugLevel, j).Int("events", len(page.Titles)).Bool("more", page.Continue != nil).Msg("fanout step")
	return outcomeDone
}

// dependentEvents are the events of one page of dependent titles, to
// [produce_dc.]<fanout.stream>. Each id is derived from the original event
// and the title, so a page written twice carries the same ids; meta.dt is
// the original event's, so that re-renders compare against the change that
// caused them.
func (h *handler) dependentEvents(j *job, f *rules.Fanout, titles []string, domain, source, triggeredBy string) []message {
	topic := h.names.Topic(f.Stream)
	dt := j.ev.Meta("dt")
	if dt == "" {
		dt = h.now().UTC().Format(time.RFC3339Nano)
	}
	msgs := make([]message, 0, len(titles)+1)
	for _, title := range titles {
		b, _ := json.Marshal(&resourceChange{ // strings and a list of them: always encodes
			Schema: ResourceChangeSchema,
			Meta: eventMeta{
				URI: rules.PageURI(domain, title), RequestID: j.ev.Meta("request_id"),
				ID: derivedEventID(h.rule.Name, source, domain, title), DT: dt, Domain: domain, Stream: f.Stream,
			},
			Tags:        f.Tags,
			TriggeredBy: triggeredBy,
		})
		msgs = append(msgs, message{topic: topic, partition: -1, value: b})
	}
	return msgs
}

// sourceKey identifies the event an expansion started from: its meta.id,
// or the hash of its bytes when it has none.
func sourceKey(ev *rules.Event) string {
	if id := ev.Meta("id"); id != "" {
		return id
	}
	sum := sha1.Sum(ev.Raw)
	return hex.EncodeToString(sum[:])
}

// stepID identifies the step of an expansion that a continue token asks
// for: the meta.id of its continuation event and its dedupe key.
func (h *handler) stepID(source string, cont map[string]string) string {
	keys := make([]string, 0, len(cont))
	for k := range cont {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "=" + cont[k] + "&")
	}
	return derivedEventID(h.rule.Name, "continue", source, b.String())
}

// excerpt bounds a response body kept for an error event.
func excerpt(body []byte) []byte {
	if len(body) > MaxBodyExcerpt {
		return body[:MaxBodyExcerpt]
	}
	return body
}
