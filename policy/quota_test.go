package policy

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tongban/tongban/schemas/apierr"
)

func TestMemoryLimiter(t *testing.T) {
	now := time.Date(2026, 11, 21, 15, 59, 0, 0, time.UTC) // 23:59 in Beijing
	clock := func() time.Time { return now }
	ctx := context.Background()
	type step struct {
		advance   time.Duration
		key       string
		perMinute int
		perDay    int
		want      bool
	}
	tests := []struct {
		name  string
		start time.Time
		steps []step
	}{
		{"no limits", time.Time{}, []step{{0, "a", 0, 0, true}, {0, "a", 0, 0, true}, {0, "a", 0, 0, true}}},
		{"per minute", time.Time{}, []step{{0, "a", 2, 0, true}, {0, "a", 2, 0, true}, {0, "a", 2, 0, false}, {30 * time.Second, "a", 2, 0, false}, {30 * time.Second, "a", 2, 0, true}}},
		{"keys are independent", time.Time{}, []step{{0, "a", 1, 0, true}, {0, "b", 1, 0, true}, {0, "a", 1, 0, false}, {0, "b", 1, 0, false}}},
		{"per day resets at Beijing midnight", time.Date(2026, 11, 21, 15, 59, 0, 0, time.UTC), []step{
			{0, "a", 0, 2, true}, {0, "a", 0, 2, true}, {0, "a", 0, 2, false},
			{59 * time.Second, "a", 0, 2, false}, // 23:59:59 CST
			{time.Second, "a", 0, 2, true},       // 00:00:00 CST
		}},
		{"refused requests are not counted", time.Time{}, []step{{0, "a", 1, 3, true}, {0, "a", 1, 3, false}, {0, "a", 1, 3, false}, {time.Minute, "a", 1, 3, true}, {time.Minute, "a", 1, 3, true}, {time.Minute, "a", 1, 3, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
			if !tt.start.IsZero() {
				now = tt.start
			}
			l := NewMemoryLimiter(clock)
			for i, s := range tt.steps {
				now = now.Add(s.advance)
				got, err := l.Allow(ctx, s.key, s.perMinute, s.perDay)
				if err != nil {
					t.Fatal(err)
				}
				if got != s.want {
					t.Fatalf("step %d (%v, %s): Allow = %v, want %v", i, now, s.key, got, s.want)
				}
			}
		})
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := NewMemoryLimiter(nil).Allow(cancelled, "a", 1, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("Allow with a cancelled context: %v", err)
	}
}

type failingLimiter struct{}

func (failingLimiter) Allow(context.Context, string, int, int) (bool, error) {
	return false, errors.New("redis down")
}

func TestDecideWithQuotaFailsClosed(t *testing.T) {
	dict := testDictionary(t)
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	snap := Prepare(dict, benchGrants(dict, 40, now), 1)
	req := Request{Principal: Principal{SystemID: "system-0"}, Dataset: "civil.people", Purpose: "approval", Time: now}
	d, err := snap.Decide(req)
	if err != nil || len(d.Quotas) == 0 {
		t.Fatalf("Decide = %+v, %v; want quotas", d, err)
	}
	_, err = DecideWithQuota(context.Background(), snap, failingLimiter{}, req)
	if apierr.CodeOf(err) != codes.Unavailable || apierr.ReasonOf(err) != ReasonQuotaUnavailable {
		t.Fatalf("with a failing limiter: %v, want Unavailable %s", err, ReasonQuotaUnavailable)
	}
	// A decision allowing none of the wanted fields charges nothing: the
	// caller refuses the request.
	wanted := req
	wanted.Fields = d.Fields[:1]
	wanted.Wanted = []string{"a_field_not_allowed"}
	if got, err := DecideWithQuota(context.Background(), snap, failingLimiter{}, wanted); err != nil || len(got.Fields) == 0 {
		t.Fatalf("nothing wanted allowed: %+v, %v; want the decision, uncharged", got, err)
	}
	wanted.Wanted = d.Fields[:1]
	if _, err := DecideWithQuota(context.Background(), snap, failingLimiter{}, wanted); apierr.CodeOf(err) != codes.Unavailable {
		t.Fatalf("a wanted field allowed: %v, want the limiter consulted", err)
	}
	// Decisions without quotas never touch the limiter.
	req.Dataset = "civil.open"
	req.Principal.SystemID = "nobody"
	if _, err := DecideWithQuota(context.Background(), snap, failingLimiter{}, req); err != nil {
		t.Fatalf("unconditional read without quota: %v", err)
	}
}
