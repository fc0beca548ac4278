package dispatch

import "time"

// The scheduling of a Runner, all on its poll goroutine. A job read from a
// partition is classified at once (parse, match, delays); then it
//
//   - finishes on the spot (not for this rule, sampled out, too old), or
//   - waits in the delay queue for its time (a retry not yet due, a delayed
//     job, a rate limit, an open breaker), holding no slot, or
//   - goes to its partition's backlog, from which at most
//     partition_concurrency jobs of the partition are admitted to the
//     rule's lanes, which start them by concurrency key (key_concurrency,
//     ordered) while the rule has fewer than concurrency in flight.
//
// When the backlogs together reach MaxBacklog the loop stops taking
// messages from the client until jobs are admitted. A partition pauses in
// the consumer while one of its jobs waits for an open breaker, while it
// has too many jobs in the delay queue, or while it alone fills most of
// the read-ahead with jobs that cannot start although the rule has room
// (stuck); it resumes when none of that holds.

// accept takes a message read from its partition.
func (r *Runner) accept(m *Message) {
	p := r.parts[m.TopicPartition]
	if p == nil {
		// Not assigned (a stale fetch around a rebalance): the owner reads it.
		return
	}
	if p.track.last >= 0 && m.Offset <= p.track.last {
		return // already read
	}
	r.stats.Consumed.Add(1)
	p.consumed.Add(1)
	p.track.add(m.Offset)
	j := &job{p: p, msg: m}
	switch n, out := r.h.classify(j, r.now()); n {
	case nextFinish:
		r.stats.count(out)
		p.track.done(m.Offset)
	case nextWait:
		r.stats.count(outcomeDelayed)
		r.wait(j)
	case nextRun:
		p.backlog = append(p.backlog, j)
		r.backlogN++
		r.admit(p)
		r.start()
	}
	r.pauseIfBusy(p)
}

// wait puts j in the delay queue until j.due.
func (r *Runner) wait(j *job) {
	j.p.delayed++
	if j.blocked {
		j.p.blocked++
	}
	r.delays.push(j)
	r.pauseIfBusy(j.p)
}

// admit moves jobs from p's backlog to the lanes while p has fewer than
// partition_concurrency jobs there. A job over its key's rate limit waits
// in the delay queue for its token first.
func (r *Runner) admit(p *part) {
	now := time.Time{}
	for len(p.backlog) > 0 && p.admitted < r.partLimit && !r.draining && !p.revoking {
		j := p.backlog[0]
		p.backlog[0] = nil
		p.backlog = p.backlog[1:]
		r.backlogN--
		if !j.rated && r.h.rateLimited {
			if now.IsZero() {
				now = r.now()
			}
			j.rated = true
			if d := r.limiters.ReserveAt(j.rateKey, now); d > 0 {
				j.due = now.Add(d)
				r.wait(j)
				continue
			}
		}
		p.admitted++
		r.lanes.Push(j.key, j)
	}
	if len(p.backlog) == 0 {
		p.backlog = p.backlog[:0:0]
	}
	r.resumeIfIdle(p)
}

// start starts the jobs the lanes let go while the rule has room.
func (r *Runner) start() {
	for r.inflight < r.limit && !r.draining {
		_, j, ok := r.lanes.Next()
		if !ok {
			return
		}
		j.p.inflight++
		r.inflight++
		r.peak = max(r.peak, r.inflight)
		r.stats.InFlight.Add(1)
		if r.inflight <= r.workers {
			select {
			case r.work1 <- j:
				continue
			default:
				// Every slot of the hand-over is taken (concurrency
				// was raised live past it): one more worker.
			}
		}
		r.workers++
		go r.work(j)
	}
}

// work is a worker: it runs one pass of j, then of each job it is handed,
// reporting each back, until it is handed nil or the channel closes.
// Workers outlive their jobs so that their stacks, grown once by the HTTP
// exchange, are not grown again for every job.
func (r *Runner) work(j *job) {
	for ; j != nil; j = <-r.work1 {
		out := r.h.handle(r.workCtx, j)
		r.completions <- completion{j: j, out: out}
	}
}

// trimWorkers retires the workers that were idle since the last trim:
// there are never fewer workers than jobs in flight, and only as many
// more as the busiest moment since then needed.
func (r *Runner) trimWorkers() {
	for keep := max(r.peak, r.inflight); r.workers > keep; r.workers-- {
		select {
		case r.work1 <- nil:
		default:
			r.peak = r.inflight
			return // the hand-over is full: retire them next time
		}
	}
	r.peak = r.inflight
}

func (r *Runner) drainCompletions() {
	for {
		select {
		case c := <-r.completions:
			r.complete(c)
		default:
			return
		}
	}
}

// complete records a pass of a job: finished, or waiting for a time.
func (r *Runner) complete(c completion) {
	j, p := c.j, c.j.p
	r.lanes.Done(j.key)
	r.inflight--
	p.inflight--
	p.admitted--
	r.stats.InFlight.Add(-1)
	r.stats.count(c.out)
	if !p.gone {
		switch {
		case c.out == outcomeDelayed:
			r.wait(j)
		case c.out.finished():
			p.track.done(j.msg.Offset)
		}
		r.admit(p)
	}
	r.start()
}

// releaseDue moves the jobs whose time has come from the delay queue back
// to their partitions' backlogs.
func (r *Runner) releaseDue(now time.Time) {
	released := false
	for {
		j := r.delays.popDue(now)
		if j == nil {
			break
		}
		p := j.p
		if p.gone {
			continue
		}
		p.delayed--
		if j.blocked {
			j.blocked = false
			p.blocked--
		}
		p.backlog = append(p.backlog, j)
		r.backlogN++
		r.admit(p)
		r.pauseIfBusy(p)
		released = true
	}
	if released {
		r.start()
	}
}

// pauseIfBusy pauses p while one of its jobs waits for an open breaker,
// while too many wait for their time, or while it alone holds three
// quarters of the rule's read-ahead (a stuck partition among others);
// resumeIfIdle undoes it. Pausing is for these cases only: the client
// drops what it prefetched for a paused partition and takes long to refill
// it, so a rule that is merely busy stops polling instead (Run).
func (r *Runner) pauseIfBusy(p *part) {
	if p.blocked > 0 || p.delayed >= r.maxDelayed || r.stuck(p) {
		r.pause(p)
	}
}

// stuck reports whether p holds most of the read-ahead with jobs that
// cannot start although the rule has room: its admitted jobs wait for
// partition_concurrency or their keys. Pausing it lets the loop read the
// other partitions. A partition that is only busy, with the rule full of
// jobs, is not stuck: pausing it would help no other partition, and a
// resumed partition takes long to refill (a hot partition was paused and
// resumed all through a drain, at a third of the jobs/s).
func (r *Runner) stuck(p *part) bool {
	return len(r.order) > 1 && len(p.backlog) >= r.maxBacklog*3/4 && r.inflight < r.limit
}

func (r *Runner) resumeIfIdle(p *part) {
	if p.blocked == 0 && p.delayed < r.maxDelayed && len(p.backlog) <= r.maxBacklog/4 {
		r.resume(p)
	}
}

func (r *Runner) pause(p *part) {
	if p.paused || p.gone {
		return
	}
	if err := r.cfg.Source.Pause([]TopicPartition{p.tp}); err != nil {
		r.cfg.Log.Warn().Err(err).Str("topic", p.tp.Topic).Int32("partition", p.tp.Partition).Msg("pause")
		return
	}
	p.paused = true
}

func (r *Runner) resume(p *part) {
	if !p.paused || p.gone || r.draining || r.held {
		return
	}
	if err := r.cfg.Source.Resume([]TopicPartition{p.tp}); err != nil {
		r.cfg.Log.Warn().Err(err).Str("topic", p.tp.Topic).Int32("partition", p.tp.Partition).Msg("resume")
		return
	}
	p.paused = false
}

// dropWaiting removes from the lanes the waiting jobs of the partitions
// drop selects; the others keep their order.
func (r *Runner) dropWaiting(drop func(*part) bool) {
	for _, j := range r.lanes.Drain() {
		if drop(j.p) {
			j.p.admitted--
			continue
		}
		r.lanes.Push(j.key, j)
	}
}
