package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"changeprop/dispatch/kafka"
	"changeprop/internal/jobgen"
)

// loadgenOptions are the flags of `changeprop loadgen`.
type loadgenOptions struct {
	brokers    string
	rate       int           // events per second; 0 = as fast as the producer takes them
	n          int64         // stop after n events; 0 = no limit
	duration   time.Duration // stop after this long; 0 = no limit
	topics     []string      // job types; empty = every JobGen type, skewed
	seed       int64
	minSize    int
	maxSize    int
	delayRate  float64
	preciseDT  bool
	unique     bool
	workers    int
	props      map[string]string // librdkafka producer properties (-X)
	report     time.Duration
	maxPending int       // unacknowledged messages before generation waits
	pregen     bool      // make every event before the run; stamp meta.dt as each is sent
	client     string    // clientLibrdkafka or clientFranz
	franz      []kgo.Opt // with clientFranz: the client's options, from props
}

// kvFlags collects repeated -X key=value flags.
type kvFlags map[string]string

func (f kvFlags) String() string {
	var parts []string
	for k, v := range f {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

func (f kvFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	f[k] = v
	return nil
}

// parseLoadgenFlags reads and validates the flags, reporting every problem.
func parseLoadgenFlags(args []string, stderr io.Writer) (loadgenOptions, error) {
	o := loadgenOptions{props: kvFlags{}}
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.brokers, "brokers", "", "bootstrap.servers of the Kafka cluster (required)")
	fs.IntVar(&o.rate, "rate", 1000, "events per second; 0 produces as fast as the cluster takes them")
	fs.Int64Var(&o.n, "n", 0, "stop after this many events (0: no limit)")
	fs.DurationVar(&o.duration, "duration", 0, "stop after this long (0: no limit)")
	topics := fs.String("topics", "", "comma-separated job types or mediawiki.job.* topics (default: every generated type, skewed like production)")
	fs.Int64Var(&o.seed, "seed", 0, "generator seed (0: from the clock)")
	fs.IntVar(&o.minSize, "min-size", 512, "smallest event in bytes")
	fs.IntVar(&o.maxSize, "max-size", 4096, "largest event in bytes (0: no padding; generated events are 0.6-1.3 KB)")
	fs.Float64Var(&o.delayRate, "delay-rate", 0.02, "share of events with a delay_until 1-60s ahead")
	fs.BoolVar(&o.preciseDT, "precise-dt", true, "meta.dt with microseconds, for latency measurements")
	fs.BoolVar(&o.unique, "unique", false, "sha1 and root_event unique to each event: none is a duplicate, dedupe still runs")
	fs.IntVar(&o.workers, "workers", runtime.GOMAXPROCS(0), "generator goroutines")
	fs.Var(kvFlags(o.props), "X", "librdkafka producer property key=value (repeatable), e.g. -X linger.ms=0; "+
		"-client franz-go takes linger.ms, compression.type and acks")
	fs.StringVar(&o.client, "client", clientLibrdkafka, "Kafka client of the generator: "+clientLibrdkafka+
		" (the producer changeprop uses) or "+clientFranz+" (pure Go, less CPU per event)")
	fs.DurationVar(&o.report, "report", time.Second, "interval between progress lines (0: none)")
	fs.IntVar(&o.maxPending, "max-pending", 200_000, "unacknowledged messages before generation waits")
	fs.BoolVar(&o.pregen, "pregenerate", false, "make every event of the run (-n, or -rate × -duration) in memory before sending the first, "+
		"and stamp meta.dt and sign each as it is sent: the run then spends no CPU on generation")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for t := range strings.SplitSeq(*topics, ",") {
		if t = strings.TrimSpace(t); t != "" {
			o.topics = append(o.topics, strings.TrimPrefix(t, "mediawiki.job."))
		}
	}
	if o.seed == 0 {
		o.seed = time.Now().UnixNano()
	}
	err := o.validate()
	if o.client == clientFranz {
		var ferr error
		o.franz, ferr = franzOpts(o.props)
		err = errors.Join(err, ferr)
	}
	return o, err
}

func (o loadgenOptions) validate() error {
	var errs []error
	if o.brokers == "" {
		errs = append(errs, errors.New("-brokers is required"))
	}
	if o.rate < 0 {
		errs = append(errs, fmt.Errorf("-rate %d is negative", o.rate))
	}
	if o.n < 0 {
		errs = append(errs, fmt.Errorf("-n %d is negative", o.n))
	}
	if o.duration < 0 {
		errs = append(errs, fmt.Errorf("-duration %v is negative", o.duration))
	}
	if o.minSize < 0 || o.maxSize < 0 {
		errs = append(errs, fmt.Errorf("-min-size %d and -max-size %d must not be negative", o.minSize, o.maxSize))
	} else if o.maxSize > 0 && o.minSize > o.maxSize {
		errs = append(errs, fmt.Errorf("-min-size %d is above -max-size %d", o.minSize, o.maxSize))
	}
	if o.delayRate < 0 || o.delayRate > 1 {
		errs = append(errs, fmt.Errorf("-delay-rate %v is not within [0, 1]", o.delayRate))
	}
	if o.workers < 1 {
		errs = append(errs, fmt.Errorf("-workers %d: need at least 1", o.workers))
	}
	if o.report < 0 {
		errs = append(errs, fmt.Errorf("-report %v is negative", o.report))
	}
	if o.pregen && o.n == 0 && (o.rate == 0 || o.duration == 0) {
		errs = append(errs, errors.New("-pregenerate needs -n, or -rate and -duration"))
	}
	if o.client != clientFranz && o.client != clientLibrdkafka {
		errs = append(errs, fmt.Errorf("-client %q: want %s or %s", o.client, clientLibrdkafka, clientFranz))
	}
	if o.maxPending < 1 {
		errs = append(errs, fmt.Errorf("-max-pending %d: need at least 1", o.maxPending))
	}
	for _, t := range o.topics {
		if strings.ContainsAny(t, " /") {
			errs = append(errs, fmt.Errorf("-topics: %q is not a job type", t))
		}
	}
	return errors.Join(errs...)
}

// cmdLoadgen produces realistic job events into any Kafka, by default
// through the librdkafka producer changeprop itself uses.
//
//	changeprop loadgen -brokers 127.0.0.1:9092 -rate 2000 -duration 1m
//	changeprop loadgen -brokers 127.0.0.1:9092 -rate 0 -n 1000000 -max-size 0
func cmdLoadgen(args []string, stdout, stderr io.Writer) int {
	o, err := parseLoadgenFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 2
	}
	log, _ := newLogger(stderr, "warn")
	ctx, stop := signalContext(log)
	defer stop()
	prod, err := newLoadgenProducer(o, log)
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 1
	}
	lg := newLoadgen(o, prod)
	if o.pregen {
		t0 := time.Now()
		n, size := lg.pregenerate()
		fmt.Fprintf(stdout, "loadgen: made %d events (%.1f MB) in %.1fs before the run\n", n, float64(size)/1e6, time.Since(t0).Seconds())
	}
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		lg.run(ctx)
	}()
	var tick <-chan time.Time
	if o.report > 0 {
		t := time.NewTicker(o.report)
		defer t.Stop()
		tick = t.C
	}
	last, lastAt := int64(0), start
	for running := true; running; {
		select {
		case <-done:
			running = false
		case now := <-tick:
			p := lg.produced.Load()
			fmt.Fprintf(stdout, "%5.0fs  produced %9d  %8.0f/s  acknowledged %9d  errors %d\n",
				now.Sub(start).Seconds(), p, float64(p-last)/now.Sub(lastAt).Seconds(), lg.acked.Load(), lg.failed.Load())
			last, lastAt = p, now
		}
	}
	genEnd := time.Since(start)
	prod.Close(30 * time.Second)
	el := time.Since(start)
	p, b := lg.produced.Load(), lg.bytes.Load()
	fmt.Fprintf(stdout, "loadgen: produced %d events (%.1f MB, %.0f B average) in %.1fs: %.0f produced/s; %d acknowledged, %d failed (all acknowledged after %.1fs)\n",
		p, float64(b)/1e6, float64(b)/float64(max(p, 1)), genEnd.Seconds(), float64(p)/genEnd.Seconds(),
		lg.acked.Load(), lg.failed.Load(), el.Seconds())
	if lg.err != nil {
		fmt.Fprintln(stderr, "loadgen:", lg.err)
		return 1
	}
	if lg.failed.Load() > 0 || lg.acked.Load() < p {
		return 1
	}
	return 0
}

// producer is the part of kafka.Producer that loadgen uses.
type producer interface {
	ProduceAsync(topic string, partition int32, key, value []byte, done func(error)) error
}

// closingProducer is a producer that waits for its acknowledgements on Close.
type closingProducer interface {
	producer
	Close(timeout time.Duration)
}

// newLoadgenProducer connects the producer of -client.
func newLoadgenProducer(o loadgenOptions, log zerolog.Logger) (closingProducer, error) {
	if o.client == clientFranz {
		return newFranzProducer(o.brokers, o.franz)
	}
	props := map[string]string{"queue.buffering.max.messages": "1000000", "queue.buffering.max.kbytes": "1048576"}
	return kafka.NewProducer(kafka.ProducerConfig{
		Brokers:    o.brokers,
		Properties: []map[string]string{props, o.props},
		Log:        log.With().Str("client", "loadgen").Logger(),
	})
}

// loadgen generates and produces events; its counters are read while it runs.
type loadgen struct {
	o    loadgenOptions
	prod producer

	produced, bytes, acked, failed atomic.Int64
	acks                           chan struct{} // signalled on each acknowledgement while generation waits
	err                            error         // first produce error
	errOnce                        sync.Once

	pre     []pregenerated // with -pregenerate: every event of the run
	preNext atomic.Int64   // the next of pre to send
}

// pregenerated is an event made before the run.
type pregenerated struct {
	topic string
	value []byte
}

// errAllSent ends a run whose pregenerated events have all been sent.
var errAllSent = errors.New("every pregenerated event sent")

// pregenerate makes every event of the run, on o.workers goroutines, and
// returns how many and their bytes. A run at a rate for a duration gets
// 1% more than rate × duration, for the ticks' rounding.
func (l *loadgen) pregenerate() (n int, size int64) {
	n = int(l.o.n)
	if n == 0 {
		n = int(float64(l.o.rate)*l.o.duration.Seconds()) + l.o.rate/100 + 1
	}
	l.pre = make([]pregenerated, n)
	var wg sync.WaitGroup
	var bytes atomic.Int64
	for w := range l.o.workers {
		gen := l.newGen(w)
		wg.Go(func() {
			var b int64
			for i := w; i < n; i += l.o.workers {
				l.pre[i].topic, l.pre[i].value = l.generate(gen, i)
				b += int64(len(l.pre[i].value))
			}
			bytes.Add(b)
		})
	}
	wg.Wait()
	return n, bytes.Load()
}

// newGen returns worker w's generator.
func (l *loadgen) newGen(w int) *jobgen.Gen {
	gen := jobgen.New(l.o.seed + int64(w))
	gen.Now = time.Now
	gen.MinSize, gen.MaxSize = l.o.minSize, l.o.maxSize
	gen.DelayRate = l.o.delayRate
	gen.PreciseDT = l.o.preciseDT
	gen.Unique = l.o.unique
	return gen
}

// generate makes the k-th event of a worker: of the next job type of
// -topics in turn, or drawn from the skewed distribution without them.
func (l *loadgen) generate(gen *jobgen.Gen, k int) (topic string, value []byte) {
	if len(l.o.topics) == 0 {
		return gen.Next()
	}
	jt := l.o.topics[k%len(l.o.topics)]
	return jobgen.Topic(jt), gen.NextOfType(jt)
}

func newLoadgen(o loadgenOptions, prod producer) *loadgen {
	return &loadgen{o: o, prod: prod, acks: make(chan struct{}, 1)}
}

// run produces until ctx ends, n events were produced, or a produce fails.
// Workers take a ticket per event: with a rate, tickets are issued by a
// ticker; without one, as fast as the workers ask, bounded by maxPending.
func (l *loadgen) run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tickets := make(chan struct{}, 4096)
	go l.issue(ctx, tickets)
	var wg sync.WaitGroup
	for w := range l.o.workers {
		gen := l.newGen(w)
		wg.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-ctx.Done():
					return
				case _, ok := <-tickets:
					if !ok {
						return
					}
				}
				if err := l.produceOne(gen, k); err != nil {
					if !errors.Is(err, errAllSent) {
						l.errOnce.Do(func() { l.err = err })
					}
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
}

// issue hands out one ticket per event to produce, then closes tickets.
func (l *loadgen) issue(ctx context.Context, tickets chan<- struct{}) {
	defer close(tickets)
	var issued int64
	give := func() bool {
		if l.o.n > 0 && issued >= l.o.n {
			return false
		}
		select {
		case tickets <- struct{}{}:
			issued++
			return true
		case <-ctx.Done():
			return false
		}
	}
	if l.o.rate == 0 {
		for {
			for l.produced.Load()-l.acked.Load()-l.failed.Load() >= int64(l.o.maxPending) {
				select {
				case <-l.acks:
				case <-ctx.Done():
					return
				}
			}
			if !give() {
				return
			}
		}
	}
	// Every millisecond, catch up with rate × elapsed: a steady stream
	// rather than bursts (at 12,000/s a 10 ms tick released 120 events at
	// once, and the last of each burst waited for the others in every
	// process downstream, which a latency measurement then counted).
	start := time.Now()
	tick := time.NewTicker(issueTick)
	defer tick.Stop()
	for {
		due := int64(time.Since(start).Seconds() * float64(l.o.rate))
		for issued < due {
			if !give() {
				return
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// issueTick is how often a fixed rate's tickets are issued.
const issueTick = time.Millisecond

func (l *loadgen) produceOne(gen *jobgen.Gen, k int) error {
	var topic string
	var value []byte
	if l.pre != nil {
		i := l.preNext.Add(1) - 1
		if i >= int64(len(l.pre)) {
			return errAllSent
		}
		topic, value = l.pre[i].topic, l.pre[i].value
		l.pre[i] = pregenerated{} // the producer holds its own copy once it has it
		if err := jobgen.Restamp(value, time.Now()); err != nil {
			return err
		}
	} else {
		topic, value = l.generate(gen, k)
	}
	l.produced.Add(1)
	l.bytes.Add(int64(len(value)))
	err := l.prod.ProduceAsync(topic, -1, nil, value, func(err error) {
		if err != nil {
			l.failed.Add(1)
		} else {
			l.acked.Add(1)
		}
		select {
		case l.acks <- struct{}{}:
		default:
		}
	})
	if err != nil {
		l.produced.Add(-1)
		l.bytes.Add(-int64(len(value)))
	}
	return err
}
