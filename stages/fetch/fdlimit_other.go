//go:build !unix

package fetch

import "errors"

// raiseFDLimit is not supported here.
func raiseFDLimit() (before, after FDLimit, err error) {
	return before, after, errors.ErrUnsupported
}
