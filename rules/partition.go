package rules

import (
	"strings"

	"gopkg.in/yaml.v3"
)

// Partitioner makes a rule repartition its events instead of executing them.
type Partitioner struct {
	// Stream is partition_stream, the template of the destination topic
	// (before the dc prefix), e.g. cpjobqueue.partitioned.{{message.meta.stream}}.
	Stream *Template
	// Key is partition_key, a dotted path in the event ("database").
	Key string
	// Map is partition_map: key value -> partition. Nil means a stable hash
	// of the value modulo the partition count.
	Map map[string]int
	// Default is partition_default: the partition of values not in Map.
	Default int

	key  []segment
	rule *Rule // the rule it belongs to
}

// KeyValue returns the event's value at Key as text ("" when absent).
func (p *Partitioner) KeyValue(ev *Event) string {
	var v any = p.rule.eventFor(ev).Message
	for _, s := range p.key {
		v = step(v, s)
	}
	return string(appendValue(nil, v))
}

func (p *problems) decodePartitioner(r *Rule, o *object) {
	sn, spath := o.get("partition_stream")
	kn, kpath := o.get("partition_key")
	mn, mpath := o.get("partition_map")
	dn, dpath := o.get("partition_default")
	if sn == nil {
		for _, x := range []struct {
			n    *yaml.Node
			path string
		}{{kn, kpath}, {mn, mpath}, {dn, dpath}} {
			if x.n != nil {
				p.add(x.path, "needs partition_stream")
			}
		}
		return
	}
	pt := &Partitioner{rule: r}
	pt.Stream = p.template(r, sn, spath)
	if kn == nil {
		p.add(kpath, "required with partition_stream")
	} else if key, ok := p.str(kn, kpath); ok {
		pt.Key = key
		for _, s := range strings.Split(key, ".") {
			if s == "" {
				p.add(kpath, "bad path %q", key)
				break
			}
			pt.key = append(pt.key, newSegment(s))
		}
	}
	if !isNull(mn) {
		mo := p.object(mpath, mn)
		pt.Map = make(map[string]int, len(mo.entries))
		for _, e := range mo.entries {
			e.used = true
			if v, ok := p.integer(e.node, e.path); ok {
				if v < 0 {
					p.add(e.path, "must not be negative")
				}
				pt.Map[e.key] = v
			}
		}
	}
	if dn != nil {
		if v, ok := p.integer(dn, dpath); ok {
			if v < 0 {
				p.add(dpath, "must not be negative")
			}
			pt.Default = v
		}
	}
	r.Partition = pt
}
