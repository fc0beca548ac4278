package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"changeprop/breaker"
	"changeprop/dispatch/dedupe"
	"changeprop/rules"
)

// outcome is what became of one pass of a job.
type outcome int

const (
	outcomeDone       outcome = iota // every request succeeded
	outcomeIgnored                   // a failure matched the rule's ignore condition
	outcomeRetry                     // failed; a retry event was produced and acknowledged
	outcomeError                     // failed for good; an error event was produced and acknowledged
	outcomeUnmatched                 // the rule does not act on this event (no case matched, canary, another rule's retry)
	outcomeSampledOut                // the rule's sample left it out
	outcomeAbandoned                 // older than claim_ttl / root_claim_ttl
	outcomeReenqueued                // a delayed job produced again to its topic
	outcomeDedupe                    // a duplicate of a job already done
	outcomeDelayed                   // not finished: wait until job.due, then run again
	outcomeCancelled                 // cut short by shutdown: not finished, must be read again
)

// finished reports whether the job's offset may be committed.
func (o outcome) finished() bool { return o != outcomeDelayed && o != outcomeCancelled }

// handler classifies jobs (on the poll goroutine) and runs their passes
// (on worker goroutines). It is safe for concurrent use: it holds only
// read-only state and concurrency-safe collaborators.
type handler struct {
	rule        *rules.Rule
	sender      Sender
	producer    Producer
	breakers    *breaker.Set // nil: no breakers
	userAgent   string
	names       Names
	retryPrefix string          // topics starting with it are retry topics
	partitioned map[string]bool // repartitioned streams: their copies keep their partition
	rateLimited bool
	dedupe      dedupe.Store   // nil: no deduplication
	limiter     dedupe.Limiter // nil: no blacklist limiter
	stats       *Stats
	metrics     ruleMetrics
	allowHost   func(hostport string) bool // nil: every host
	limits      rules.Limits               // bounds.go; zero fields are no bound
	maxProduce  int                        // the largest retry or error event produced
	log         zerolog.Logger
	now         func() time.Time

	continueTopic string // a fanout rule's continuation topic (fanout.go); "" for other rules
}

// next is what the poll loop does with a job it classified.
type next uint8

const (
	nextRun    next = iota // admit it to run (or to write its error event)
	nextWait               // put it in the delay queue until job.due
	nextFinish             // it is finished: commit it
)

// classify decides what a job just read needs. It runs on the poll
// goroutine and does no I/O: parse, match, claim TTLs, delays, keys.
func (h *handler) classify(j *job, now time.Time) (next, outcome) {
	var skip outcome
	var err error
	if reason := oversizedEvent(j.msg, h.limits.MaxEventBytes); reason != "" {
		j.phase, j.fail = phaseError, failure{message: reason}
		return nextRun, 0
	}
	if strings.HasPrefix(j.msg.Topic, h.retryPrefix) {
		skip, err = h.readRetry(j)
	} else if h.continueTopic != "" && j.msg.Topic == h.continueTopic {
		skip, err = h.readContinue(j)
	} else {
		j.ev, err = h.rule.ParseEvent(j.msg.Value)
	}
	if err != nil {
		j.phase, j.fail = phaseError, failure{message: err.Error()}
		return nextRun, 0
	}
	if skip != outcomeDone {
		return nextFinish, skip
	}
	m, verdict := h.rule.Evaluate(j.ev)
	switch verdict {
	case rules.SampledOut:
		return nextFinish, outcomeSampledOut
	case rules.NoMatch, rules.Canary:
		return nextFinish, outcomeUnmatched
	}
	j.match = m
	if h.expired(j, now) {
		return nextFinish, outcomeAbandoned
	}
	h.keys(j)
	j.phase = phaseRun
	if j.retry != nil {
		if j.retry.DueAt.After(now) {
			j.due = j.retry.DueAt
			return nextWait, 0
		}
		return nextRun, 0
	}
	if !h.rule.DisableDelayedExecution {
		if until, ok := eventTime(j.ev.Get(rules.FieldDelayUntil)); ok && until.After(now) {
			if until.Sub(now) <= h.rule.ReenqueueDelay {
				j.due = until
			} else {
				j.phase, j.due = phaseReenqueue, now.Add(h.rule.ReenqueueDelay)
			}
			return nextWait, 0
		}
	}
	return nextRun, 0
}

// keys fills the job's concurrency and rate-limit keys.
func (h *handler) keys(j *job) {
	if h.rule.ConcurrencyKey == nil && (h.rule.RateLimit == nil || h.rule.RateLimit.Key == nil) {
		return
	}
	scope := j.match.Scope(j.ev)
	if t := h.rule.ConcurrencyKey; t != nil {
		j.key, _ = t.Text(scope)
	}
	j.rateKey = j.key
	if rl := h.rule.RateLimit; rl != nil && rl.Key != nil {
		j.rateKey, _ = rl.Key.Text(scope)
	}
}

// handle runs one pass of j on a worker goroutine. ctx is cancelled only
// when the shutdown deadline has passed.
func (h *handler) handle(ctx context.Context, j *job) outcome {
	switch j.phase {
	case phaseReenqueue:
		return h.reenqueue(ctx, j)
	case phaseError:
		return h.toErrorTopic(ctx, j, j.fail)
	}
	return h.run(ctx, j)
}

// readRetry parses a retry event: the original event is run again only by
// the rule that wrote the retry.
func (h *handler) readRetry(j *job) (skip outcome, err error) {
	r, err := parseRetry(j.msg.Value)
	if err != nil {
		return outcomeDone, err
	}
	if r.EmitterID != h.names.Emitter(h.rule.Name) {
		return outcomeUnmatched, nil
	}
	ev, err := h.rule.ParseEvent(r.OriginalEvent)
	if err != nil {
		return outcomeDone, fmt.Errorf("original_event: %w", err)
	}
	j.retry, j.ev = r, ev
	return outcomeDone, nil
}

// expired applies claim_ttl (meta.dt) and root_claim_ttl (root_event.dt).
func (h *handler) expired(j *job, now time.Time) bool {
	if ttl := h.rule.ClaimTTL; ttl > 0 {
		if dt, ok := j.metaDT(); ok && now.Sub(dt) > ttl {
			return true
		}
	}
	if ttl := h.rule.RootClaimTTL; ttl > 0 {
		if dt, ok := j.rootDT(); ok && now.Sub(dt) > ttl {
			return true
		}
	}
	return false
}

// reenqueue writes a delayed job back to its own topic; the original is
// then finished. One too large for the producer goes to the error topic
// (it would be refused every time).
func (h *handler) reenqueue(ctx context.Context, j *job) outcome {
	if reason := overProducerLimit("delayed job", len(j.msg.Value), h.maxProduce); reason != "" {
		return h.toErrorTopic(ctx, j, failure{message: reason + ": not re-enqueued", attempts: h.attempt(j)})
	}
	if err := produceAcked(ctx, h.producer, h.log, j.msg.Topic, KeepPartition(h.partitioned, j.ev.Meta("stream"), j.msg), j.msg.Key, j.msg.Value, h.metrics.produced); err != nil {
		return outcomeCancelled
	}
	return outcomeReenqueued
}

// run runs a job that is due: the blacklist and dedupe checks, then its
// requests. A dedupe claim becomes a final mark only when the job is done;
// otherwise it is released, so a copy read again runs.
func (h *handler) run(ctx context.Context, j *job) outcome {
	now := h.now()
	if h.blacklisted(ctx, j, now) {
		return outcomeAbandoned
	}
	var claim *dedupe.Claim
	if h.dedupe != nil && j.retry == nil {
		c, out, ok := h.claim(ctx, j, h.dedupeJob(j), now)
		if !ok {
			return out
		}
		claim = c
	}
	if dt, ok := j.metaDT(); ok && j.retry == nil {
		h.metrics.observeDelay(now.Sub(dt))
	}
	out := h.send(ctx, j)
	h.metrics.observeDuration(h.now().Sub(now))
	h.settle(ctx, j, claim, out)
	if (out == outcomeRetry || out == outcomeError) && h.limiter != nil {
		for _, key := range h.blacklistKeys(j) {
			if err := h.limiter.Failure(ctx, key, h.now()); err != nil {
				h.logJob(zerolog.WarnLevel, j).Err(err).Msg("blacklist limiter unavailable")
			}
		}
	}
	return out
}

// busyRecheck is how soon a job whose copy is claimed elsewhere asks again.
const busyRecheck = 2 * time.Second

// claimMargin is added to the rule's timeout for a dedupe claim's life: a
// claim outlives the requests of the copy that holds it, and a crashed
// copy's claim lets the redelivered one run soon after.
const claimMargin = 5 * time.Second

// dedupeJob is what the dedupe store needs of a job.
func (h *handler) dedupeJob(j *job) dedupe.Job {
	d := dedupe.Job{
		Namespace: h.dedupeNamespace(j),
		Domain:    j.ev.Meta("domain"),
		ID:        j.ev.Meta("id"),
		ClaimTTL:  h.rule.Timeout + claimMargin,
	}
	d.DT, _ = j.metaDT()
	d.SHA1, _ = j.ev.Get(rules.FieldSHA1).(string)
	d.RootSignature, _ = j.ev.Get(rules.FieldRootSignature).(string)
	d.RootDT, _ = j.rootDT()
	return d
}

// dedupeNamespace is the rule's name, or <rule>-<stream> for a rule that
// reads several topics (rules.md "Deduplication").
func (h *handler) dedupeNamespace(j *job) string {
	if len(h.rule.Topics) == 1 && h.rule.Topics[0].Regex == nil {
		return h.rule.Name
	}
	stream := j.ev.Meta("stream")
	if stream == "" {
		stream = h.names.Stream(j.msg.Topic)
	}
	return h.rule.Name + "-" + stream
}

// blacklistKeys expands the rule's blacklist limiter keys for a job.
func (h *handler) blacklistKeys(j *job) []string {
	var keys []string
	for _, l := range h.rule.Limiters {
		if l.Type != "blacklist" || h.rule.DisableRatelimit {
			continue
		}
		if k, err := l.Key.Text(j.match.Scope(j.ev)); err == nil && k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// blacklisted reports whether a job's key failed too often lately (the
// blacklist limiter), or its title is on the rule's static blacklist.
func (h *handler) blacklisted(ctx context.Context, j *job, now time.Time) bool {
	if h.rule.HasBlacklist() && h.rule.Blacklisted(j.ev.Meta("domain"), pageTitle(j.ev)) {
		return true
	}
	if h.limiter == nil {
		return false
	}
	for _, key := range h.blacklistKeys(j) {
		blocked, err := h.limiter.Blocked(ctx, key, now)
		if err != nil {
			h.logJob(zerolog.WarnLevel, j).Err(err).Msg("blacklist limiter unavailable")
		}
		if blocked {
			h.logJob(zerolog.InfoLevel, j).Str("key", key).Msg("blacklisted: failed too often lately")
			return true
		}
	}
	return false
}

// pageTitle is the page title an event is about, for the static blacklist.
func pageTitle(ev *rules.Event) string {
	if t, ok := ev.Get(rules.FieldPageTitle).(string); ok {
		return t
	}
	if t, ok := ev.Get(rules.FieldParamsTitle).(string); ok {
		return t
	}
	return ""
}

// send sends the job's requests in order; the first failure decides. A
// request whose destination's breaker is open is not sent: the job waits
// for the breaker (outcomeDelayed, blocked), or, with a per-key breaker,
// is parked on the retry topic without using up a retry. An exec that
// produces events (kafka:///) produces them and waits for their
// acknowledgement before the next request. A fanout rule runs its own
// action (fanout.go).
func (h *handler) send(ctx context.Context, j *job) outcome {
	if h.rule.Fanout != nil {
		return h.fanout(ctx, j)
	}
	reqs, err := j.match.Requests(j.ev)
	if err != nil {
		return h.toErrorTopic(ctx, j, failure{message: "expand request: " + err.Error(), attempts: h.attempt(j)})
	}
	triggeredBy := h.triggeredBy(j)
	requestID := j.ev.Meta("request_id")
	result := outcomeDone
	for i := range reqs {
		req := &reqs[i]
		var out outcome
		if req.Stream != "" {
			out = h.produceExec(ctx, j, req, triggeredBy)
		} else {
			h.addHeaders(req, requestID, triggeredBy)
			_, out = h.exchange(ctx, j, req)
		}
		switch out {
		case outcomeDone:
		case outcomeIgnored:
			result = outcomeIgnored
		default:
			return out
		}
	}
	return result
}

// exchange sends one request through its destination's breaker and
// classifies the answer. It returns the response with outcomeDone or
// outcomeIgnored, or else what became of the job: blocked (waiting for the
// destination), a retry or error event, or cancelled by shutdown. A
// request that may not be sent (unsendable, outbound) is not: its event
// goes to the error topic.
func (h *handler) exchange(ctx context.Context, j *job, req *rules.Request) (*Response, outcome) {
	if reason := h.unsendable(req); reason != "" {
		return nil, h.toErrorTopic(ctx, j, failure{message: reason, attempts: h.attempt(j)})
	}
	if reason := h.outbound(req); reason != "" {
		return nil, h.toErrorTopic(ctx, j, failure{message: reason, attempts: h.attempt(j)})
	}
	dest, done, wait := h.allow(j, req)
	if wait {
		return nil, h.blocked(ctx, j, dest)
	}
	resp, err := h.sender.Send(ctx, req)
	if err != nil && ctx.Err() != nil {
		done(false) // our own shutdown says nothing of the destination
		return nil, outcomeCancelled
	}
	if errors.Is(err, ErrInvalidRequest) {
		done(false) // not sent: the event's fault
		return nil, h.toErrorTopic(ctx, j, failure{message: "request not sent: " + err.Error(), attempts: h.attempt(j)})
	}
	if errors.Is(err, ErrResponseTooLarge) {
		done(false) // it answered: a hostile answer, not a failing destination
		return nil, h.toErrorTopic(ctx, j, failure{message: err.Error(), attempts: h.attempt(j)})
	}
	f := failure{attempts: h.attempt(j)}
	var header func(string) string
	if resp != nil {
		// A fan-out answer may be megabytes: an error event keeps an excerpt.
		f.status, f.header, f.body = resp.Status, resp.Header, excerpt(resp.Body)
		header = resp.Header.Get
	}
	destFailed := breaker.IsFailure(f.status, err)
	done(destFailed)
	if resp != nil && (f.status == 429 || f.status == 503) && h.breakers != nil {
		if until, ok := breaker.ParseRetryAfter(resp.Header.Get("Retry-After"), h.now()); ok {
			h.breakers.Backoff(dest, until)
		}
	}
	o := h.rule.Classify(f.status, header, err)
	switch o {
	case rules.Done:
		return resp, outcomeDone
	case rules.Ignored:
		return resp, outcomeIgnored
	}
	// The destination, not the job, failed: it could not be reached
	// or dropped the connection, or the breaker has opened on this
	// failure. The job waits for the destination instead of using up a
	// retry.
	if h.breakers != nil && destFailed && (unreachable(err) || h.breakers.State(dest) != breaker.Closed) {
		return nil, h.blocked(ctx, j, dest)
	}
	if err != nil {
		f.status = rules.NetworkErrorStatus
		f.message = fmt.Sprintf("%s %s: %v", req.Method, RedactURI(req.URI), err)
	} else {
		f.message = fmt.Sprintf("%s %s: status %d", req.Method, RedactURI(req.URI), f.status)
	}
	return nil, h.failed(ctx, j, o, f)
}

// outbound checks an expanded request, whose URI unsendable accepted,
// against allowed_hosts: both the URI's host[:port] and the host header
// (the virtual host) must be allowed. It returns why the request may not
// be sent, or "".
func (h *handler) outbound(req *rules.Request) string {
	if h.allowHost == nil {
		return ""
	}
	t, err := parseTarget(req.URI)
	if err != nil {
		return fmt.Sprintf("request not sent: %q is not an http(s) URI", RedactURI(req.URI))
	}
	if !h.allowHost(t.authority) {
		return fmt.Sprintf("request not sent: host %q of %s is not in allowed_hosts", t.authority, RedactURI(req.URI))
	}
	if v := req.Header("host"); v != "" && !h.allowHost(v) {
		return fmt.Sprintf("request not sent: host header %q is not in allowed_hosts", v)
	}
	return ""
}

// allow asks the breaker of the request's destination (or of the rule's
// breaker.key) for permission. wait is true when it is open or backing off.
func (h *handler) allow(j *job, req *rules.Request) (dest string, done func(bool), wait bool) {
	if h.breakers == nil {
		return "", func(bool) {}, false
	}
	if k := h.rule.Breaker.Key; k != nil {
		key, _ := k.Text(j.match.Scope(j.ev))
		dest = h.rule.Name + ":" + key
	} else {
		dest = breaker.Destination(req.URI)
	}
	done, err := h.breakers.Allow(dest)
	if err != nil {
		return dest, nil, true
	}
	return dest, done, false
}

// blockedRecheck is how soon a job blocked by a breaker with no known
// reopening time (half-open, its trial requests taken) asks again.
const blockedRecheck = 250 * time.Millisecond

// blocked handles a job whose breaker said no: it waits in the delay queue
// until the breaker may let requests through (its partition pauses), or,
// with a per-key breaker, goes to the retry topic due then, its retries
// untouched, so that other keys keep flowing.
func (h *handler) blocked(ctx context.Context, j *job, dest string) outcome {
	now := h.now()
	until := h.breakers.WaitUntil(dest)
	if !until.After(now) {
		until = now.Add(blockedRecheck)
	}
	if h.rule.Breaker.Key != nil {
		left := h.rule.RetryLimit
		if j.retry != nil {
			left = j.retry.RetriesLeft
		}
		f := failure{message: "circuit breaker open for " + dest, attempts: h.attempt(j) - 1}
		return h.toRetryTopic(ctx, j, left, until.Sub(now), f)
	}
	j.due, j.blocked = until, true
	return outcomeDelayed
}

// attempt is the number of the attempt being made: 1 for a fresh event.
func (h *handler) attempt(j *job) int {
	if j.retry != nil {
		return j.retry.Attempts + 1
	}
	return 1
}

// failed decides between a retry and the error topic (rules.md
// "Outcomes"): a retryable failure with retries left produces a retry
// event due retry_delay × retry_factor^(attempt-1) from now; a read-only
// database retries after retry_delay without using up a retry; anything
// else, or a retryable failure with none left, goes to the error topic.
func (h *handler) failed(ctx context.Context, j *job, o rules.Outcome, f failure) outcome {
	left := h.rule.RetryLimit
	if j.retry != nil {
		left = j.retry.RetriesLeft
	}
	switch {
	case o == rules.RetryReadonly:
		return h.toRetryTopic(ctx, j, left, h.rule.RetryDelay, f)
	case o == rules.Retry && left > 0:
		return h.toRetryTopic(ctx, j, left-1, h.rule.RetryDelayFor(f.attempts-1), f)
	case o == rules.Retry:
		f.message = fmt.Sprintf("retries exhausted after %d attempts: %s", f.attempts, f.message)
	}
	return h.toErrorTopic(ctx, j, f)
}

// toRetryTopic writes the retry event for j and returns once Kafka
// acknowledged it.
func (h *handler) toRetryTopic(ctx context.Context, j *job, left int, delay time.Duration, f failure) outcome {
	now := h.now()
	stream := j.ev.Meta("stream")
	original := j.msg.Value
	triggeredBy := h.triggeredBy(j)
	if j.retry != nil {
		original = j.retry.OriginalEvent
	}
	if stream == "" {
		stream = h.names.Stream(j.msg.Topic)
	}
	r := retryEnvelope{
		Schema: RetrySchema,
		Meta: eventMeta{
			URI: j.ev.Meta("uri"), RequestID: j.ev.Meta("request_id"), ID: NewEventID(),
			DT: now.UTC().Format(time.RFC3339Nano), Domain: j.ev.Meta("domain"),
			Stream: h.names.RetryStream(stream),
		},
		TriggeredBy:   triggeredBy,
		EmitterID:     h.names.Emitter(h.rule.Name),
		RetriesLeft:   left,
		OriginalEvent: original,
		Reason:        f.message,
		ErrorStatus:   f.status,
		DueAt:         now.Add(delay).UTC(),
		Attempts:      f.attempts,
	}
	if j.retry != nil {
		r.Continue = j.retry.Continue // a fanout step keeps its place
	}
	b, err := json.Marshal(&r)
	if err != nil {
		return h.toErrorTopic(ctx, j, failure{message: "retry event: " + err.Error(), attempts: f.attempts})
	}
	if reason := overProducerLimit("retry event", len(b), h.maxProduce); reason != "" {
		// The error event keeps an excerpt.
		f.message = reason + ": " + f.message
		return h.toErrorTopic(ctx, j, f)
	}
	h.logJob(zerolog.InfoLevel, j).Str("reason", f.message).Int("retries_left", left).Time("due_at", r.DueAt).Msg("to retry topic")
	if err := produceAcked(ctx, h.producer, h.log, h.names.Retry(stream), KeepPartition(h.partitioned, stream, j.msg), j.msg.Key, b, h.metrics.produced); err != nil {
		return outcomeCancelled
	}
	return outcomeRetry
}

// toErrorTopic writes the error event for j and returns once Kafka
// acknowledged it; the event is then finished. If ctx ends first the event
// is not finished: it will be read again.
func (h *handler) toErrorTopic(ctx context.Context, j *job, f failure) outcome {
	h.logJob(zerolog.WarnLevel, j).Str("reason", f.message).Int("status", f.status).Msg("to error topic")
	raw := j.msg.Value
	if j.retry != nil {
		raw = j.retry.OriginalEvent
	}
	b := newErrorEvent(j.msg, j.ev, raw, f, h.rule.Name, h.names.Emitter(h.rule.Name), h.names.ErrorStream(), h.now(), h.maxProduce)
	if err := produceAcked(ctx, h.producer, h.log, h.names.Error(), -1, nil, b, h.metrics.produced); err != nil {
		return outcomeCancelled
	}
	return outcomeError
}

// addHeaders adds the headers every request carries, unless the rule's
// template already set them.
func (h *handler) addHeaders(req *rules.Request, requestID, triggeredBy string) {
	var hasUA, hasID, hasTB bool
	for _, hd := range req.Headers {
		switch hd.Name {
		case "user-agent":
			hasUA = true
		case "x-request-id":
			hasID = true
		case "x-triggered-by":
			hasTB = true
		}
	}
	if !hasUA && h.userAgent != "" {
		req.Headers = append(req.Headers, rules.Header{Name: "user-agent", Value: h.userAgent})
	}
	if !hasID && requestID != "" {
		req.Headers = append(req.Headers, rules.Header{Name: "x-request-id", Value: requestID})
	}
	if !hasTB {
		req.Headers = append(req.Headers, rules.Header{Name: "x-triggered-by", Value: triggeredBy})
	}
}

// triggeredBy is the chain of <stream>:<meta.uri> hops that led to this
// request: the event's own triggered_by (set on events produced by rules)
// followed by this hop. A retry carries the chain of its original.
func (h *handler) triggeredBy(j *job) string {
	if j.retry != nil && j.retry.TriggeredBy != "" {
		return j.retry.TriggeredBy
	}
	stream := j.ev.Meta("stream")
	if stream == "" {
		stream = h.names.Stream(j.msg.Topic)
	}
	hop := stream + ":" + j.ev.Meta("uri")
	if prev, ok := j.ev.Get(rules.FieldTriggeredBy).(string); ok && prev != "" {
		return prev + "," + hop
	}
	return hop
}

func (h *handler) logJob(level zerolog.Level, j *job) *zerolog.Event {
	return h.log.WithLevel(level).Str("topic", j.msg.Topic).Int32("partition", j.msg.Partition).Int64("offset", j.msg.Offset)
}

// errShutdown is the cause of the work context's cancellation.
var errShutdown = errors.New("shutdown deadline passed")

// unreachable reports whether err means the destination failed rather
// than the job: no answer came (the connection could not be made, or it
// broke or was closed before an answer). A timeout is not: the job may be
// what takes too long, so it is retried like a 504 and ends.
func unreachable(err error) bool {
	if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}
