// Command cluster runs an in-memory Kafka-protocol cluster (kfake, through
// internal/testkit) in a process of its own, so that a benchmark measures
// changeprop's process without the broker in it. It prints the
// bootstrap.servers address on the first line of standard output and runs
// until SIGTERM/SIGINT or until standard input closes.
//
//	cluster -brokers 1 -partitions 4 -topics mediawiki.job.refreshLinks,mediawiki.job.cdnPurge
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"changeprop/internal/testkit"
)

func main() {
	brokers := flag.Int("brokers", 1, "number of brokers")
	partitions := flag.Int("partitions", 4, "partitions of each topic in -topics")
	topics := flag.String("topics", "", "comma-separated topics to create; NAME:P gives a topic P partitions")
	segmentBytes := flag.Int("segment-bytes", 0, "log.segment.bytes of the brokers; 0: testkit's default (2 MiB; kfake's own is 100 MiB)")
	flag.Parse()

	want := map[string]int{}
	for t := range strings.SplitSeq(*topics, ",") {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		name, p := t, *partitions
		if i := strings.LastIndexByte(t, ':'); i > 0 {
			if _, err := fmt.Sscan(t[i+1:], &p); err != nil {
				fmt.Fprintf(os.Stderr, "cluster: topic %q: bad partition count\n", t)
				os.Exit(2)
			}
			name = t[:i]
		}
		want[name] = p
	}
	c, err := testkit.StartCluster(testkit.ClusterOptions{Brokers: *brokers, Topics: want, SegmentBytes: *segmentBytes})
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
	defer c.Close()
	fmt.Println(c.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	<-ctx.Done()
}
