package policy

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tongban/tongban/schemas/apierr"
)

// ReasonQuotaUnavailable is the reason of the UNAVAILABLE error returned
// when the quota counters cannot be reached: requests then fail closed.
const ReasonQuotaUnavailable = "QUOTA_UNAVAILABLE"

// Limiter counts requests against per-minute and per-day limits. A limit of
// 0 means no limit. Allow reports whether one more request under key fits
// both limits and, if it does, counts it; a refused request is not counted.
// Implementations are safe for concurrent use; a shared one (Redis) makes
// quotas hold across gateway nodes.
type Limiter interface {
	Allow(ctx context.Context, key string, perMinute, perDay int) (bool, error)
}

// Decider is anything that decides requests: a *Snapshot or an *Engine.
type Decider interface {
	Decide(req Request) (Decision, error)
}

// QuotaKey is the Limiter key of a grant's quota. A grant's quota is shared
// by every system the grant covers (for a department grant, the whole
// department).
func QuotaKey(grantID string) string { return "grant/" + grantID }

// DecideWithQuota decides req and then charges one request to the quota of
// every grant the decision used, unless req.Wanted is set and the decision
// allows none of it (the caller will refuse the request). When a quota is exhausted it returns an
// *apierr.Error with codes.ResourceExhausted and reason QUOTA_EXCEEDED
// naming the grant; when the limiter fails, codes.Unavailable with reason
// QUOTA_UNAVAILABLE (fail closed). Quotas checked before the exhausted one
// keep the request counted.
func DecideWithQuota(ctx context.Context, d Decider, l Limiter, req Request) (Decision, error) {
	dec, err := d.Decide(req)
	if err != nil {
		return Decision{}, err
	}
	if len(req.Wanted) > 0 && !slices.ContainsFunc(req.Wanted, func(f string) bool { return slices.Contains(dec.Fields, f) }) {
		// Only fields decided for selection are allowed: the caller
		// denies the request, and nothing is charged for it.
		return dec, nil
	}
	for _, q := range dec.Quotas {
		ok, err := l.Allow(ctx, QuotaKey(q.GrantID), q.PerMinute, q.PerDay)
		if err != nil {
			return Decision{}, apierr.New(codes.Unavailable, ReasonQuotaUnavailable, "the quota service is unavailable").
				WithCause(fmt.Errorf("checking quota of grant %s: %w", q.GrantID, err))
		}
		if !ok {
			return Decision{}, apierr.Newf(codes.ResourceExhausted, ReasonQuotaExceeded,
				"quota of grant %s (%s) is exhausted for %s", q.GrantID, describeQuota(q), req.Principal).
				With("grant_id", q.GrantID)
		}
	}
	return dec, nil
}

func describeQuota(q GrantQuota) string {
	switch {
	case q.PerMinute > 0 && q.PerDay > 0:
		return fmt.Sprintf("%d per minute, %d per day", q.PerMinute, q.PerDay)
	case q.PerMinute > 0:
		return fmt.Sprintf("%d per minute", q.PerMinute)
	default:
		return fmt.Sprintf("%d per day", q.PerDay)
	}
}

// chinaOffset shifts Unix time so that day windows start at midnight China
// Standard Time (UTC+08:00).
const chinaOffset = 8 * 60 * 60

// MemoryLimiter is an in-process Limiter with fixed windows: a minute window
// starts at each full UTC minute and a day window at each midnight China
// Standard Time (UTC+08:00). Fixed windows let up to twice a limit through
// around a window boundary; that is accepted for quotas that guard against
// bulk extraction rather than meter exactly. Counts are per process: use a
// shared Limiter when several gateway nodes serve the same consumers.
type MemoryLimiter struct {
	now func() time.Time

	mu      sync.Mutex
	windows map[string]*counter
}

type counter struct {
	minute, day           int64 // window numbers
	minuteCount, dayCount int
}

var _ Limiter = (*MemoryLimiter)(nil)

// NewMemoryLimiter returns a MemoryLimiter reading time from clock
// (time.Now when nil).
func NewMemoryLimiter(clock func() time.Time) *MemoryLimiter {
	if clock == nil {
		clock = time.Now
	}
	return &MemoryLimiter{now: clock, windows: map[string]*counter{}}
}

// Allow implements Limiter.
func (m *MemoryLimiter) Allow(ctx context.Context, key string, perMinute, perDay int) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if perMinute <= 0 && perDay <= 0 {
		return true, nil
	}
	sec := m.now().Unix()
	minute, day := sec/60, (sec+chinaOffset)/86400
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.windows[key]
	if c == nil {
		c = &counter{}
		m.windows[key] = c
	}
	if c.minute != minute {
		c.minute, c.minuteCount = minute, 0
	}
	if c.day != day {
		c.day, c.dayCount = day, 0
	}
	if perMinute > 0 && c.minuteCount >= perMinute || perDay > 0 && c.dayCount >= perDay {
		return false, nil
	}
	c.minuteCount++
	c.dayCount++
	return true, nil
}
