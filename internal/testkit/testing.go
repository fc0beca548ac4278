package testkit

import "testing"

// This file and redis.go are the only ones outside tests that import testing.

// NewCluster starts a cluster for the test, fails the test if it cannot,
// and closes it when the test ends.
func NewCluster(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	c, err := StartCluster(opts)
	if err != nil {
		t.Fatalf("testkit: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// NewJobRunner starts a JobRunner for the test and closes it when the
// test ends.
func NewJobRunner(t testing.TB, opts JobRunnerOptions) *JobRunner {
	t.Helper()
	j := StartJobRunner(opts)
	t.Cleanup(j.Close)
	return j
}

// NewActionAPI starts an ActionAPI for the test and closes it when the
// test ends.
func NewActionAPI(t testing.TB, opts ActionAPIOptions) *ActionAPI {
	t.Helper()
	a := StartActionAPI(opts)
	t.Cleanup(a.Close)
	return a
}
