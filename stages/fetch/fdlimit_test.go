package fetch

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/proxy"
)

func TestFDLimit(t *testing.T) {
	need := FDsNeeded(Config{Concurrency: 100}, 20)
	// 20 clients with a share of 5 in flight and a pool of 6 each, 100
	// spool files, 64 spare.
	if need != 20*(5+6)+100+64 {
		t.Errorf("FDsNeeded = %d", need)
	}
	c, err := CheckFDLimit(16)
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skip("no file-descriptor limit on this system")
	}
	if err != nil || c.Limit.Soft < 16 || c.Limit.Soft < c.Before.Soft || c.Limit.Soft != c.Limit.Hard && c.Limit.Hard < 1<<30 {
		t.Fatalf("check %+v, %v: want the soft limit raised to the hard one", c, err)
	}
	if _, err := CheckFDLimit(int(min(c.Limit.Hard, 1<<40)) + 1); err == nil || !strings.Contains(err.Error(), "below") {
		t.Errorf("a need over the hard limit gave %v, want an error", err)
	}
	if c, err := CheckFDLimit(int(c.Limit.Soft) - 1); err != nil || c.Warning == "" {
		t.Errorf("a need just under the limit: %+v %v, want a warning", c, err)
	}
}

func TestPoolGateContract(t *testing.T) {
	pool := fakePool(t, 3)
	ctx := context.Background()
	// Refusing every proxy fails at once with ErrNoneAllowed.
	var asked []string
	_, err := pool.Acquire(ctx, proxy.Request{Allow: func(id string) bool { asked = append(asked, id); return false }})
	if !errors.Is(err, proxy.ErrNoneAllowed) || len(asked) != 3 {
		t.Fatalf("err %v after asking %v, want ErrNoneAllowed after all 3", err, asked)
	}
	// The proxy Allow accepts is the one leased.
	l, err := pool.Acquire(ctx, proxy.Request{Allow: func(id string) bool { return id == "p2" }})
	if err != nil || l.Proxy.ID != "p2" {
		t.Fatalf("leased %v, %v; want p2", l, err)
	}
	l.Release(proxy.Outcome{Status: 200})
	// An avoided proxy is taken only when Allow refuses the others.
	l, err = pool.Acquire(ctx, proxy.Request{Avoid: []string{"p1"}, Allow: func(id string) bool { return id == "p1" }})
	if err != nil || l.Proxy.ID != "p1" {
		t.Fatalf("leased %v, %v; want the avoided p1 as the only one allowed", l, err)
	}
	l.Release(proxy.Outcome{Status: 200})
}
