package rest_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tongban/tongban/connectors/builtin"
	"github.com/tongban/tongban/connectors/connectortest"
	"github.com/tongban/tongban/connectors/sdk"
	"github.com/tongban/tongban/connectors/simulate"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// guard bounds every wait so that a broken Watch fails instead of hanging.
const guard = 30 * time.Second

type watchConnector interface {
	sdk.Connector
	sdk.Watcher
}

// simulated starts the simulated departments.
func simulated(t *testing.T) *simulate.Departments {
	t.Helper()
	deps, err := simulate.Start(t.Context(), simulate.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("starting simulated departments: %v", err)
	}
	t.Cleanup(func() { _ = deps.Close() })
	return deps
}

// front serves a simulated department's handler on a loopback server of
// its own that reports each long poll (a request with "wait") on the
// returned channel before the department sees it.
func front(t *testing.T, h http.Handler) (string, <-chan struct{}) {
	t.Helper()
	polls := make(chan struct{}, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("wait") {
			select {
			case polls <- struct{}{}:
			default:
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, polls
}

// demoConnector builds the demo connector of dep (testdata/demo/<dep>.yaml)
// against base.
func demoConnector(t *testing.T, dep, base string) watchConnector {
	t.Helper()
	vars := map[string]string{"APPROVAL_URL": base, "MARKET_URL": base, "RESOURCES_URL": base}
	typ, settings, err := builtin.DemoSettings(dep, vars)
	if err != nil {
		t.Fatal(err)
	}
	c, err := builtin.New(t.Context(), typ, settings)
	if err != nil {
		t.Fatalf("demo connector %s: %v", dep, err)
	}
	w, ok := c.(watchConnector)
	if !ok {
		t.Fatalf("demo connector %s (%T) is not a Watcher", dep, c)
	}
	d, err := c.Describe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(d.Capabilities, "watch") {
		t.Fatalf("demo connector %s: capabilities %v lack watch", dep, d.Capabilities)
	}
	return w
}

// watch runs w.Watch in the background until the test ends.
func watch(t *testing.T, w sdk.Watcher, datasets ...string) <-chan *v1.ChangeEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	events := make(chan *v1.ChangeEvent, 100)
	done := make(chan error, 1)
	go func() {
		done <- w.Watch(ctx, &v1.WatchRequest{Datasets: datasets}, func(ev *v1.ChangeEvent) error {
			select {
			case events <- ev:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) && apierr.CodeOf(err) != codes.Canceled {
				t.Errorf("Watch = %v after cancel, want nil or Canceled", err)
			}
		case <-time.After(guard):
			t.Error("Watch did not return after its context was cancelled")
		}
	})
	return events
}

func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(guard):
		t.Fatalf("%s did not happen", what)
		var zero T
		return zero
	}
}

func wantEvent(t *testing.T, ev *v1.ChangeEvent, dataset, key, id, op string) {
	t.Helper()
	if ev.GetDataset() != dataset || ev.GetRecordId() != id || ev.GetKeys()[key] != id || ev.GetOp() != op || ev.GetAt() == nil {
		t.Fatalf("event = %v, want %s %s (%s=%s) %s with a time", ev, op, dataset, key, id, id)
	}
}

func TestWatchApprovalSimulator(t *testing.T) {
	deps := simulated(t)
	for i, mode := range []string{"direct", "over gRPC"} {
		t.Run(mode, func(t *testing.T) {
			base, polls := front(t, deps.Approval)
			c := demoConnector(t, "approval", base)
			var w watchConnector = c
			if mode == "over gRPC" {
				w = connectortest.InProcess(t, c)
			}
			permits := deps.Data.Permits[3*i:]
			// A change made before Watch begins is skipped (start: latest).
			if _, err := deps.Approval.RevokePermit(permits[0].PermitID); err != nil {
				t.Fatal(err)
			}
			events := watch(t, w, "approval.permits")
			await(t, polls, "a long poll of the change feed")

			revoked := permits[1].PermitID
			if _, err := deps.Approval.RevokePermit(revoked); err != nil {
				t.Fatal(err)
			}
			wantEvent(t, await(t, events, "the revocation event"), "approval.permits", "permit_id", revoked, "upsert")
			// The event names the record as Fetch does, so the gateway can
			// refetch it and see the revocation.
			resp, err := w.Fetch(t.Context(), &v1.FetchRequest{Dataset: "approval.permits", Keys: map[string]string{"permit_id": revoked}})
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.Records[0].GetFields().GetFields()["status"].GetStringValue(); resp.Records[0].Id != revoked || got != "撤销" {
				t.Errorf("permit %s after the event: id %s, status %q", revoked, resp.Records[0].Id, got)
			}

			deleted := permits[2].PermitID
			if _, err := deps.Approval.DeletePermit(deleted); err != nil {
				t.Fatal(err)
			}
			wantEvent(t, await(t, events, "the deletion event"), "approval.permits", "permit_id", deleted, "delete")
		})
	}
}

func TestWatchMarketSimulator(t *testing.T) {
	deps := simulated(t)
	base, polls := front(t, deps.Market)
	c := demoConnector(t, "market", base)
	enterprises := watch(t, connectortest.InProcess(t, c), "market.enterprises")
	all := watch(t, c)
	await(t, polls, "a long poll of the change feed")
	await(t, polls, "a second long poll of the change feed")

	licences := deps.Data.Licences
	for _, l := range licences[:2] {
		if err := deps.Market.RevokeLicence(l.CreditCode); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range licences[:2] {
		wantEvent(t, await(t, enterprises, "an enterprise event"), "market.enterprises", "credit_code", l.CreditCode, "upsert")
		wantEvent(t, await(t, all, "a licence event"), "market.business_licences", "credit_code", l.CreditCode, "upsert")
		wantEvent(t, await(t, all, "an enterprise event"), "market.enterprises", "credit_code", l.CreditCode, "upsert")
	}
}

func TestDemoWatchConformance(t *testing.T) {
	deps := simulated(t)
	base, _ := front(t, deps.Approval)
	c := demoConnector(t, "approval", base)
	opts := connectortest.Options{Dataset: "approval.permits", Key: map[string]string{"permit_id": deps.Data.Permits[0].PermitID}}
	t.Run("direct", func(t *testing.T) { connectortest.Run(t, c, opts) })
	t.Run("over gRPC", func(t *testing.T) { connectortest.Run(t, connectortest.InProcess(t, c), opts) })
}
