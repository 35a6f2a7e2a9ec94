package governor

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// Plan is the governor's calculation for a config: each configured
// domain's limits, the default for other domains, and the totals against
// the pool and the global limit. It is what `pipeline plan` prints.
type Plan struct {
	PoolSize int // proxies in the pool; 0 for direct connections
	Global   int // the stage's Concurrency
	// Start is the starting level of domains with a per-IP limit; the
	// others start at their maximum.
	Start   float64
	Domains []Limits // one per Domains entry, in order
	Default Limits   // for hosts no entry matches
	// Sum is the configured domains' maximum concurrency added up; Total
	// is Sum capped by Global.
	Sum, Total int
	// ProxiesInUse adds up, per configured domain, the proxies its maximum
	// concurrency keeps busy (at most the proxies serving it), capped by
	// the pool; Share is that fraction of the pool.
	ProxiesInUse int
	Share        float64
}

// NewPlan computes the plan for cfg (defaults applied to a copy) with a
// pool of poolSize proxies (0: direct connections).
func NewPlan(cfg Config, poolSize int) (Plan, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return Plan{}, fmt.Errorf("governor config: %w", err)
	}
	p := Plan{PoolSize: poolSize, Global: cfg.Concurrency, Start: cfg.Adaptive.Start}
	if cfg.Adaptive.Off {
		p.Start = 1
	}
	inUse := 0
	for i := range cfg.Domains {
		l := limitsFor(&cfg.Domains[i], &cfg, poolSize)
		p.Domains = append(p.Domains, l)
		p.Sum += l.MaxConcurrency
		inUse += min(l.MaxConcurrency, l.Proxies)
	}
	p.Default = limitsFor(nil, &cfg, poolSize)
	p.Total = min(p.Sum, p.Global)
	if poolSize > 0 {
		p.ProxiesInUse = min(inUse, poolSize)
		p.Share = float64(p.ProxiesInUse) / float64(poolSize)
	}
	return p, nil
}

// WriteTo prints the plan as a table with the formula spelled out.
func (p Plan) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	if p.PoolSize > 0 {
		fmt.Fprintf(&b, "pool: %d proxies; global concurrency limit %d; domains with a per-IP limit start at %.0f%% of their maximum, others at 100%%\n\n", p.PoolSize, p.Global, p.Start*100)
	} else {
		fmt.Fprintf(&b, "no proxy pool (direct connections: one IP); global concurrency limit %d; domains with a per-IP limit start at %.0f%% of their maximum, others at 100%%\n\n", p.Global, p.Start*100)
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "domain\tper IP/min\tproxies\tsafety\tmax rate (req/s)\tmax concurrency\tstart\tproxies in use\t\n")
	row := func(name string, l Limits) {
		perIP, safety := "-", "-"
		if l.PerIPPerMinute > 0 {
			perIP, safety = num(l.PerIPPerMinute), fmt.Sprintf("%.2f", l.Safety)
		}
		var calc string
		switch {
		case l.RateFrom == "formula":
			calc = fmt.Sprintf("%s/60 × %d × %.2f = %.2f", num(l.PerIPPerMinute), l.Proxies, l.Safety, l.MaxRate)
		case math.IsInf(l.MaxRate, 1):
			calc = l.RateFrom + " = unlimited"
		default:
			calc = fmt.Sprintf("%s = %.2f", l.RateFrom, l.MaxRate)
		}
		lvl := 1.0
		if l.PerIPPerMinute > 0 {
			lvl = p.Start
		}
		start := max(1, int(math.Round(lvl*float64(l.MaxConcurrency))))
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%d\t%d\t\n", name, perIP, l.Proxies, safety, calc, l.MaxConcurrency, start, min(l.MaxConcurrency, l.Proxies))
	}
	for _, l := range p.Domains {
		row(l.Pattern, l)
	}
	row("(any other)", p.Default)
	if err := tw.Flush(); err != nil {
		return 0, err
	}
	b.WriteString("\n")
	p.writeTotals(&b)
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

// writeTotals prints the per-IP pacing of each domain and the totals.
func (p Plan) writeTotals(b *strings.Builder) {
	for _, l := range p.Domains {
		if l.ProxyRate > 0 {
			fmt.Fprintf(b, "per-IP pacing: %s: each proxy %s/min × %.2f = %.3f req/s (one request every %.3f s), catching up at most %d\n",
				l.Pattern, num(l.PerIPPerMinute), l.Safety, l.ProxyRate, 1/l.ProxyRate, l.ProxyBurst)
		}
	}
	fmt.Fprintf(b, "total: max concurrency %d (sum over domains)", p.Sum)
	if p.Sum > p.Global {
		fmt.Fprintf(b, ", capped by the global limit at %d", p.Total)
	} else {
		fmt.Fprintf(b, " of global limit %d", p.Global)
	}
	if p.PoolSize > 0 {
		fmt.Fprintf(b, "; proxies in use %d of %d (%.0f%% of the pool)", p.ProxiesInUse, p.PoolSize, p.Share*100)
	}
	b.WriteString("\n")
	if len(p.Domains) > 0 {
		b.WriteString("(\"any other\" applies to each host no entry matches; it is not in the total)\n")
	}
}

// num prints a rate without needless decimals.
func num(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
