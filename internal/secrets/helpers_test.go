package secrets

import (
	"context"
	"fmt"
	"testing"
)

func sprintf(format string, a ...any) string { return fmt.Sprintf(format, a...) }

// mustPut puts value under name in w and returns the new version's
// metadata, failing the test if it cannot.
func mustPut(t *testing.T, ctx context.Context, w Writer, name, value string) Meta {
	t.Helper()
	m, err := w.Put(ctx, name, value)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
