package proxy

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/sluicehq/sluice/hostmatch"
)

// A domain as a partition (WithPartition, WithEvenPartitions) or a domain
// strategy (WithDomainStrategy) names it is matched with package
// hostmatch, so it means what a host pattern means everywhere else, with
// one addition kept from the first versions of the pool: a bare domain
// covers the domain and its subdomains. So
//
//   - "shop.example" means the patterns "shop.example" and "*.shop.example";
//   - "*.shop.example" means the subdomains of shop.example only;
//   - "*" means any host;
//   - an IP address means only itself.
//
// When several entries match a host, the most specific wins: the exact
// host, then the longest suffix, then "*".

// domainKey is a domain entry in its normal form with the patterns it
// stands for.
type domainKey struct {
	key  string
	pats []hostmatch.Pattern
}

// parseDomain parses a partition's or domain strategy's domain.
func parseDomain(s string) (domainKey, error) {
	p, err := hostmatch.Parse(s)
	if err != nil {
		return domainKey{}, err
	}
	key := p.String()
	if strings.HasPrefix(key, "*") {
		return domainKey{key: key, pats: []hostmatch.Pattern{p}}, nil
	}
	if _, err := netip.ParseAddr(key); err == nil {
		return domainKey{key: key, pats: []hostmatch.Pattern{p}}, nil
	}
	sub, err := hostmatch.Parse("*." + key)
	if err != nil {
		return domainKey{}, fmt.Errorf("domain %q: %w", s, err)
	}
	return domainKey{key: key, pats: []hostmatch.Pattern{p, sub}}, nil
}

// specificity ranks a pattern that matched a host: any host 0, a suffix
// by its length, the exact host above every suffix of it.
func specificity(p hostmatch.Pattern) int {
	s := p.String()
	switch {
	case s == "*":
		return 0
	case strings.HasPrefix(s, "*."):
		return len(s) - 1
	}
	return len(s) + 1
}

// domainTable maps domain entries to values. The zero value is empty;
// it is not safe for concurrent writes.
type domainTable[V any] struct {
	keys []domainKey
	vals map[string]V
}

// set adds or replaces the value of k.
func (t *domainTable[V]) set(k domainKey, v V) {
	if t.vals == nil {
		t.vals = map[string]V{}
	}
	if _, ok := t.vals[k.key]; !ok {
		t.keys = append(t.keys, k)
	}
	t.vals[k.key] = v
}

// get returns the value stored under the normal form key.
func (t *domainTable[V]) get(key string) (V, bool) {
	v, ok := t.vals[key]
	return v, ok
}

// match returns the key and value of the most specific entry matching
// host (ties go to the smaller key, so the answer never depends on the
// order of the options).
func (t *domainTable[V]) match(host string) (string, V, bool) {
	best, bestRank := "", -1
	for _, k := range t.keys {
		for _, p := range k.pats {
			if !p.Match(host) {
				continue
			}
			r := specificity(p)
			if r > bestRank || (r == bestRank && k.key < best) {
				best, bestRank = k.key, r
			}
		}
	}
	if bestRank < 0 {
		var zero V
		return "", zero, false
	}
	return best, t.vals[best], true
}
