package proxy

import (
	"container/heap"
	"fmt"
	"slices"
	"time"
)

// group is a set of proxies that serve the same domains, with the state
// of the strategies over it.
type group struct {
	name    string // the partition's domain, "" for the rest, "*" for all
	members []*member
	rr      []int // a cycle over members, for round-robin
	rrPos   int
	lru     lruHeap
	scratch []*member
	stack   []int // for walks of lru
	// open counts the members whose cap lets them take a lease (see
	// Pool.openLocked): with none, no pick needs to look.
	open int
	// stuckSince is when a request first found no proxy of the group
	// usable since one last worked; zero while one is.
	stuckSince time.Time
}

// member is an entry's place in one group's LRU heap.
type member struct {
	e *entry
	g *group
	i int // heap index
}

func (p *Pool) newGroup(name string, es []*entry) *group {
	g := &group{name: name}
	for _, e := range es {
		m := &member{e: e, g: g}
		e.members = append(e.members, m)
		g.members = append(g.members, m)
	}
	g.rr = make([]int, len(g.members))
	for i := range g.rr {
		g.rr[i] = i
	}
	if len(g.rr) > 0 {
		g.rrPos = p.cfg.rng.IntN(len(g.rr))
	}
	g.lru = slices.Clone(g.members)
	for i, m := range g.lru {
		m.i = i
	}
	heap.Init(&g.lru)
	return g
}

// fixHeaps restores the LRU heaps after lastUse changed.
func (e *entry) fixHeaps() {
	for _, m := range e.members {
		heap.Fix(&m.g.lru, m.i)
	}
}

// buildGroups lays out the partitions, the rest and the whole pool, and
// gives every entry its home group.
func (p *Pool) buildGroups(byID map[string]*entry) error {
	taken := map[*entry]string{}
	if err := p.configuredPartitions(byID, taken); err != nil {
		return err
	}
	if err := p.evenPartitions(taken); err != nil {
		return err
	}
	var rest []*entry
	for _, e := range p.entries {
		if _, ok := taken[e]; !ok {
			rest = append(rest, e)
		}
	}
	p.all = p.newGroup("*", p.entries)
	if len(rest) > 0 && len(rest) < len(p.entries) {
		p.rest = p.newGroup("", rest)
	}
	for _, e := range p.entries {
		e.home = p.all
		if d, ok := taken[e]; ok {
			e.home = p.groups[d]
		} else if p.rest != nil {
			e.home = p.rest
		}
	}
	return nil
}

// configuredPartitions lays out the partitions WithPartition named.
func (p *Pool) configuredPartitions(byID map[string]*entry, taken map[*entry]string) error {
	for _, d := range sortedKeys(p.cfg.partitions) {
		var es []*entry
		for _, id := range p.cfg.partitions[d] {
			e := byID[id]
			if e == nil {
				return fmt.Errorf("partition %s: no proxy with id %s", d, id)
			}
			if other, ok := taken[e]; ok {
				return fmt.Errorf("proxy %s is in the partitions of both %s and %s", id, other, d)
			}
			taken[e] = d
			es = append(es, e)
		}
		p.groups[d] = p.newGroup(d, es)
		p.parts.set(p.cfg.partDomains[d], p.groups[d])
	}
	return nil
}

// evenPartitions splits the proxies in no partition across the domains
// WithEvenPartitions named.
func (p *Pool) evenPartitions(taken map[*entry]string) error {
	if len(p.cfg.evenDomains) == 0 {
		return nil
	}
	var free []*entry
	for _, e := range p.entries {
		if _, ok := taken[e]; !ok {
			free = append(free, e)
		}
	}
	m := len(p.cfg.evenDomains)
	if len(free) < m {
		return fmt.Errorf("%d proxies cannot be split across %d domains", len(free), m)
	}
	at := 0
	for i, d := range p.cfg.evenDomains {
		if _, dup := p.groups[d]; dup {
			return fmt.Errorf("domain %s partitioned twice", d)
		}
		n := len(free) / m
		if i < len(free)%m {
			n++
		}
		for _, e := range free[at : at+n] {
			taken[e] = d
		}
		p.groups[d] = p.newGroup(d, free[at:at+n])
		p.parts.set(p.cfg.partDomains[d], p.groups[d])
		at += n
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
