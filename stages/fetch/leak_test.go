package fetch_test

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/guard"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/testbed"
)

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	return len(ents)
}

// TestNoLeaksAfter10000FailingRequests sends 10,000 inputs through a
// proxy pool of which three of four proxies fail (garbage, closed
// mid-response, 502) to a server that fails in every way it knows, and
// checks that once the stage is closed the process has as many goroutines
// and open file descriptors as before it started.
func TestNoLeaksAfter10000FailingRequests(t *testing.T) {
	h := startHostile(t, testbed.HostileConfig{})
	farm := startFarm(t, 4)
	farm.Proxy(0).SetFailure(testbed.FailGarbage)
	farm.Proxy(1).SetFailure(testbed.FailCloseMidResponse)
	farm.Proxy(2).SetFailure(testbed.Fail502)
	u := h.URL()
	paths := []string{"/status/500", "/garbage", "/midbody", "/ok/1", "/loop", "/status/404", "/chain/3", "/big-headers?kib=128", "/ok/2", "/charset/invalid-utf8"}
	urls := make([]string, 0, 10000)
	for i := range cap(urls) {
		switch {
		case i%500 == 0:
			urls = append(urls, u+"/bomb/gzip?mib=8")
		case i%500 == 1:
			urls = append(urls, u+"/endless")
		case i%250 == 2:
			urls = append(urls, "http://169.254.169.254/latest/meta-data/")
		default:
			urls = append(urls, u+paths[i%len(paths)]+fmt.Sprintf("?i=%d", i))
		}
	}

	runtime.GC()
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)
	cfg := fast()
	cfg.Concurrency = 32
	cfg.MaxAttempts = 2
	cfg.MaxBodyBytes = 1 << 20
	cfg.MaxHeaderBytes = 64 << 10
	// Quarantines as short as they come: the failing targets make every
	// proxy look bad, and this test is about leaks, not health.
	cfg.Pool = pool(t, farm, proxy.WithHealth(proxy.HealthConfig{CooldownBase: time.Millisecond, CooldownMax: 2 * time.Millisecond,
		DomainCooldownBase: time.Millisecond, DomainCooldownMax: 2 * time.Millisecond}))
	// Local DNS: the proxies tunnel (CONNECT to the checked IP) and keep
	// no upstream connections of their own once the client closes, so the
	// counts can come back exactly. With remote DNS the farm's forwarding
	// transport keeps an idle pool of its own, in this same process.
	cfg.Policy.ProxyDNS = guard.ProxyDNSLocal
	res := run(t, cfg, urls) // closes the stage

	classes := map[failure.Class]int{}
	attempts := 0
	for _, f := range res {
		classes[errClass(f)]++
		attempts += f.Attempts
	}
	t.Logf("%d inputs, %d attempts; results by class: %v", len(res), attempts, classes)
	if classes[""] == 0 || classes[failure.ProxyProtocol]+classes[failure.Protocol] == 0 {
		t.Errorf("the run did not mix successes and failures: %v", classes)
	}
	var g, f int
	deadline := time.Now().Add(20 * time.Second)
	for {
		runtime.GC()
		g, f = runtime.NumGoroutine(), openFDs(t)
		if g <= goroutines && f <= fds || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("goroutines %d before, %d after; open fds %d before, %d after", goroutines, g, fds, f)
	if g > goroutines || f > fds {
		buf := make([]byte, 1<<20)
		t.Errorf("leak: goroutines %d -> %d, fds %d -> %d\n%s", goroutines, g, fds, f, buf[:runtime.Stack(buf, true)])
	}
}
