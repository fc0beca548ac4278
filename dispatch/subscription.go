package dispatch

import "changeprop/rules"

// Subscription returns the resolver of a rule's subscription (for
// RunnerConfig.Resolve): from the cluster's topics it keeps those of the
// configured datacenter that the rule subscribes to (names, /regex/
// patterns minus exclude_topics) and the retry topics of those streams
// that exist. Resolving against the listing, rather than subscribing to
// names or patterns in librdkafka, picks up new topics at the next refresh
// and never fetches an excluded topic.
func Subscription(cfg *rules.Config, r *rules.Rule) func(all []string) []string {
	names := Names{ServiceName: cfg.ServiceName, DC: cfg.DC}
	return func(all []string) []string {
		exists := make(map[string]bool, len(all))
		for _, t := range all {
			exists[t] = true
		}
		var out []string
		for _, t := range all {
			name := cfg.TopicName(t)
			if cfg.DC != "" && name == t {
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
		return out
	}
}
