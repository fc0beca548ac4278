// Command bare is the baseline changeprop is measured against: a bare
// consume -> POST loop with librdkafka (confluent-kafka-go) and net/http,
// with no rules, no per-event parsing and no offset discipline (librdkafka
// auto-commits). Messages go to a fixed number of worker goroutines, each
// POSTing the message value as is to -url over keep-alive connections.
//
//	bare -brokers 127.0.0.1:PORT -topics mediawiki.job.refreshLinks -url http://127.0.0.1:9005/rpc/RunSingleJob.php -n 100000
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

func main() {
	brokers := flag.String("brokers", "", "bootstrap.servers")
	topics := flag.String("topics", "", "comma-separated topics (^regex allowed)")
	group := flag.String("group", "bare", "consumer group")
	url := flag.String("url", "", "where to POST every message")
	concurrency := flag.Int("concurrency", 100, "POSTs in flight")
	n := flag.Int64("n", 0, "stop after this many POSTs (0: until SIGTERM)")
	reset := flag.String("offset-reset", "earliest", "auto.offset.reset")
	props := map[string]string{}
	flag.Func("X", "librdkafka consumer property key=value (repeatable)", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return fmt.Errorf("want key=value, got %q", s)
		}
		props[k] = v
		return nil
	})
	flag.Parse()
	if *brokers == "" || *topics == "" || *url == "" || *concurrency < 1 {
		fmt.Fprintln(os.Stderr, "bare: -brokers, -topics and -url are required; -concurrency >= 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	cm := ck.ConfigMap{
		"bootstrap.servers":   *brokers,
		"group.id":            *group,
		"auto.offset.reset":   *reset,
		"enable.metrics.push": false,
	}
	for k, v := range props {
		cm[k] = v
	}
	c, err := ck.NewConsumer(&cm)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bare:", err)
		os.Exit(1)
	}
	if err := c.SubscribeTopics(strings.Split(*topics, ","), nil); err != nil {
		fmt.Fprintln(os.Stderr, "bare:", err)
		os.Exit(1)
	}
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: *concurrency,
		IdleConnTimeout:     90 * time.Second,
	}}
	work := make(chan []byte, *concurrency)
	var sent, failed atomic.Int64
	var wg sync.WaitGroup
	for range *concurrency {
		wg.Go(func() {
			for body := range work {
				resp, err := client.Post(*url, "application/json", bytes.NewReader(body))
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if sent.Add(1) == *n {
					stop()
				}
			}
		})
	}
	start := time.Now()
	var read int64
	for ctx.Err() == nil && (*n == 0 || read < *n) {
		switch ev := c.Poll(100).(type) {
		case *ck.Message:
			if ev.TopicPartition.Error != nil {
				continue
			}
			select {
			case work <- ev.Value:
				read++
			case <-ctx.Done():
			}
		case ck.Error:
			fmt.Fprintln(os.Stderr, "bare:", ev)
		}
	}
	close(work)
	wg.Wait()
	el := time.Since(start).Seconds()
	fmt.Printf("bare: %d POSTs (%d failed) in %.1fs: %.0f/s\n", sent.Load(), failed.Load(), el, float64(sent.Load())/el)
	_ = c.Close()
}
