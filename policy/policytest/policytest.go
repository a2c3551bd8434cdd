// Package policytest has test doubles around the policy engine for the
// packages that decide with it: a limiter that counts what it is charged
// and a decider that charges quotas the way the gateway's adapter does.
package policytest

import (
	"context"
	"sync"

	"github.com/tongban/tongban/policy"
)

// CountingLimiter is a policy.MemoryLimiter that counts the requests
// charged to each quota key.
type CountingLimiter struct {
	*policy.MemoryLimiter
	mu      sync.Mutex
	charged map[string]int
}

// NewCountingLimiter returns a CountingLimiter over a fresh memory limiter.
func NewCountingLimiter() *CountingLimiter {
	return &CountingLimiter{MemoryLimiter: policy.NewMemoryLimiter(nil), charged: map[string]int{}}
}

// Allow counts the request and asks the memory limiter.
func (l *CountingLimiter) Allow(ctx context.Context, key string, perMinute, perDay int) (bool, error) {
	l.mu.Lock()
	l.charged[key]++
	l.mu.Unlock()
	return l.MemoryLimiter.Allow(ctx, key, perMinute, perDay)
}

// Count returns how many requests were charged to the quota of grant
// grantID.
func (l *CountingLimiter) Count(grantID string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.charged[policy.QuotaKey(grantID)]
}

// QuotaDecider decides like the gateway's policy adapter: Decide charges
// the quotas of the grants it uses to Limiter, DecideFree charges nothing.
type QuotaDecider struct {
	Snap    *policy.Snapshot
	Limiter policy.Limiter
}

// Decide decides r and charges the quotas of the grants used.
func (d QuotaDecider) Decide(ctx context.Context, r policy.Request) (policy.Decision, error) {
	return policy.DecideWithQuota(ctx, d.Snap, d.Limiter, r)
}

// DecideFree decides r without charging any quota.
func (d QuotaDecider) DecideFree(_ context.Context, r policy.Request) (policy.Decision, error) {
	return d.Snap.Decide(r)
}
