package metrics

import (
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/governor"
	"github.com/sluicehq/sluice/proxy"
)

// Sources are the live readings of a running pipeline, read at each scrape
// (and by the stall watchdog). Every field is optional; functions must be
// safe for concurrent use and quick.
type Sources struct {
	// Stages are the pipeline's stages, source first, sink last.
	Stages []*flow.Stats
	// Fetch reports what the fetch stage's inputs are doing.
	Fetch func() governor.Activity
	// Domains reports the governor's domains: their limits in force.
	Domains func() []governor.DomainStats
	// DomainsOf, when set, is used instead of Domains for the per-domain
	// gauges: it reports only the named domains (those that have a
	// label), so a scrape costs the same with 50 domains or 100,000.
	DomainsOf func(hosts []string) []governor.DomainStats
	// Conns reports the connection pools, one per proxy.
	Conns func() []governor.PoolStats
	// Proxies reports the state of every proxy of the pool.
	Proxies func() []ProxyState
	// Pool reports the pool's own snapshot (proxy.Pool.Stats): per proxy
	// its cap, probation, late leases, quarantines and catch cost; pool
	// wide the usable proxies and how long none has been.
	Pool func() proxy.Stats
	// FDsNeeded is how many file descriptors the configuration may need at
	// once (see the fetch stage's FDsNeeded); 0 leaves sluice_fds_needed out.
	FDsNeeded int
	// Kafka reports the Kafka source's and sinks' positions, when Kafka is
	// used.
	Kafka func() KafkaState
	// State reports the sizes of the pipeline's per-key tables, by kind
	// (governor domains, (proxy, domain) health entries, sessions, DNS
	// names ...), for sluice_state_entries: the memory a long run holds
	// per host, bounded by idle eviction and caps (docs/capacity.md).
	State func() map[string]int
}

// ProxyState is one proxy as the pool sees it now.
type ProxyState struct {
	ID          string // the proxy id, never its URL
	Quarantined bool
}

// KafkaState is a snapshot of the Kafka source and sinks, for the metrics.
type KafkaState struct {
	// Partitions are the assigned input partitions.
	Partitions []PartitionState
	// Writes counts records written, by topic.
	Writes map[string]uint64
	// DeadLetters counts records written to the dead-letter topic.
	DeadLetters uint64
}

// PartitionState is one assigned input partition.
type PartitionState struct {
	Topic     string
	Partition int
	// Committed is the committed offset: the next offset to be read after
	// a restart.
	Committed int64
	// Lag is the number of records between the committed offset and the
	// partition's end.
	Lag int64
}

type gauge struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
}

func newDesc(name, help string, kind prometheus.ValueType, labels ...string) gauge {
	return gauge{prometheus.NewDesc(name, help, labels, nil), kind}
}

// liveCollector reads the attached Sources at scrape time.
type liveCollector struct {
	domains, proxies *labelCap

	mu  sync.Mutex // guards src
	src *Sources

	running, queueDepth, queueCap, stageInFlight, processed, errs, dropped gauge
	workers, fetchInputs                                                   gauge
	proxyInFlight, proxyQuarantined                                        gauge
	proxyCap, proxyCapMax, proxyProbation, proxyLate, proxyQuarantines     gauge
	proxyCatchCost, proxyAuthFailed, poolUsable, poolStuck                 gauge
	domainInFlight, domainWaiters, domainRate, domainLimit                 gauge
	connOpen, connIdle, connInUse, connCap, connUtil, connDials            gauge
	fdsOpen, fdsLimit, fdsNeeded                                           gauge
	kafkaCommitted, kafkaLag, kafkaWrites, kafkaDead                       gauge
	stateEntries                                                           gauge
}

func newLiveCollector() *liveCollector {
	g, c := prometheus.GaugeValue, prometheus.CounterValue
	return &liveCollector{
		running:          newDesc("sluice_pipeline_running", "1 while a pipeline is running and attached to the metrics.", g),
		queueDepth:       newDesc("sluice_stage_queue_depth", "Elements waiting in the stage's input queue.", g, "stage"),
		queueCap:         newDesc("sluice_stage_queue_capacity", "Capacity of the stage's input queue.", g, "stage"),
		stageInFlight:    newDesc("sluice_stage_in_flight", "Elements the stage has taken from its queue and not yet passed on (or, for the sink, made durable).", g, "stage"),
		processed:        newDesc("sluice_stage_processed_total", "Elements the stage has passed on or written.", c, "stage"),
		errs:             newDesc("sluice_stage_errors_total", "Elements the stage passed on as failures.", c, "stage"),
		dropped:          newDesc("sluice_stage_dropped_total", "Elements discarded at a hard stop, left unacknowledged.", c, "stage"),
		workers:          newDesc("sluice_fetch_workers", "Fetching goroutines (the global concurrency limit).", g),
		fetchInputs:      newDesc("sluice_fetch_inputs", "Inputs inside the fetch stage by what they are doing: token_wait, lease_wait, request, backoff, handover.", g, "state"),
		proxyInFlight:    newDesc("sluice_proxy_requests_in_flight", "Requests in flight through each proxy.", g, "proxy"),
		proxyQuarantined: newDesc("sluice_proxy_quarantined", "1 while the pool keeps the proxy in quarantine, else 0.", g, "proxy"),
		proxyCap:         newDesc("sluice_proxy_cap", "Leases the proxy may hold at once now (0: no cap).", g, "proxy"),
		proxyCapMax:      newDesc("sluice_proxy_cap_max", "The cap the proxy earns back with successes.", g, "proxy"),
		proxyProbation:   newDesc("sluice_proxy_probation", "1 while the proxy is on probation (slow start: its cap is below its maximum), else 0.", g, "proxy"),
		proxyLate:        newDesc("sluice_proxy_late_total", "Leases of the proxy that ran far past their expected time (soft failures).", c, "proxy"),
		proxyQuarantines: newDesc("sluice_proxy_quarantines_total", "Times the pool put the proxy in quarantine.", c, "proxy"),
		proxyCatchCost:   newDesc("sluice_proxy_catch_cost", "Attempts the proxy was given between its last success (or the start) and its last quarantine.", g, "proxy"),
		proxyAuthFailed:  newDesc("sluice_proxy_auth_failed", "1 if the proxy has refused our credentials, else 0.", g, "proxy"),
		poolUsable:       newDesc("sluice_pool_usable_proxies", "Proxies of the pool not in quarantine.", g),
		poolStuck:        newDesc("sluice_pool_no_proxy_seconds", "Seconds since requests first found no usable proxy; 0 while one is usable.", g),
		stateEntries:     newDesc("sluice_state_entries", "Entries in the pipeline's per-key tables, by kind: governor_domains, governor_proxy_slots, governor_caps, pool_domain_health, pool_sessions, dns_names, cookie_jars, metrics_domain_labels.", g, "kind"),
		domainInFlight:   newDesc("sluice_domain_requests_in_flight", "Requests in flight per domain.", g, "domain"),
		domainWaiters:    newDesc("sluice_domain_token_waiters", "Inputs waiting for the domain's rate-limit token.", g, "domain"),
		domainRate:       newDesc("sluice_domain_rate_limit", "Token rate of the domain's limiter, in requests per second; -1 when unlimited.", g, "domain"),
		domainLimit:      newDesc("sluice_domain_concurrency_limit", "Requests the domain may have in flight at once.", g, "domain"),
		connOpen:         newDesc("sluice_conn_pool_open", "Open connections of the proxy's transport, in use or idle.", g, "proxy"),
		connIdle:         newDesc("sluice_conn_pool_idle", "Idle kept-alive connections of the proxy's transport.", g, "proxy"),
		connInUse:        newDesc("sluice_conn_pool_in_use", "Connections of the proxy's transport carrying a request.", g, "proxy"),
		connCap:          newDesc("sluice_conn_pool_capacity", "Size of the proxy's keep-alive pool.", g, "proxy"),
		connUtil:         newDesc("sluice_conn_pool_utilization_ratio", "Connections in use over the pool's capacity.", g, "proxy"),
		connDials:        newDesc("sluice_conn_pool_dials_total", "Connections opened by the proxy's transport.", c, "proxy"),
		fdsOpen:          newDesc("sluice_fds_open", "File descriptors open in the process.", g),
		fdsLimit:         newDesc("sluice_fds_limit", "The process's soft limit on open file descriptors.", g),
		fdsNeeded:        newDesc("sluice_fds_needed", "File descriptors the configured concurrency and pools may need at once.", g),
		kafkaCommitted:   newDesc("sluice_kafka_committed_offset", "Committed offset of each assigned input partition.", g, "topic", "partition"),
		kafkaLag:         newDesc("sluice_kafka_lag", "Records between the committed offset and the end of each assigned input partition.", g, "topic", "partition"),
		kafkaWrites:      newDesc("sluice_kafka_writes_total", "Records written to each output topic.", c, "topic"),
		kafkaDead:        newDesc("sluice_kafka_dead_letters_total", "Records written to the dead-letter topic.", c),
	}
}

func (l *liveCollector) attach(src *Sources) {
	l.mu.Lock()
	l.src = src
	l.mu.Unlock()
}

func (l *liveCollector) all() []gauge {
	return []gauge{l.running, l.queueDepth, l.queueCap, l.stageInFlight, l.processed, l.errs, l.dropped,
		l.workers, l.fetchInputs, l.proxyInFlight, l.proxyQuarantined,
		l.proxyCap, l.proxyCapMax, l.proxyProbation, l.proxyLate, l.proxyQuarantines,
		l.proxyCatchCost, l.proxyAuthFailed, l.poolUsable, l.poolStuck,
		l.domainInFlight, l.domainWaiters, l.domainRate, l.domainLimit,
		l.connOpen, l.connIdle, l.connInUse, l.connCap, l.connUtil, l.connDials,
		l.fdsOpen, l.fdsLimit, l.fdsNeeded, l.kafkaCommitted, l.kafkaLag, l.kafkaWrites, l.kafkaDead, l.stateEntries}
}

// Describe implements prometheus.Collector.
func (l *liveCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, g := range l.all() {
		ch <- g.desc
	}
}

// Collect implements prometheus.Collector.
func (l *liveCollector) Collect(ch chan<- prometheus.Metric) {
	emit := func(g gauge, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(g.desc, g.kind, v, labels...)
	}
	if open, limit, ok := fdUsage(); ok {
		emit(l.fdsOpen, float64(open))
		emit(l.fdsLimit, float64(limit))
	}
	l.mu.Lock()
	src := l.src
	l.mu.Unlock()
	if src == nil {
		emit(l.running, 0)
		return
	}
	emit(l.running, 1)
	if src.State != nil {
		for kind, n := range src.State() {
			emit(l.stateEntries, float64(n), kind)
		}
		emit(l.stateEntries, float64(l.domains.len()), "metrics_domain_labels")
	}
	if src.FDsNeeded > 0 {
		emit(l.fdsNeeded, float64(src.FDsNeeded))
	}
	for _, st := range src.Stages {
		emit(l.queueDepth, float64(st.Queue()), st.Name)
		emit(l.queueCap, float64(st.Capacity), st.Name)
		emit(l.stageInFlight, float64(st.InFlight()), st.Name)
		emit(l.processed, float64(st.Processed()), st.Name)
		emit(l.errs, float64(st.Errors()), st.Name)
		emit(l.dropped, float64(st.Dropped()), st.Name)
	}
	var conns []governor.PoolStats
	if src.Conns != nil {
		conns = src.Conns()
	}
	var pool *proxy.Stats
	if src.Pool != nil {
		st := src.Pool()
		pool = &st
		l.collectPool(st, emit)
	}
	if src.Fetch != nil {
		l.collectFetch(src.Fetch(), conns, pool, emit)
	} else if pool != nil {
		for _, p := range pool.Proxies {
			emit(l.proxyInFlight, float64(p.InFlight), l.proxies.label(p.ID))
		}
	}
	var domains []governor.DomainStats
	switch {
	case src.DomainsOf != nil:
		domains = src.DomainsOf(l.domains.keys())
	case src.Domains != nil:
		domains = src.Domains()
	}
	if domains != nil {
		for _, d := range domains {
			// Limits are per domain: a folded "other" would mean nothing.
			if name, ok := l.domains.known(d.Domain); ok {
				r := d.Rate
				if math.IsInf(r, 1) {
					r = -1 // unlimited
				}
				emit(l.domainRate, r, name)
				emit(l.domainLimit, float64(d.Concurrency), name)
			}
		}
	}
	if src.Proxies != nil {
		for _, p := range src.Proxies() {
			q := 0.0
			if p.Quarantined {
				q = 1
			}
			emit(l.proxyQuarantined, q, l.proxies.label(p.ID))
		}
	}
	if src.Conns != nil {
		for _, c := range conns {
			id := l.proxies.label(c.Proxy)
			emit(l.connOpen, float64(c.Open), id)
			emit(l.connIdle, float64(c.Idle), id)
			emit(l.connInUse, float64(c.Busy), id)
			emit(l.connCap, float64(c.Size), id)
			if c.Size > 0 {
				emit(l.connUtil, float64(c.Busy)/float64(c.Size), id)
			}
			emit(l.connDials, float64(c.Dials), id)
		}
	}
	if src.Kafka != nil {
		k := src.Kafka()
		for _, p := range k.Partitions {
			part := strconv.Itoa(p.Partition)
			emit(l.kafkaCommitted, float64(p.Committed), p.Topic, part)
			emit(l.kafkaLag, float64(p.Lag), p.Topic, part)
		}
		for topic, n := range k.Writes {
			emit(l.kafkaWrites, float64(n), topic)
		}
		emit(l.kafkaDead, float64(k.DeadLetters))
	}
}

// collectPool emits the pool's own view of its proxies. In flight is left
// to collectFetch, which counts the requests (sluice_proxy_requests_in_flight).
func (l *liveCollector) collectPool(st proxy.Stats, emit func(gauge, float64, ...string)) {
	emit(l.poolUsable, float64(st.Usable))
	stuck := 0.0
	if !st.StuckSince.IsZero() {
		stuck = max(time.Since(st.StuckSince).Seconds(), 0)
	}
	emit(l.poolStuck, stuck)
	for _, p := range st.Proxies {
		id := l.proxies.label(p.ID)
		emit(l.proxyCap, float64(p.Cap), id)
		emit(l.proxyCapMax, float64(p.CapMax), id)
		emit(l.proxyProbation, bit(p.SlowStart), id)
		emit(l.proxyLate, float64(p.Late), id)
		emit(l.proxyQuarantines, float64(p.Quarantines), id)
		emit(l.proxyCatchCost, float64(p.CatchCost), id)
		emit(l.proxyAuthFailed, bit(p.AuthFailed), id)
	}
}

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (l *liveCollector) collectFetch(a governor.Activity, conns []governor.PoolStats, pool *proxy.Stats, emit func(gauge, float64, ...string)) {
	emit(l.workers, float64(a.Workers))
	waiting := 0
	for _, n := range a.TokenWait {
		waiting += n
	}
	inReq := 0
	for _, n := range a.Requests {
		inReq += n
	}
	for state, n := range map[string]int{"token_wait": waiting, "lease_wait": a.LeaseWait, "request": inReq, "backoff": a.Backoff, "handover": a.Handover} {
		emit(l.fetchInputs, float64(n), state)
	}
	// A proxy with nothing in flight still gets its zero when its
	// transport is known, so dashboards see every proxy.
	perProxy := foldKeys(a.Requests, l.proxies.label)
	for _, c := range conns {
		perProxy[l.proxies.label(c.Proxy)] += 0
	}
	if pool != nil {
		for _, p := range pool.Proxies {
			perProxy[l.proxies.label(p.ID)] += 0
		}
	}
	for id, n := range perProxy {
		emit(l.proxyInFlight, float64(n), id)
	}
	for d, n := range foldKeys(a.DomainRequests, l.domainLabel) {
		emit(l.domainInFlight, float64(n), d)
	}
	for d, n := range foldKeys(a.TokenWait, l.domainLabel) {
		emit(l.domainWaiters, float64(n), d)
	}
}

func (l *liveCollector) domainLabel(d string) string { return l.domains.label(d) }

// foldKeys sums counts whose keys map to the same label.
func foldKeys(m map[string]int, label func(string) string) map[string]int {
	out := make(map[string]int, len(m))
	for k, n := range m {
		out[label(k)] += n
	}
	return out
}
