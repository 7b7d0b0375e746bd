package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/hodei-ci/hodei/internal/tracing"
)

// startTracing turns on the export of traces when the OTEL_* environment
// asks for it (see package tracing) and returns what flushes it at exit.
// A bad setting is logged, not fatal: CI keeps running without traces.
func startTracing(ctx context.Context, service string, log *slog.Logger) (stop func()) {
	shutdown, err := tracing.Setup(ctx, service)
	if err != nil {
		log.Error("traces not exported", "err", err)
		return func() {}
	}
	if tracing.Enabled() {
		log.Info("exporting traces over OTLP", "service", service)
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(sctx); err != nil {
			log.Warn("flushing traces", "err", err)
		}
	}
}
