// Package bustest holds what tests of NATS permissions share: waiting for
// the server to report that it denied an operation.
package bustest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// ExpectDenied runs op and waits until the server reports, on errs (a
// connection's async error handler), a permissions violation of kind
// ("Publish", "Subscription") naming subject; then it stops op (a denied
// request would otherwise wait for its timeout) and checks that op did not
// succeed.
func ExpectDenied(t *testing.T, errs <-chan error, kind, subject string, op func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- op(ctx) }()
	want := `Permissions Violation for ` + kind + ` to "` + subject + `"`
	for {
		select {
		case err := <-errs:
			if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), want) {
				continue
			}
			cancel()
			if err := <-done; err == nil {
				t.Errorf("%s %s: the operation succeeded although the server denied it", kind, subject)
			}
			return
		case err := <-done:
			if err == nil {
				t.Fatalf("%s %s: allowed; want a permissions violation", kind, subject)
			}
			// Failed before the violation arrived: wait for the latter.
			done = nil
		case <-ctx.Done():
			t.Fatalf("%s %s: no permissions violation reported", kind, subject)
		}
	}
}
