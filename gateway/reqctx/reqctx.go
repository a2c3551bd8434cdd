// Package reqctx carries the request id through a request's context and adds
// it to every log line written with that context.
package reqctx

import (
	"context"
	"log/slog"
	"math/rand/v2"
)

type key struct{}

// NewID returns a fresh random request id (16 hex digits). The bits come
// from the runtime's per-thread ChaCha8 generator, seeded by the system:
// an id names a request, it guards nothing, and reading the system's
// generator for it cost a tenth of a cached query's middleware.
func NewID() string {
	const digits = "0123456789abcdef"
	var b [16]byte
	v := rand.Uint64()
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b[:])
}

// With returns ctx carrying request id id.
func With(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, key{}, id)
}

// ID returns the request id carried by ctx, or "".
func ID(ctx context.Context) string {
	id, _ := ctx.Value(key{}).(string)
	return id
}

// Valid reports whether a caller-supplied request id is acceptable: 1 to 64
// characters of [A-Za-z0-9._-]. Others are replaced, so logs cannot be forged.
func Valid(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Handler is a slog.Handler that adds the request id of the record's context
// as attribute "request_id".
type Handler struct{ slog.Handler }

// Handle implements slog.Handler.
func (h Handler) Handle(ctx context.Context, r slog.Record) error {
	if id := ID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return Handler{h.Handler.WithAttrs(attrs)}
}

// WithGroup implements slog.Handler.
func (h Handler) WithGroup(name string) slog.Handler { return Handler{h.Handler.WithGroup(name)} }
