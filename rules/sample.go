package rules

import (
	"gopkg.in/yaml.v3"
)

// Sample keeps a deterministic fraction of events: an event is kept when
// the hash of its HashTemplate expansion falls below Rate. The same hash
// key is always kept or always dropped, in every process.
type Sample struct {
	Rate         float64   // rate: 0 drops everything, 1 keeps everything
	HashTemplate *Template // hash_template; default {{message.meta.id}}
}

// DefaultSampleHash is the hash_template of a sample that names none.
const DefaultSampleHash = "{{message.meta.id}}"

// Keep reports whether the event whose scope is s is kept.
func (sm *Sample) Keep(s Scope) bool {
	if sm.Rate >= 1 {
		return true
	}
	if sm.Rate <= 0 {
		return false
	}
	var buf [128]byte
	key, _ := sm.HashTemplate.AppendText(buf[:0], s)
	return Fraction(key) < sm.Rate
}

// Fraction maps key to [0, 1) by its FNV-1a 64-bit hash: a stable,
// uniformly spread value for sampling.
func Fraction(key []byte) float64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for _, c := range key {
		h ^= uint64(c)
		h *= prime
	}
	// FNV's low bits mix poorly for short keys; fold the high half in.
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 32
	return float64(h>>11) / (1 << 53)
}

func (p *problems) compileSample(r *Rule, n *yaml.Node, path string) *Sample {
	o := p.object(path, n)
	s := &Sample{}
	rn, rpath := o.get("rate")
	if rn == nil {
		p.add(rpath, "required")
	} else if v, ok := p.float(rn, rpath); ok {
		if v < 0 || v > 1 {
			p.add(rpath, "invalid sample rate %v: must be between 0 and 1", v)
		}
		s.Rate = v
	}
	if hn, hpath := o.get("hash_template"); !isNull(hn) {
		s.HashTemplate = p.template(r, hn, hpath)
	}
	if s.HashTemplate == nil {
		s.HashTemplate = r.useDefault(DefaultSampleHash)
	}
	o.finish()
	return s
}
