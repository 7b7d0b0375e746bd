package api

import (
	"context"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/hodei-ci/hodei/internal/api/wire"
)

// MaxIdempotencyKey is the longest Idempotency-Key accepted.
const MaxIdempotencyKey = 255

// idempotencyKey reads the request's Idempotency-Key header: at most 255
// printable ASCII characters. It answers 400 and reports false when the
// header is malformed.
func idempotencyKey(w http.ResponseWriter, r *http.Request) (string, bool) {
	key := strings.TrimSpace(r.Header.Get("Idempotency-Key"))
	if len(key) > MaxIdempotencyKey || strings.IndexFunc(key, func(c rune) bool { return c > unicode.MaxASCII || !unicode.IsPrint(c) }) >= 0 {
		writeError(w, wire.CodeBadRequest, "Idempotency-Key: want at most 255 printable ASCII characters")
		return "", false
	}
	return key, true
}

// leader answers which server leads.
func (a *api) leader(w http.ResponseWriter, r *http.Request) {
	if a.d.Leader == nil {
		writeJSON(w, http.StatusOK, wire.Leader{Self: true, Known: true})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	l, err := a.d.Leader(ctx)
	if err != nil {
		a.storeError(w, r, err, "leader")
		return
	}
	writeJSON(w, http.StatusOK, l)
}
