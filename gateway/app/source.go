package app

import (
	"context"
	"os"
	"time"

	"github.com/tongban/tongban/connectors/host"
	"github.com/tongban/tongban/gateway/autofill"
	"github.com/tongban/tongban/policy"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// hostSource adapts the connector host to cache.Source.
type hostSource struct{ h *host.Host }

func (s hostSource) Fetch(ctx context.Context, req *v1.FetchRequest) (*v1.FetchResponse, error) {
	resp, _, err := s.h.Fetch(ctx, req)
	return resp, err
}

func mkdirAll(dir string) error { return os.MkdirAll(dir, 0o750) }

// correctionTotals adds up the departments' correction queues for the
// published statistics.
type correctionTotals struct{ e *autofill.Engine }

func (c correctionTotals) CorrectionCounts(ctx context.Context) (open, resolved uint64, err error) {
	counts, err := c.e.CorrectionCounts(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, n := range counts {
		open += uint64(n.Open)
		resolved += uint64(n.Resolved)
	}
	return open, resolved, nil
}

// beijing is the time zone of the published daily statistics (China
// Standard Time, UTC+8, no daylight saving time).
func beijing() *time.Location { return time.FixedZone("CST", 8*60*60) }

// grantBus announces grant changes on this node at once (local, synchronous)
// and to the other nodes (remote), and delivers both to the engine.
type grantBus struct {
	local  *policy.LocalBus
	remote policy.Bus
}

func (b grantBus) Publish(ctx context.Context, c policy.Change) error {
	if err := b.local.Publish(ctx, c); err != nil {
		return err
	}
	return b.remote.Publish(ctx, c)
}

func (b grantBus) Subscribe(handle func(context.Context, policy.Change)) func() {
	stopLocal := b.local.Subscribe(handle)
	stopRemote := b.remote.Subscribe(handle)
	return func() { stopLocal(); stopRemote() }
}
