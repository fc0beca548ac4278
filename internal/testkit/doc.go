// Package testkit provides the real edges changeprop's integration tests
// and `changeprop dev` run against, all in process and without cgo:
//
//   - Cluster: a Kafka-protocol cluster (franz-go's kfake) on 127.0.0.1
//     with 3 brokers, auto topic creation, a 100 ms minimum group session
//     timeout, and helpers to create topics, produce synchronously, read a
//     topic back, and look at end offsets and a group's committed offsets.
//   - JobRunner: an HTTP server that answers like MediaWiki's
//     RunSingleJob.php (405, 400, 200, 500, 500 + X-Readonly) with seeded
//     failure rates and latency, and records every request.
//   - ActionAPI: an HTTP server that answers MediaWiki Action API list
//     queries (list=backlinks, list=embeddedin) from a fixed map of
//     dependent pages, paging with continue tokens, and records them.
//
// It does not: run a real Kafka or MediaWiki, simulate broker failures on
// its own (use Cluster.Kfake for kfake's fault injection), or bound
// kfake's memory, which grows with everything produced (restart the
// cluster between heavy suites). Only testing.go imports package testing,
// for the NewCluster, NewJobRunner and NewActionAPI constructors; dev mode uses
// StartCluster and StartJobRunner.
//
// Usage in a test:
//
//	kafka := testkit.NewCluster(t, testkit.ClusterOptions{
//		Topics: map[string]int{"mediawiki.job.refreshLinks": 4},
//	})
//	runner := testkit.NewJobRunner(t, testkit.JobRunnerOptions{Seed: 1, FailureRate: 0.1, KeepBodies: true})
//	gen := jobgen.New(1)
//	var recs []testkit.Record
//	for range 100 {
//		v := gen.NextOfType("refreshLinks")
//		recs = append(recs, testkit.Record{Topic: "mediawiki.job.refreshLinks", Partition: testkit.AnyPartition, Value: v})
//	}
//	if err := kafka.Produce(ctx, recs...); err != nil {
//		t.Fatal(err)
//	}
//	// start changeprop with kafka.Addr() and runner.URL()+testkit.RunSingleJobPath ...
//	if err := runner.WaitFor(ctx, 90); err != nil {
//		t.Fatal(err)
//	}
//	committed, err := kafka.Committed(ctx, "changeprop-refreshLinks", "mediawiki.job.refreshLinks")
package testkit
