package fetch

import (
	"fmt"
)

// FDLimit is the process's limit on open file descriptors.
type FDLimit struct {
	Soft, Hard uint64
}

// FDsNeeded estimates the file descriptors the stage needs at full
// concurrency: per HTTP client, its share of the concurrency in flight
// plus its idle keep-alive pool (the share plus 20%); one spooled body
// file per request in flight; and a reserve of 64 for the rest of the
// process (listeners, output files, Kafka connections). poolSize is the
// number of proxies (0: direct connections). cfg's defaults are applied
// to a copy.
func FDsNeeded(cfg Config, poolSize int) int {
	cfg.setDefaults()
	clients := max(poolSize, 1)
	share := (cfg.Concurrency + clients - 1) / clients
	pool := share + (share+4)/5
	return clients*(share+pool) + cfg.Concurrency + 64
}

// FDCheck is what CheckFDLimit found.
type FDCheck struct {
	Limit  FDLimit // after raising
	Before FDLimit // as found
	Need   int
	// Warning is set when the limit is met with less than 25% to spare.
	Warning string
}

// CheckFDLimit raises the soft file-descriptor limit to the hard one and
// compares it with need. It returns an error when the limit stays below
// need: the run would fail later with confusing connection errors.
func CheckFDLimit(need int) (FDCheck, error) {
	before, after, err := raiseFDLimit()
	c := FDCheck{Limit: after, Before: before, Need: need}
	if err != nil {
		return c, fmt.Errorf("file-descriptor limit: %w", err)
	}
	switch {
	case after.Soft < uint64(need):
		return c, fmt.Errorf("file-descriptor limit %d (hard %d) is below the %d this concurrency needs: raise it (ulimit -n, systemd LimitNOFILE) or lower the concurrency", after.Soft, after.Hard, need)
	case after.Soft < uint64(need)+uint64(need)/4:
		c.Warning = fmt.Sprintf("file-descriptor limit %d leaves little room over the %d this concurrency needs", after.Soft, need)
	}
	return c, nil
}
