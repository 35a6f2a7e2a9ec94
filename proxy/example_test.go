package proxy_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/proxy"
)

func ExamplePool() {
	proxies, err := proxy.ParseList(strings.NewReader(`
http://user:secret@10.0.0.1:3128
http://user:secret@10.0.0.2:3128
socks5h://10.0.0.3:1080
`))
	if err != nil {
		panic(err)
	}
	pool, err := proxy.New(proxies,
		proxy.WithModel(proxy.Exclusive),
		proxy.WithStrategy(proxy.RoundRobin),
		proxy.WithPartition("shop.example", "p1", "p2"),
		proxy.WithStickyTTL(5*time.Minute))
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	// Every attempt takes a lease and returns it with its outcome.
	lease, err := pool.Acquire(ctx, proxy.Request{Domain: "www.shop.example", URL: "https://www.shop.example/p/1"})
	if err != nil {
		panic(err)
	}
	fmt.Println("in the shop's partition:", lease.Proxy.ID == "p1" || lease.Proxy.ID == "p2")
	fmt.Println("registry:", len(pool.Leases()), "lease")
	lease.Release(proxy.Outcome{Status: 200, Latency: 80 * time.Millisecond})

	// Other domains use the proxies in no partition.
	lease, _ = pool.Acquire(ctx, proxy.Request{Domain: "news.example"})
	fmt.Println("elsewhere:", lease.Proxy, lease.Proxy.Redacted())
	lease.Release(proxy.Outcome{Class: failure.ProxyAuth, Status: 407})
	fmt.Println("after a 407:", pool.Stats().Proxies[2].State)
	// Output:
	// in the shop's partition: true
	// registry: 1 lease
	// elsewhere: p3 socks5h://10.0.0.3:1080
	// after a 407: quarantined
}
