package auth

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
)

type benchKey int

// BenchmarkAuthenticate measures authenticating a REST call by bearer token
// as the query route sees it: certificates and rate limits enabled, no
// client certificate, the Authorization header as incoming metadata on a
// context a few values deep.
//
//	go test -run '^$' -bench BenchmarkAuthenticate -benchmem ./gateway/auth/
func BenchmarkAuthenticate(b *testing.B) {
	entries := []Entry{{TokenSHA256: Digest("demo-approval-token"), Identity: Identity{SystemID: "approval-bureau", Department: "approval"}}}
	for i := range 20 {
		entries = append(entries, Entry{TokenSHA256: Digest(string(rune('a' + i))), Identity: Identity{SystemID: string(rune('a' + i))}})
	}
	a := New(entries,
		WithCertificates(func(*x509.Certificate) (Identity, error) { return Identity{}, nil }),
		WithRateLimit(1e9, 1e9))
	ctx := context.Background()
	for i := range 5 {
		ctx = context.WithValue(ctx, benchKey(i), i)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	ctx = metadata.NewIncomingContext(ctx, metadata.MD{"authorization": []string{"Bearer demo-approval-token"}})
	b.ReportAllocs()
	for b.Loop() {
		id, err := a.Authenticate(ctx)
		if err != nil || id.SystemID != "approval-bureau" {
			b.Fatal(id, err)
		}
	}
}
