package main

import (
	"context"
	"log/slog"

	"github.com/goagent-dev/goagent/internal/jobs/mask"
)

// redactHandler masks known secrets (the configured token, client secret,
// identity header…) in every diagnostic record, as a last line of defence:
// no package is supposed to log them in the first place.
type redactHandler struct {
	next   slog.Handler
	masker *mask.Masker
}

func newRedactHandler(next slog.Handler, secrets []string) slog.Handler {
	m := mask.New(mask.Options{MinLength: 4})
	for _, s := range secrets {
		m.AddValue(s)
	}
	return &redactHandler{next: next, masker: m}
}

func (h *redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *redactHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, h.masker.Mask(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *redactHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.masker.Mask(v.String()))
	case slog.KindGroup:
		var as []any
		for _, g := range v.Group() {
			as = append(as, h.attr(g))
		}
		return slog.Group(a.Key, as...)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, h.masker.Mask(err.Error()))
		}
		return slog.String(a.Key, h.masker.Mask(v.String()))
	}
	return a
}

func (h *redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = h.attr(a)
	}
	return &redactHandler{next: h.next.WithAttrs(out), masker: h.masker}
}

func (h *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{next: h.next.WithGroup(name), masker: h.masker}
}
