package failure

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestClassOfAndKinds(t *testing.T) {
	base := errors.New("dial tcp: refused")
	tests := []struct {
		name      string
		err       error
		class     Class
		retryable bool
	}{
		{"nil", nil, "", false},
		{"plain", base, Unknown, false},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), Canceled, false},
		{"deadline", context.DeadlineExceeded, Timeout, false},
		{"proxy", New(ProxyConnect, ErrProxy, base), ProxyConnect, true},
		{"wrapped rate", fmt.Errorf("fetch: %w", New(RateLimited, ErrRateLimited, nil)), RateLimited, true},
		{"permanent", Errorf(ClientError, "status %d", 404), ClientError, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ClassOf(tc.err); got != tc.class {
				t.Fatalf("ClassOf = %q, want %q", got, tc.class)
			}
			if got := Retryable(tc.err); got != tc.retryable {
				t.Fatalf("Retryable = %v, want %v", got, tc.retryable)
			}
		})
	}
	e := New(ProxyConnect, ErrProxy, base)
	if !errors.Is(e, base) || !errors.Is(e, ErrProxy) {
		t.Fatal("Unwrap must expose both the cause and the kind")
	}
}
