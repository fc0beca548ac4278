// Package rules reads changeprop's configuration and decides, for one
// event, what to do with it.
//
// It parses and validates the YAML configuration (service.md) and its rules
// (rules.md), compiles every match pattern and template once, matches
// events against rules, expands the exec templates of a match into HTTP
// requests (or, for an exec kafka:///<stream>, into events to produce),
// builds and reads the Action API requests of fanout rules and the PURGE
// requests of purge rules, and maps each response to an Outcome. Handling
// an event never parses a pattern or a template, and Rule.ParseEvent
// decodes only the parts of an event that its rule can read
// (projection.go).
//
// It does not talk to Kafka, HTTP servers or Redis, and it does not log:
// the dispatcher does all of that with what this package returns. Loading
// reports every problem of a file at once, each as "path: problem".
//
// Usage:
//
//	cfg, err := rules.Load(data, os.Getenv)
//	if err != nil {
//		return err // every problem, joined
//	}
//	for _, r := range cfg.Rules {
//		for _, inst := range r.Instances() { // a purge rule: one per cache
//			// subscribe to cfg.ConsumeTopic(t.Name) for t in inst.Topics ...
//		}
//	}
//
//	ev, err := rule.ParseEvent(msg.Value) // ErrNotJSON, ErrNoMeta: error topic
//	m, ok := rule.Match(ev)
//	if !ok {
//		return // not for this rule: commit
//	}
//	reqs, err := m.Requests(ev)
//	for _, req := range reqs {
//		status, header, err := send(ctx, req)
//		switch rule.Classify(status, header, err) {
//		case rules.Done, rules.Ignored: // next request, or commit
//		case rules.Retry: // retry topic after rule.RetryDelayFor(n), or error topic
//		case rules.RetryReadonly: // retry topic, same retries left
//		case rules.Failed: // error topic
//		}
//	}
package rules
