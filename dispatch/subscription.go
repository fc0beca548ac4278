package dispatch

import "changeprop/rules"

// Subscription returns the resolver of a rule's subscription (for
// RunnerConfig.Resolve): from the cluster's topics it keeps those of the
// datacenter it consumes (consume_dc) that the rule subscribes to (names,
// /regex/ patterns minus exclude_topics), the retry topics of those
// streams that exist (written with produce_dc), and for a fanout rule its
// continuation topic once it exists. Resolving against the listing, rather than subscribing to
// names or patterns in librdkafka, picks up new topics at the next refresh
// and never fetches an excluded topic.
func Subscription(cfg *rules.Config, r *rules.Rule) func(all []string) []string {
	names := NamesFor(cfg)
	return func(all []string) []string {
		exists := make(map[string]bool, len(all))
		for _, t := range all {
			exists[t] = true
		}
		var out []string
		for _, t := range all {
			name := cfg.TopicName(t)
			if cfg.ConsumeDC != "" && name == t {
				continue // not of this datacenter
			}
			if !r.Subscribes(name) {
				continue
			}
			out = append(out, t)
			if retry := names.Retry(name); exists[retry] {
				out = append(out, retry)
			}
		}
		if r.Fanout != nil {
			if c := names.Continue(r.Name); exists[c] {
				out = append(out, c)
			}
		}
		return out
	}
}
