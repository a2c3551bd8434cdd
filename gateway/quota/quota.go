// Package quota keeps grant quotas in Redis so that they hold across every
// gateway node: a shared policy.Limiter.
package quota

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tongban/tongban/policy"
)

// chinaOffset shifts Unix time so that day windows start at midnight China
// Standard Time (UTC+08:00), as policy.MemoryLimiter's do.
const chinaOffset = 8 * 60 * 60

// allowScript checks both windows and counts the request only when it fits
// both, atomically (one script runs at a time on a Redis server). KEYS[1] is
// the minute counter, KEYS[2] the day counter; ARGV: per minute, per day,
// TTLs in seconds of the two counters.
var allowScript = redis.NewScript(`
local pm = tonumber(ARGV[1])
local pd = tonumber(ARGV[2])
local mc = tonumber(redis.call('GET', KEYS[1]) or '0')
local dc = tonumber(redis.call('GET', KEYS[2]) or '0')
if (pm > 0 and mc >= pm) or (pd > 0 and dc >= pd) then
  return 0
end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
`)

// Limiter is a policy.Limiter on Redis with fixed windows: a minute window
// starts at each full UTC minute and a day window at each midnight China
// Standard Time, exactly as policy.MemoryLimiter, but counted once for all
// nodes. Window boundaries follow the node clocks, which are assumed to be
// in sync (NTP). Errors are returned, and policy.DecideWithQuota then fails
// closed with UNAVAILABLE (QUOTA_UNAVAILABLE), never a permission error.
type Limiter struct {
	client redis.UniversalClient
	prefix string
	now    func() time.Time
}

var _ policy.Limiter = (*Limiter)(nil)

// Options configure a Limiter.
type Options struct {
	// KeyPrefix starts every counter key; default "tongban:quota:".
	KeyPrefix string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// New returns a Limiter counting in client (standalone, Sentinel or
// Cluster; both counters of a key share a hash slot).
func New(client redis.UniversalClient, o Options) *Limiter {
	if o.KeyPrefix == "" {
		o.KeyPrefix = "tongban:quota:"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Limiter{client: client, prefix: o.KeyPrefix, now: o.Now}
}

// Allow implements policy.Limiter.
func (l *Limiter) Allow(ctx context.Context, key string, perMinute, perDay int) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if perMinute <= 0 && perDay <= 0 {
		return true, nil
	}
	sec := l.now().Unix()
	minute, day := sec/60, (sec+chinaOffset)/86400
	// The hash tag keeps both counters in one Cluster slot.
	base := l.prefix + "{" + key + "}"
	keys := []string{base + ":m:" + strconv.FormatInt(minute, 10), base + ":d:" + strconv.FormatInt(day, 10)}
	// Counters outlive their window a little, so that clock skew between
	// nodes does not resurrect a window.
	minuteTTL := 60 - sec%60 + 60
	dayTTL := 86400 - (sec+chinaOffset)%86400 + 3600
	n, err := allowScript.Run(ctx, l.client, keys, perMinute, perDay, minuteTTL, dayTTL).Int()
	if err != nil {
		return false, fmt.Errorf("counting quota %s in redis: %w", key, err)
	}
	return n == 1, nil
}
