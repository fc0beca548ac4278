// Package kafka adapts confluent-kafka-go (librdkafka) to the small
// interfaces that package dispatch declares: Consumer is a dispatch.Source,
// Producer writes events and waits for their acknowledgement.
//
// It is the only cgo package besides cmd/changeprop. It holds no dispatch
// logic: offsets, pausing and commits are decided by dispatch.Runner.
//
//	c, err := kafka.NewConsumer(kafka.ConsumerConfig{
//		Brokers: "127.0.0.1:9092", GroupID: "cpjobqueue-refreshLinks", Log: log,
//	})
//	runner := dispatch.NewRunner(dispatch.RunnerConfig{Source: c, ...})
package kafka
