package fetch

import "github.com/sluicehq/sluice/governor"

// DomainsOf returns the governor's snapshots of the named domains (those
// it knows), for gauges that need a few: see governor.Governor.StatsOf.
// Safe for concurrent use.
func (s *Stage) DomainsOf(hosts []string) []governor.DomainStats { return s.gov.StatsOf(hosts) }

// Entries returns the sizes of the stage's per-key tables by kind, for
// the sluice_state_entries gauge: the governor's domains, (proxy, domain)
// buckets and rate caps, the DNS cache's names and the session cookie
// jars (the pool's tables are the pool's to report). Each is bounded by
// idle eviction and a cap (docs/capacity.md). Safe for concurrent use.
func (s *Stage) Entries() map[string]int {
	g := s.gov.Entries()
	out := map[string]int{"governor_domains": g.Domains, "governor_proxy_slots": g.ProxySlots, "governor_caps": g.Caps}
	if s.dns != nil {
		out["dns_names"] = s.dns.Len()
	}
	if s.shape != nil && s.shape.jars != nil {
		out["cookie_jars"] = s.shape.jars.len()
	}
	return out
}
