package fetch

import (
	"context"
	"errors"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/proxy"
)

// leaseError classifies a failed proxy lease. A pool with no usable proxy
// for its no-proxy timeout, or whose every proxy refused our credentials,
// ends the input at once (classes no_proxy and proxy_auth, permanent):
// retrying would only wait again. A lease that merely waited past the
// pool's max wait may be retried. A domain quarantined on every proxy
// (proxy.ErrDomainQuarantined) fails the attempt at once with the class
// that quarantined it (timeout if not known), retryable: the worker is
// not held through the domain's cool-down, and attempt sets the retry's
// delay to the end of the first of the domain's quarantines.
func leaseError(ctx context.Context, err error) error {
	var de *proxy.DomainError
	switch {
	case ctx.Err() != nil:
		return failure.New(failure.Canceled, failure.ErrPermanent, err)
	case errors.Is(err, proxy.ErrAuth):
		return failure.New(failure.ProxyAuth, failure.ErrPermanent, err)
	case errors.Is(err, proxy.ErrNoneUsable):
		return failure.New(failure.NoProxy, failure.ErrPermanent, err)
	case errors.As(err, &de):
		// The proxies work; the domain does not answer through any of
		// them: a failure of the target, retried within its attempts.
		class := de.Class
		if class == "" {
			class = failure.Timeout
		}
		return failure.New(class, failure.ErrRetryable, err)
	case errors.Is(err, proxy.ErrNoneAllowed):
		// The governor requeues: no attempt was made.
		return failure.New(failure.ProxyConnect, failure.ErrProxy, err)
	default: // no proxy usable within the pool's max wait
		return failure.New(failure.NoProxy, failure.ErrProxy, err)
	}
}
