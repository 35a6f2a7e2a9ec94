// Package testbed is sluice's local test world: a deterministic catalog web
// site ([Site]) and a farm of HTTP forward proxies ([Farm]) that each make
// their outgoing connections from a distinct loopback source address, so the
// site sees every proxy as a different client IP.
//
// Everything listens on loopback only and is meant for tests and for the
// CLI's demo command; nothing here is hardened for exposure to untrusted
// networks (the proxies, for instance, forward to any address they are
// asked for).
//
// The package does not import testing, so that the demo does not link it:
// helpers that take a test take a [TB], which *testing.T satisfies.
//
// Ownership rules are the same for every type in the package: the Start*
// function starts the background goroutines, and the returned value's Close
// method stops them, closes every listener and connection the value owns,
// and returns only after all of its goroutines have exited. Close is
// idempotent. All exported methods are safe for concurrent use.
//
// The proxy farm relies on 127.0.0.0/8 being routed to the loopback
// interface in full, as on Linux. StartFarm checks that every source address
// it needs can be bound and reports an error if not (on macOS, only
// 127.0.0.1 exists unless aliases are added).
package testbed
