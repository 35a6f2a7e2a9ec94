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
// pool's max wait may be retried.
func leaseError(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return failure.New(failure.Canceled, failure.ErrPermanent, err)
	case errors.Is(err, proxy.ErrAuth):
		return failure.New(failure.ProxyAuth, failure.ErrPermanent, err)
	case errors.Is(err, proxy.ErrNoneUsable):
		return failure.New(failure.NoProxy, failure.ErrPermanent, err)
	case errors.Is(err, proxy.ErrNoneAllowed):
		// The governor requeues: no attempt was made.
		return failure.New(failure.ProxyConnect, failure.ErrProxy, err)
	default: // no proxy usable within the pool's max wait
		return failure.New(failure.NoProxy, failure.ErrProxy, err)
	}
}
