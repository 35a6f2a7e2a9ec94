package app

import (
	"io"

	"github.com/sluicehq/sluice/governor"
	"github.com/sluicehq/sluice/proxy"
)

// Plan is `pipeline plan`: it prints the governor's calculation for c:
// per domain the formula, maximum rate and concurrency, the start, the
// proxies in use, and the totals against the pool and the global limit.
// The pool's size is pool_size, or else the number of proxies in the
// proxy file (none: direct). It fetches nothing.
func Plan(c Config, stdout io.Writer) error {
	size := c.PoolSize
	if size == 0 && c.Proxies != "" {
		ps, err := proxy.LoadFile(c.Proxies)
		if err != nil {
			return usageError{err}
		}
		size = len(ps)
	}
	fc := c.FetchStage()
	p, err := governor.NewPlan(fc.Governor(), size)
	if err != nil {
		return usageError{err}
	}
	_, err = p.WriteTo(stdout)
	return err
}
