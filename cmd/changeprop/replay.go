package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"changeprop/dispatch"
	"changeprop/dispatch/kafka"
	"changeprop/rules"
)

// cmdReplay is `changeprop replay`: it reads the error topic from its start
// to its end at the time of the call and produces the original event of
// every matching error event again, into the topic it came from. The
// meta.id of every replayed error event is recorded in the topic
// [dc.]<service_name>.error.replayed once the replayed event is
// acknowledged, and skipped by later runs.
func cmdReplay(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (- for standard input)")
	rule := fs.String("rule", "", "only error events of this rule")
	status := fs.String("status", "", "only error events with this HTTP status: 503, or a pattern like 5xx or 50x; a comma-separated list matches any")
	since := fs.String("since", "", "only error events written at or after this RFC 3339 time (meta.dt)")
	until := fs.String("until", "", "only error events written before this RFC 3339 time (meta.dt)")
	perSecond := fs.Float64("rate", 100, "events replayed per second at most; 0 means unlimited")
	dryRun := fs.Bool("dry-run", false, "list the events that would be replayed; produce and record nothing")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	flagErr := func(err error) int {
		fmt.Fprintf(stderr, "changeprop replay: %v (see changeprop replay -h)\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		return flagErr(fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if *path == "" {
		return flagErr(errors.New("-config is required"))
	}
	filter, err := newReplayFilter(*rule, *status, *since, *until)
	if err != nil {
		return flagErr(err)
	}
	if *perSecond < 0 {
		return flagErr(fmt.Errorf("bad -rate %v: must be 0 (unlimited) or more", *perSecond))
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		return flagErr(err)
	}
	cfg, err := loadConfig(*path, stdin)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	stderr = redact(stderr, cfg.Secrets())
	log, _ = newLogger(stderr, *level)
	ctx, stop := signalContext(log)
	defer stop()

	st, err := replay(ctx, cfg, replayOptions{filter: filter, rate: *perSecond, dryRun: *dryRun}, stdout, log)
	fmt.Fprintln(stdout, st.summary(*dryRun))
	if err != nil {
		fmt.Fprintf(stderr, "changeprop replay: %v\n", err)
		return 1
	}
	return 0
}

type replayOptions struct {
	filter replayFilter
	rate   float64 // events per second; 0 is unlimited
	dryRun bool
}

// replayStats counts error events by what became of them. Each event
// counts in read, then in invalid or (if it passed the filters) in matched;
// a matched event counts in skipped or replayed, or in neither if the run
// stopped before it was acknowledged.
type replayStats struct {
	read, invalid, matched, skipped, replayed int
}

func (s replayStats) summary(dryRun bool) string {
	verb := "replayed"
	if dryRun {
		verb = "would replay"
	}
	return fmt.Sprintf("summary: read %d, invalid %d, matched %d, skipped %d (already replayed), %s %d",
		s.read, s.invalid, s.matched, s.skipped, verb, s.replayed)
}

// drainTimeout bounds the wait for the acknowledgements of events already
// produced when the run ends (also after SIGINT/SIGTERM), so that they are
// recorded as replayed.
const drainTimeout = 30 * time.Second

// replay reads the replayed ids, then the error topic, and replays or
// lists what the filter matches.
func replay(ctx context.Context, cfg *rules.Config, opt replayOptions, out io.Writer, log zerolog.Logger) (replayStats, error) {
	var st replayStats
	names := dispatch.NamesFor(cfg)
	errorTopic := names.Error()
	recordTopic := replayedTopic(names)
	reader := func(topic string) kafka.ReaderConfig {
		return kafka.ReaderConfig{
			Brokers:    cfg.Kafka.Brokers,
			Properties: cfg.ConsumerProperties(nil),
			Topic:      topic,
			Log:        log.With().Str("client", "reader").Logger(),
		}
	}

	// done holds the meta.id of every error event replayed, by an earlier
	// run or this one.
	done := make(map[string]bool)
	err := kafka.ReadTopic(ctx, reader(recordTopic), func(m dispatch.Message) error {
		if len(m.Key) > 0 {
			done[string(m.Key)] = true
		}
		return nil
	})
	if err != nil && !errors.Is(err, kafka.ErrTopicNotFound) {
		return st, fmt.Errorf("read the ids replayed before: %w", err)
	}
	log.Debug().Int("ids", len(done)).Str("topic", recordTopic).Msg("replayed before")

	var r *replayer
	if !opt.dryRun {
		prod, err := kafka.NewProducer(kafka.ProducerConfig{
			Brokers:    cfg.Kafka.Brokers,
			Properties: cfg.ProducerProperties(),
			Log:        log.With().Str("client", "producer").Logger(),
		})
		if err != nil {
			return st, err
		}
		defer prod.Close(drainTimeout)
		r = &replayer{prod: prod, recordTopic: recordTopic, stats: &st, log: log, now: time.Now}
		if opt.rate > 0 {
			// A tenth of a second's worth of burst lets the rate catch up
			// after a wait for acknowledgements.
			r.lim = rate.NewLimiter(rate.Limit(opt.rate), max(1, int(opt.rate/10)))
		}
	}

	readErr := kafka.ReadTopic(ctx, reader(errorTopic), func(m dispatch.Message) error {
		st.read++
		ev, err := parseErrorEvent(m.Value)
		if err != nil {
			st.invalid++
			log.Warn().Str("topic", m.Topic).Int32("partition", m.Partition).Int64("offset", m.Offset).
				Err(err).Msg("not an error event: skipped")
			return nil
		}
		if !opt.filter.match(ev) {
			return nil
		}
		st.matched++
		if done[ev.Meta.ID] {
			st.skipped++
			return nil
		}
		done[ev.Meta.ID] = true
		target := replayTarget(names, ev.Topic)
		if opt.dryRun {
			st.replayed++
			fmt.Fprintf(out, "would replay %s rule=%s status=%d dt=%s topic=%s message=%q\n",
				ev.Meta.ID, ev.Rule, ev.Details.Status, ev.Meta.DT, target, ev.Message)
			return nil
		}
		return r.add(ctx, ev.Meta.ID, target, []byte(ev.RawEvent))
	})
	if readErr != nil {
		if ctx.Err() != nil {
			readErr = fmt.Errorf("interrupted; run again to replay the rest: %w", readErr)
		} else if errors.Is(readErr, kafka.ErrTopicNotFound) {
			readErr = fmt.Errorf("error topic: %w", readErr)
		}
	}
	var flushErr error
	if r != nil {
		flushErr = r.flush()
	}
	return st, errors.Join(readErr, flushErr)
}

// replayedTopic is [dc.]<service_name>.error.replayed, the record of
// replayed error events.
func replayedTopic(names dispatch.Names) string { return names.Error() + ".replayed" }

// replayTarget is where the original event of an error event from topic
// goes: back into topic, or for a retry topic [produce_dc.]<service_name>.retry.<stream>
// into the stream's topic [consume_dc.]<stream>.
func replayTarget(names dispatch.Names, topic string) string {
	prefix := names.Retry("") // [dc.]<service_name>.retry.
	stream, ok := strings.CutPrefix(topic, prefix)
	if !ok || stream == "" {
		return topic
	}
	if names.ConsumeDC == "" {
		return stream
	}
	return names.ConsumeDC + "." + stream
}

// errorEvent is what replay reads of an error event (service.md; written
// by package dispatch).
type errorEvent struct {
	Schema string `json:"$schema"`
	Meta   struct {
		ID string `json:"id"`
		DT string `json:"dt"`
	} `json:"meta"`
	RawEvent string `json:"raw_event"`
	// RawEventBytes is set when RawEvent is only an excerpt.
	RawEventBytes int    `json:"raw_event_bytes"`
	Message       string `json:"message"`
	Details       struct {
		Status int `json:"status"`
	} `json:"details"`
	Rule  string `json:"rule"`
	Topic string `json:"topic"`

	dt time.Time // Meta.DT parsed
}

// parseErrorEvent decodes an error event and checks what replay needs of
// it: the error schema, meta.id, meta.dt as an RFC 3339 time, the topic and
// the raw event.
func parseErrorEvent(b []byte) (*errorEvent, error) {
	var ev errorEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		return nil, err
	}
	var missing []string
	if !strings.HasPrefix(ev.Schema, "/error/") {
		return nil, fmt.Errorf("$schema %q is not an error schema", ev.Schema)
	}
	if ev.Meta.ID == "" {
		missing = append(missing, "meta.id")
	}
	if ev.Topic == "" {
		missing = append(missing, "topic")
	}
	if ev.RawEvent == "" {
		missing = append(missing, "raw_event")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("no %s", strings.Join(missing, ", "))
	}
	if ev.RawEventBytes > 0 {
		return nil, fmt.Errorf("raw_event is an excerpt of a %d-byte event, which cannot be replayed", ev.RawEventBytes)
	}
	dt, err := time.Parse(time.RFC3339Nano, ev.Meta.DT)
	if err != nil {
		return nil, fmt.Errorf("meta.dt %q is not an RFC 3339 time", ev.Meta.DT)
	}
	ev.dt = dt
	return &ev, nil
}

// replayFilter selects error events; its zero value selects all.
type replayFilter struct {
	rule     string          // "" matches every rule
	statuses []statusPattern // empty matches every status
	since    time.Time       // zero: no lower bound; inclusive
	until    time.Time       // zero: no upper bound; exclusive
}

func newReplayFilter(rule, status, since, until string) (replayFilter, error) {
	f := replayFilter{rule: rule}
	var errs []error
	if status != "" {
		for s := range strings.SplitSeq(status, ",") {
			p, err := parseStatusPattern(strings.TrimSpace(s))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			f.statuses = append(f.statuses, p)
		}
	}
	parseTime := func(name, v string) time.Time {
		if v == "" {
			return time.Time{}
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			errs = append(errs, fmt.Errorf("bad -%s %q: want an RFC 3339 time like 2026-01-02T15:04:05Z", name, v))
		}
		return t
	}
	f.since = parseTime("since", since)
	f.until = parseTime("until", until)
	if !f.since.IsZero() && !f.until.IsZero() && !f.since.Before(f.until) {
		errs = append(errs, fmt.Errorf("-since %s is not before -until %s: nothing can match", since, until))
	}
	return f, errors.Join(errs...)
}

func (f replayFilter) match(ev *errorEvent) bool {
	if f.rule != "" && ev.Rule != f.rule {
		return false
	}
	if !f.since.IsZero() && ev.dt.Before(f.since) {
		return false
	}
	if !f.until.IsZero() && !ev.dt.Before(f.until) {
		return false
	}
	if len(f.statuses) == 0 {
		return true
	}
	for _, p := range f.statuses {
		if p.match(ev.Details.Status) {
			return true
		}
	}
	return false
}

// statusPattern is three characters, each a digit or x (any digit): 503,
// 5xx, 50x.
type statusPattern string

func parseStatusPattern(s string) (statusPattern, error) {
	s = strings.ToLower(s)
	ok := len(s) == 3
	for _, c := range s {
		ok = ok && (c == 'x' || c >= '0' && c <= '9')
	}
	if !ok {
		return "", fmt.Errorf("bad -status %q: want a status like 503 or a pattern like 5xx or 50x", s)
	}
	return statusPattern(s), nil
}

// match reports whether status matches; 0 (no HTTP response) matches no
// pattern.
func (p statusPattern) match(status int) bool {
	if status < 100 || status > 999 {
		return false
	}
	s := strconv.Itoa(status)
	for i := range 3 {
		if p[i] != 'x' && p[i] != s[i] {
			return false
		}
	}
	return true
}

// replayBatch is the most events produced before their acknowledgements
// are awaited and they are recorded.
const replayBatch = 256

// replayer produces original events, waits for their acknowledgements in
// batches and then records their error events' ids. It is used from one
// goroutine.
type replayer struct {
	prod        *kafka.Producer
	lim         *rate.Limiter // nil: unlimited
	recordTopic string
	stats       *replayStats
	log         zerolog.Logger
	now         func() time.Time
	pending     []pendingReplay
}

type pendingReplay struct {
	id, target string
	ack        chan error
}

// replayRecord is the value of a record in the replayed topic; its key is
// the error event's meta.id.
type replayRecord struct {
	ReplayedAt time.Time `json:"replayed_at"`
	Topic      string    `json:"topic"`
}

// add produces raw into target, within the rate. Pending events are
// acknowledged and recorded first when the batch is full or when the rate
// would make add wait anyway, so that at modest rates every event is
// recorded before the next one is produced.
func (r *replayer) add(ctx context.Context, id, target string, raw []byte) error {
	if len(r.pending) >= replayBatch || len(r.pending) > 0 && r.lim != nil && r.lim.Tokens() < 1 {
		if err := r.flush(); err != nil {
			return err
		}
	}
	if r.lim != nil {
		if err := r.lim.Wait(ctx); err != nil {
			return err
		}
	}
	p := pendingReplay{id: id, target: target, ack: make(chan error, 1)}
	if err := r.prod.ProduceAsync(target, -1, nil, raw, func(err error) { p.ack <- err }); err != nil {
		return fmt.Errorf("replay %s: %w", id, err)
	}
	r.pending = append(r.pending, p)
	return nil
}

// flush waits for the pending events' acknowledgements, then records the
// acknowledged ones and waits for those records' acknowledgements. It
// waits at most drainTimeout, even after SIGINT/SIGTERM: an event that was
// produced should be recorded.
func (r *replayer) flush() error {
	if len(r.pending) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	batch := r.pending
	r.pending = nil
	var errs []error
	acked := make([]pendingReplay, 0, len(batch))
	for _, p := range batch {
		if err := awaitAck(ctx, p.ack); err != nil {
			errs = append(errs, fmt.Errorf("replay %s to %s: %w", p.id, p.target, err))
			continue
		}
		r.stats.replayed++
		acked = append(acked, p)
	}
	recorded := make([]chan error, len(acked))
	now := r.now().UTC()
	for i, p := range acked {
		ch := make(chan error, 1)
		recorded[i] = ch
		v, err := json.Marshal(replayRecord{ReplayedAt: now, Topic: p.target})
		if err == nil {
			err = r.prod.ProduceAsync(r.recordTopic, -1, []byte(p.id), v, func(err error) { ch <- err })
		}
		if err != nil {
			ch <- err
		}
	}
	for i, p := range acked {
		if err := awaitAck(ctx, recorded[i]); err != nil {
			errs = append(errs, fmt.Errorf("replayed %s to %s but could not record it in %s, so a later run replays it again: %w",
				p.id, p.target, r.recordTopic, err))
			continue
		}
		r.log.Info().Str("id", p.id).Str("topic", p.target).Msg("replayed")
	}
	return errors.Join(errs...)
}

func awaitAck(ctx context.Context, ack <-chan error) error {
	select {
	case err := <-ack:
		return err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
