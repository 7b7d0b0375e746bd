package api

import (
	"context"
	"log/slog"

	"github.com/hodei-ci/hodei/internal/audit"
)

// capHandler caps every text attribute of the API's log records (paths,
// ids, error messages: much of it comes from requests) at audit.MaxField
// bytes, and records the full length beside it as <key>_len, so that a
// client cannot grow the server log by more than a bounded amount per
// request.
type capHandler struct{ next slog.Handler }

// capLogger wraps l's handler with capHandler.
func capLogger(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(capHandler); ok {
		return l
	}
	return slog.New(capHandler{l.Handler()})
}

func (h capHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h capHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(capAttr(a)...)
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h capHandler) WithAttrs(as []slog.Attr) slog.Handler {
	var capped []slog.Attr
	for _, a := range as {
		capped = append(capped, capAttr(a)...)
	}
	return capHandler{h.next.WithAttrs(capped)}
}

func (h capHandler) WithGroup(name string) slog.Handler { return capHandler{h.next.WithGroup(name)} }

// capAttr returns a capped, and the full length of a capped value.
func capAttr(a slog.Attr) []slog.Attr {
	v := a.Value.Resolve()
	var s string
	switch v.Kind() {
	case slog.KindString:
		s = v.String()
	case slog.KindGroup:
		var g []any
		for _, x := range v.Group() {
			for _, c := range capAttr(x) {
				g = append(g, c)
			}
		}
		return []slog.Attr{slog.Group(a.Key, g...)}
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			s = x.Error()
		case interface{ String() string }:
			s = x.String()
		default:
			return []slog.Attr{a}
		}
	default:
		return []slog.Attr{a}
	}
	c, cut := audit.Clip(s)
	if !cut {
		return []slog.Attr{a}
	}
	return []slog.Attr{slog.String(a.Key, c), slog.Int(a.Key+"_len", len(s))}
}
