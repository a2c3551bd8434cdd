package host

import (
	"testing"

	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// BenchmarkFetch measures one key lookup through the host (bulkhead,
// breaker, deadline) and a real plugin process over gRPC with mTLS.
func BenchmarkFetch(b *testing.B) {
	h, err := New(Config{Connectors: []ConnectorConfig{builtin("fire", helperSettings{Department: "fire"})}}, quietOptions())
	if err != nil {
		b.Fatal(err)
	}
	if err := h.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = h.Close() })
	req := &v1.FetchRequest{Dataset: "fire.items", Keys: map[string]string{"id": "ok"}}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := h.Fetch(b.Context(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
