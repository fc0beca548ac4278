// Package breaker holds changeprop's circuit breakers: one sony/gobreaker
// two-step breaker per destination (scheme://host:port of an exec URI, or
// any other key a rule chooses), created on first use and evicted when idle,
// plus Retry-After backoffs and a Prometheus collector of their state.
//
// It decides whether a request may be sent and records how it went; it does
// not send, retry, pause partitions or log. Those are package dispatch's:
// when Allow refuses, dispatch parks the event and pauses its partition with
// a timer for WaitUntil (or until OnStateChange reports a change), never a
// sleep. It imports nothing from changeprop and builds without cgo.
//
// A request is counted by when it finishes, in a rolling window of
// Settings.Interval, so requests slower than the window (timeouts) still
// count; gobreaker keeps the state machine (closed, open, half-open).
//
// Time is read with time.Now, because gobreaker has no clock of its own;
// tests drive it with testing/synctest.
//
//	set := breaker.NewSet(breaker.Settings{FailureRatio: 0.5, MinRequests: 20},
//		breaker.OnStateChange(func(dest string, from, to breaker.State) { ... }))
//	reg.MustRegister(set.Collector())
//
//	dest := breaker.Destination(uri) // "http://jobrunner.svc:80"
//	done, err := set.Allow(dest)
//	if err != nil { // ErrOpen or ErrBackoff: wait, do not fail the event
//		pauseUntil(set.WaitUntil(dest))
//		return
//	}
//	resp, err := client.Do(req)
//	status := 0
//	if resp != nil {
//		status = resp.StatusCode
//		if t, ok := breaker.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok &&
//			(status == 429 || status == 503) {
//			set.Backoff(dest, t)
//		}
//	}
//	done(breaker.IsFailure(status, err))
package breaker
