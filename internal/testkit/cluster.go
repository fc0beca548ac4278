package testkit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// ClusterOptions configures StartCluster. The zero value is a 3-broker
// in-memory cluster on random ports with no topics.
type ClusterOptions struct {
	// Brokers is the number of brokers; 0 means 3. When Ports is set it
	// must be 0 or len(Ports).
	Brokers int
	// Topics are created at start: topic name -> partitions. A partition
	// count below 1 means kfake's default (10). With DataDir, topics that
	// were persisted before are loaded instead.
	Topics map[string]int
	// DataDir, if set, makes kfake persist topics, records, committed
	// offsets and producer state there (kfake.DataDir); a later cluster
	// started on the same directory resumes from it. Empty means memory
	// only.
	DataDir string
	// Ports are fixed listen ports on 127.0.0.1, one per broker (dev mode
	// wants 9092). Nil means random free ports.
	Ports []int
	// TLS, when set, makes every listener TLS only, with this server
	// configuration; the cluster's own clients then use ClientTLS.
	TLS       *tls.Config
	ClientTLS *tls.Config
	// SASL, when not empty, requires SASL authentication of every client.
	// The first user is a superuser and the one the cluster's own clients
	// log in as.
	SASL []SASLUser
	// MaxMessageBytes, when positive, is the largest record batch the
	// brokers and the shared producer take (kfake's default is about 1 MB).
	MaxMessageBytes int
	// SegmentBytes, when positive, is the size at which a partition's log
	// segment rolls (log.segment.bytes); 0 means defaultSegmentBytes.
	SegmentBytes int
}

// SASLUser is a user of a SASL cluster. Mechanism is PLAIN, SCRAM-SHA-256
// or SCRAM-SHA-512.
type SASLUser struct{ Mechanism, User, Password string }

func (u SASLUser) mechanism() (sasl.Mechanism, error) {
	switch u.Mechanism {
	case "PLAIN":
		return plain.Auth{User: u.User, Pass: u.Password}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: u.User, Pass: u.Password}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: u.User, Pass: u.Password}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("SASL mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", u.Mechanism)
}

// Defaults for the cluster, in one place.
const (
	defaultBrokers = 3
	// groupMinSessionTimeout replaces kfake's 6 s minimum so in-process
	// consumer groups settle quickly after a member dies.
	groupMinSessionTimeout = 100 * time.Millisecond
	// produceLinger is small: Produce is synchronous, so lingering only
	// batches records handed over in the same call.
	produceLinger = 2 * time.Millisecond
	// defaultSegmentBytes replaces kfake's 100 MiB segments. kfake keeps
	// the active segment of a memory-only cluster in a byte slice that
	// doubles as it fills, copied in the goroutine that serves every
	// request: each doubling past 32 MiB stopped the whole cluster for
	// tens to hundreds of milliseconds (docs/benchmarks.md, "The
	// cluster's segments"). A 2 MiB segment is copied in well under a
	// millisecond and still holds any record batch we produce.
	defaultSegmentBytes = 2 << 20
)

func (o ClusterOptions) validate() error {
	var errs []error
	if o.Brokers < 0 {
		errs = append(errs, fmt.Errorf("Brokers: %d is negative", o.Brokers))
	}
	if len(o.Ports) > 0 && o.Brokers != 0 && o.Brokers != len(o.Ports) {
		errs = append(errs, fmt.Errorf("Brokers: %d does not match the %d Ports", o.Brokers, len(o.Ports)))
	}
	for i, p := range o.Ports {
		if p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("Ports[%d]: %d is not a TCP port", i, p))
		}
	}
	for t := range o.Topics {
		if t == "" {
			errs = append(errs, errors.New("Topics: empty topic name"))
		}
	}
	for i, u := range o.SASL {
		if _, err := u.mechanism(); err != nil {
			errs = append(errs, fmt.Errorf("SASL[%d]: %w", i, err))
		}
	}
	if (o.TLS == nil) != (o.ClientTLS == nil) {
		errs = append(errs, errors.New("TLS and ClientTLS go together"))
	}
	if o.SegmentBytes < 0 {
		errs = append(errs, fmt.Errorf("SegmentBytes: %d is negative", o.SegmentBytes))
	}
	return errors.Join(errs...)
}

// Cluster is an in-process Kafka-protocol cluster (kfake) listening on
// 127.0.0.1, with one shared idempotent producer client and an admin client
// for the helpers. It allows automatic topic creation. All methods are safe
// for concurrent use.
type Cluster struct {
	fake  *kfake.Cluster
	addrs []string
	copts []kgo.Opt   // TLS, SASL and size options of every client of ours
	prod  *kgo.Client // shared producer; auto-creates topics
	admCl *kgo.Client // admin requests; never auto-creates a topic it asks about
	adm   *kadm.Client
}

// StartCluster starts a cluster and its shared client. Close it when done.
func StartCluster(opts ClusterOptions) (*Cluster, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("testkit: cluster options: %w", err)
	}
	kopts := []kfake.Opt{
		kfake.GroupMinSessionTimeout(groupMinSessionTimeout),
		kfake.AllowAutoTopicCreation(),
	}
	switch {
	case len(opts.Ports) > 0:
		kopts = append(kopts, kfake.Ports(opts.Ports...))
	case opts.Brokers > 0:
		kopts = append(kopts, kfake.NumBrokers(opts.Brokers))
	default:
		kopts = append(kopts, kfake.NumBrokers(defaultBrokers))
	}
	for t, p := range opts.Topics {
		kopts = append(kopts, kfake.SeedTopics(int32(p), t))
	}
	if opts.DataDir != "" {
		kopts = append(kopts, kfake.DataDir(opts.DataDir))
	}
	// Options of the cluster's own clients.
	var copts []kgo.Opt
	if opts.TLS != nil {
		kopts = append(kopts, kfake.TLS(opts.TLS))
		copts = append(copts, kgo.DialTLSConfig(opts.ClientTLS))
	}
	for i, u := range opts.SASL {
		if i == 0 {
			kopts = append(kopts, kfake.EnableSASL(), kfake.Superuser(u.Mechanism, u.User, u.Password))
			m, _ := u.mechanism()
			copts = append(copts, kgo.SASL(m))
			continue
		}
		kopts = append(kopts, kfake.User(u.Mechanism, u.User, u.Password))
	}
	prodOpts := []kgo.Opt{
		kgo.AllowAutoTopicCreation(),
		kgo.ProducerLinger(produceLinger),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotence needs acks=all; this is kgo's default, stated
		kgo.RecordPartitioner(newPartitioner()),
	}
	segmentBytes := opts.SegmentBytes
	if segmentBytes == 0 {
		segmentBytes = defaultSegmentBytes
	}
	kopts = append(kopts, kfake.BrokerConfigs(map[string]string{"log.segment.bytes": strconv.Itoa(segmentBytes)}))
	if n := opts.MaxMessageBytes; n > 0 {
		kopts = append(kopts, kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(n)}))
		prodOpts = append(prodOpts, kgo.ProducerBatchMaxBytes(int32(n)), kgo.BrokerMaxWriteBytes(int32(2*n)))
		copts = append(copts, kgo.BrokerMaxReadBytes(int32(2*n)), kgo.FetchMaxBytes(int32(2*n)))
	}
	fake, err := kfake.NewCluster(kopts...)
	if err != nil {
		return nil, fmt.Errorf("testkit: start kfake: %w", err)
	}
	addrs := fake.ListenAddrs()
	copts = append(copts, kgo.SeedBrokers(addrs...))
	prod, err := kgo.NewClient(append(prodOpts, copts...)...)
	if err != nil {
		fake.Close()
		return nil, fmt.Errorf("testkit: producer client: %w", err)
	}
	admCl, err := kgo.NewClient(copts...)
	if err != nil {
		prod.Close()
		fake.Close()
		return nil, fmt.Errorf("testkit: admin client: %w", err)
	}
	return &Cluster{fake: fake, addrs: addrs, copts: copts, prod: prod, admCl: admCl, adm: kadm.NewClient(admCl)}, nil
}

// Addr returns the brokers in bootstrap.servers form:
// "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3".
func (c *Cluster) Addr() string { return strings.Join(c.addrs, ",") }

// Kfake returns the underlying kfake cluster, for fault injection
// (Control, MoveTopicPartition, RemoveNode, ...).
func (c *Cluster) Kfake() *kfake.Cluster { return c.fake }

// CreateTopic creates a topic with the given partitions (replication is
// kfake's default). An existing topic is an error that wraps
// kerr.TopicAlreadyExists.
func (c *Cluster) CreateTopic(ctx context.Context, name string, partitions int) error {
	if partitions < 1 {
		return fmt.Errorf("testkit: create topic %q: partitions %d < 1", name, partitions)
	}
	if _, err := c.adm.CreateTopic(ctx, int32(partitions), -1, nil, name); err != nil {
		return fmt.Errorf("testkit: create topic %q: %w", name, err)
	}
	return nil
}

// EndOffsets returns the high watermark of every partition of topic.
// A topic that does not exist is an error.
func (c *Cluster) EndOffsets(ctx context.Context, topic string) (map[int32]int64, error) {
	return c.listOffsets(ctx, topic, c.adm.ListEndOffsets)
}

// startOffsets returns the log start offset of every partition of topic.
func (c *Cluster) startOffsets(ctx context.Context, topic string) (map[int32]int64, error) {
	return c.listOffsets(ctx, topic, c.adm.ListStartOffsets)
}

func (c *Cluster) listOffsets(ctx context.Context, topic string, list func(context.Context, ...string) (kadm.ListedOffsets, error)) (map[int32]int64, error) {
	listed, err := list(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("testkit: list offsets of %q: %w", topic, err)
	}
	if err := listed.Error(); err != nil {
		return nil, fmt.Errorf("testkit: list offsets of %q: %w", topic, err)
	}
	out := make(map[int32]int64, len(listed[topic]))
	for p, o := range listed[topic] {
		out[p] = o.Offset
	}
	return out, nil
}

// Committed returns the offsets that consumer group has committed for
// topic, by partition. A partition without a commit is absent, so is a
// group that does not exist.
func (c *Cluster) Committed(ctx context.Context, group, topic string) (map[int32]int64, error) {
	resps, err := c.adm.FetchOffsetsForTopics(ctx, group, topic)
	if errors.Is(err, kerr.GroupIDNotFound) {
		// kfake answers GROUP_ID_NOT_FOUND for a group that never
		// committed, where Kafka answers -1 offsets.
		return map[int32]int64{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("testkit: committed offsets of group %q topic %q: %w", group, topic, err)
	}
	out := make(map[int32]int64)
	var errs []error
	for p, r := range resps[topic] {
		switch {
		case r.Err != nil:
			errs = append(errs, fmt.Errorf("partition %d: %w", p, r.Err))
		case r.At >= 0:
			out[p] = r.At
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("testkit: committed offsets of group %q topic %q: %w", group, topic, err)
	}
	return out, nil
}

// Close closes the shared client and shuts the cluster down. With a
// DataDir the state stays on disk.
func (c *Cluster) Close() {
	c.prod.Close()
	c.admCl.Close()
	c.fake.Close()
}
