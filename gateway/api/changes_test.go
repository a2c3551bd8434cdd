package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tongban/tongban/gateway/auth"
	"github.com/tongban/tongban/gateway/events"
	"github.com/tongban/tongban/gateway/httperr"
	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// swapDecider decides with a snapshot that the test can replace (a grant
// revoked).
type swapDecider struct {
	snap atomic.Pointer[policy.Snapshot]
}

func (d *swapDecider) Decide(_ context.Context, req policy.Request) (policy.Decision, error) {
	return d.snap.Load().Decide(req)
}

type watchFixture struct {
	changes *Changes
	bus     *events.Memory
	policy  *swapDecider
	dict    *datasets.Dictionary
	client  v1.GatewayClient
	http    *httptest.Server
}

// testGrants returns the demo grants plus a narrow one for the inspector
// terminal, minus those whose id is in drop.
func testGrants(now time.Time, drop ...string) []*v1.Grant {
	var out []*v1.Grant
	for _, g := range policy.DemoGrants(now) {
		if g.GetId() == "demo-enforcement-permits" {
			narrow := proto.Clone(g).(*v1.Grant)
			narrow.Id = "test-inspector-permits"
			narrow.Consumer = &v1.Consumer{SystemId: "inspector-terminal", Department: "enforcement"}
			narrow.Fields = []string{"permit_id", "region_code", "status"}
			narrow.Masks = nil
			out = append(out, narrow)
		}
		out = append(out, g)
	}
	kept := out[:0]
	for _, g := range out {
		if !strings.Contains(strings.Join(drop, ","), g.GetId()) {
			kept = append(kept, g)
		}
	}
	return kept
}

type gatewayForTest struct {
	v1.UnimplementedGatewayServer
	*Changes
}

func (g gatewayForTest) WatchChanges(req *v1.WatchChangesRequest, s v1.Gateway_WatchChangesServer) error {
	return g.Changes.WatchChanges(req, s)
}

func newWatchFixture(t *testing.T) *watchFixture {
	t.Helper()
	dict := datasets.Default()
	now := time.Now()
	f := &watchFixture{dict: dict, bus: events.NewMemory(slog.New(slog.DiscardHandler)), policy: &swapDecider{}}
	f.policy.snap.Store(policy.Prepare(dict, testGrants(now), 1))
	a := auth.New([]auth.Entry{
		{TokenSHA256: auth.Digest("tok-enforcement"), Identity: auth.Identity{SystemID: "enforcement-platform", Department: "enforcement", Region: "1301"}},
		{TokenSHA256: auth.Digest("tok-approval"), Identity: auth.Identity{SystemID: "approval-bureau", Department: "approval", Region: "1301"}},
		{TokenSHA256: auth.Digest("tok-inspector"), Identity: auth.Identity{SystemID: "inspector-terminal", Department: "enforcement", Region: "1301"}},
		{TokenSHA256: auth.Digest("tok-nobody"), Identity: auth.Identity{SystemID: "nobody", Department: "tourism", Region: "1301"}},
	})
	hub := NewChangeHub(64)
	stop, err := hub.Follow(context.Background(), f.bus, "tongban-watch-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	f.changes = &Changes{Auth: a, Dict: dict, Policy: f.policy, Hub: hub, Heartbeat: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	v1.RegisterGatewayServer(srv, gatewayForTest{Changes: f.changes})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f.client = v1.NewGatewayClient(conn)

	mux := http.NewServeMux()
	mux.Handle("GET /v1/changes/events", f.changes)
	f.http = httptest.NewServer(mux)
	t.Cleanup(f.http.Close)
	return f
}

func (f *watchFixture) publish(t *testing.T, ev *v1.ChangeEvent) {
	t.Helper()
	if err := events.PublishChange(context.Background(), f.bus, ev); err != nil {
		t.Fatal(err)
	}
}

// watch opens a gRPC change stream and waits until it is subscribed.
func (f *watchFixture) watch(t *testing.T, token, purpose string, datasets ...string) (v1.Gateway_WatchChangesClient, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	s, err := f.client.WatchChanges(ctx, &v1.WatchChangesRequest{Datasets: datasets, Purpose: purpose})
	if err != nil {
		return nil, err
	}
	if _, err := s.Header(); err != nil {
		return nil, err
	}
	return s, nil
}

var (
	permitInShijiazhuang = &v1.ChangeEvent{Dataset: "approval.permits", RecordId: "P-001", Op: "upsert",
		Keys: map[string]string{"permit_id": "石审批〔2026〕001号", "applicant_id": "130102199003071237", "region_code": "130102"}}
	permitInBaoding = &v1.ChangeEvent{Dataset: "approval.permits", RecordId: "P-002", Op: "upsert",
		Keys: map[string]string{"permit_id": "保审批〔2026〕002号", "applicant_id": "130602198805054321", "region_code": "130602"}}
	permitNoRegion = &v1.ChangeEvent{Dataset: "approval.permits", RecordId: "P-003", Op: "delete",
		Keys: map[string]string{"permit_id": "审批〔2026〕003号"}}
	licence = &v1.ChangeEvent{Dataset: "market.business_licences", RecordId: "L-001", Op: "upsert",
		Keys: map[string]string{"credit_code": "91130100MA0G5XKQ2U", "region_code": "130102"}}
)

func TestWatchChangesShapesEveryNotice(t *testing.T) {
	f := newWatchFixture(t)
	enf, err := f.watch(t, "tok-enforcement", "inspection", "approval.permits", "market.business_licences")
	if err != nil {
		t.Fatal(err)
	}
	appr, err := f.watch(t, "tok-approval", "approval", "approval.permits")
	if err != nil {
		t.Fatal(err)
	}
	insp, err := f.watch(t, "tok-inspector", "inspection", "approval.permits")
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []*v1.ChangeEvent{permitInBaoding, permitNoRegion, permitInShijiazhuang} {
		f.publish(t, ev)
	}
	tests := []struct {
		name   string
		stream v1.Gateway_WatchChangesClient
		want   map[string]string
	}{
		{"enforcement: applicant id masked", enf, map[string]string{"permit_id": "石审批〔2026〕001号", "applicant_id": "130102********1237", "region_code": "130102"}},
		{"approval: applicant id in full", appr, map[string]string{"permit_id": "石审批〔2026〕001号", "applicant_id": "130102199003071237", "region_code": "130102"}},
		{"inspector: applicant id withheld", insp, map[string]string{"permit_id": "石审批〔2026〕001号", "region_code": "130102"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Outside the jurisdiction (Baoding) and of unknown region: not
			// delivered, so the first notice is the Shijiazhuang permit.
			n, err := tc.stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if n.GetRecordId() != "P-001" || n.GetDepartment() != "approval" || n.GetOp() != "upsert" {
				t.Fatalf("notice = %v", n)
			}
			if len(n.GetKeys()) != len(tc.want) {
				t.Fatalf("keys = %v, want %v", n.GetKeys(), tc.want)
			}
			for k, v := range tc.want {
				if n.GetKeys()[k] != v {
					t.Fatalf("keys[%s] = %q, want %q (all: %v)", k, n.GetKeys()[k], v, n.GetKeys())
				}
			}
		})
	}

	t.Run("revoked grant ends the stream", func(t *testing.T) {
		// Another subscriber's grant is untouched: its stream goes on.
		f.policy.snap.Store(policy.Prepare(f.dict, testGrants(time.Now(), "demo-enforcement-permits"), 2))
		f.publish(t, permitInShijiazhuang) // no longer granted
		f.publish(t, licence)              // still granted, but the stream named both
		n, err := enf.Recv()
		wantClosed(t, n, err, policy.ReasonNoGrant, "approval.permits")
		if n, err := appr.Recv(); err != nil || n.GetRecordId() != "P-001" {
			t.Fatalf("approval stream after another's revocation: %v, %v", n, err)
		}
	})
}

// wantClosed checks that a stream ended with the PERMISSION_DENIED error of
// a subscription whose grant is gone.
func wantClosed(t *testing.T, n *v1.ChangeNotice, err error, reason, dataset string) {
	t.Helper()
	if err == nil {
		t.Fatalf("stream goes on (notice %v), want it closed", n)
	}
	ae := apierr.From(err)
	if ae.Code != codes.PermissionDenied || ae.Reason != reason {
		t.Fatalf("err = %v, want PERMISSION_DENIED %s", err, reason)
	}
	if dataset != "" && ae.Meta["dataset"] != dataset {
		t.Fatalf("err = %v (metadata %v), want it to name dataset %s", err, ae.Meta, dataset)
	}
	for _, word := range []string{dataset, "revoked", "ended", "subscription is closed"} {
		if !strings.Contains(ae.Msg, word) {
			t.Fatalf("message %q lacks %q", ae.Msg, word)
		}
	}
}

// TestWatchChangesEndsWhenAuthorityIsGone checks that a stream ends, with
// the policy's reason, once the caller's grant is revoked or has expired:
// at the next event, or at the next periodic check on a quiet stream.
func TestWatchChangesEndsWhenAuthorityIsGone(t *testing.T) {
	const enforcementGrants = "demo-enforcement-permits,demo-enforcement-licences,demo-enforcement-enterprises"
	later := 400 * 24 * time.Hour // past every demo grant's end
	tests := []struct {
		name     string
		datasets []string
		quiet    bool          // no events: only the periodic check can tell
		drop     string        // grants revoked
		advance  time.Duration // clock moved on
		publish  []*v1.ChangeEvent
		reason   string
		dataset  string
	}{
		{"revoked, at the next event", []string{"approval.permits"}, false, "demo-enforcement-permits", 0,
			[]*v1.ChangeEvent{permitInShijiazhuang}, policy.ReasonNoGrant, "approval.permits"},
		{"revoked, quiet stream", []string{"approval.permits"}, true, "demo-enforcement-permits", 0,
			nil, policy.ReasonNoGrant, "approval.permits"},
		{"expired, at the next event", []string{"approval.permits"}, false, "", later,
			[]*v1.ChangeEvent{permitInShijiazhuang}, policy.ReasonGrantExpired, "approval.permits"},
		{"expired, quiet stream", []string{"approval.permits"}, true, "", later,
			nil, policy.ReasonGrantExpired, "approval.permits"},
		{"one of two named, quiet stream", []string{"approval.permits", "market.business_licences"}, true, "demo-enforcement-licences", 0,
			nil, policy.ReasonNoGrant, "market.business_licences"},
		{"one of two named, at its event", []string{"approval.permits", "market.business_licences"}, false, "demo-enforcement-licences", 0,
			[]*v1.ChangeEvent{licence}, policy.ReasonNoGrant, "market.business_licences"},
		{"all readable, none left, at an event", nil, false, enforcementGrants, 0,
			[]*v1.ChangeEvent{licence}, policy.ReasonNoGrant, ""},
		{"all readable, none left, quiet stream", nil, true, enforcementGrants, 0,
			nil, policy.ReasonNoGrant, ""},
		{"all readable, all expired, quiet stream", nil, true, "", later,
			nil, policy.ReasonGrantExpired, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newWatchFixture(t)
			var offset atomic.Int64
			f.changes.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
			f.changes.RecheckInterval = time.Hour // only events tell
			if tc.quiet {
				f.changes.RecheckInterval = 10 * time.Millisecond
			}
			s, err := f.watch(t, "tok-enforcement", "inspection", tc.datasets...)
			if err != nil {
				t.Fatal(err)
			}
			f.policy.snap.Store(policy.Prepare(f.dict, testGrants(time.Now(), tc.drop), 2))
			offset.Store(int64(tc.advance))
			for _, ev := range tc.publish {
				f.publish(t, ev)
			}
			n, err := s.Recv()
			wantClosed(t, n, err, tc.reason, tc.dataset)
			if tc.dataset == "" && apierr.From(err).Meta["datasets"] == "" {
				t.Errorf("err = %v does not name the watched datasets", err)
			}
		})
	}
}

// TestWatchAllReadableOutlivesOneRevocation checks that a stream of every
// dataset the caller may read goes on while one of them remains readable,
// withholding the notices of the revoked one.
func TestWatchAllReadableOutlivesOneRevocation(t *testing.T) {
	f := newWatchFixture(t)
	s, err := f.watch(t, "tok-enforcement", "inspection")
	if err != nil {
		t.Fatal(err)
	}
	f.policy.snap.Store(policy.Prepare(f.dict, testGrants(time.Now(), "demo-enforcement-permits"), 2))
	f.publish(t, permitInShijiazhuang) // withheld: no longer readable
	f.publish(t, licence)
	n, err := s.Recv()
	if err != nil || n.GetRecordId() != "L-001" {
		t.Fatalf("after one revocation: %v, %v; want the licence notice", n, err)
	}
	// Granted again: its notices resume.
	f.policy.snap.Store(policy.Prepare(f.dict, testGrants(time.Now()), 3))
	f.publish(t, permitInShijiazhuang)
	if n, err := s.Recv(); err != nil || n.GetRecordId() != "P-001" {
		t.Fatalf("after the grant came back: %v, %v; want the permit notice", n, err)
	}
}

// errDecider answers every request for a dataset with the error in errs
// (nil: permitted), and counts nothing.
type errDecider map[string]error

func (d errDecider) Decide(_ context.Context, req policy.Request) (policy.Decision, error) {
	if err := d[req.Dataset]; err != nil {
		return policy.Decision{}, err
	}
	return policy.Decision{Fields: []string{"permit_id"}}, nil
}

func TestChangesAuthority(t *testing.T) {
	p := policy.Principal{SystemID: "enforcement-platform", Department: "enforcement"}
	names := []string{"approval.permits", "market.business_licences"}
	expired := apierr.New(codes.PermissionDenied, policy.ReasonGrantExpired, "no active grant lets it read (the grant covering them has expired)")
	noGrant := apierr.New(codes.PermissionDenied, policy.ReasonNoGrant, "no active grant lets it read")
	down := apierr.New(codes.Unavailable, policy.ReasonQuotaUnavailable, "the quota service is unavailable")
	tests := []struct {
		name    string
		named   bool
		errs    errDecider
		reason  string // "" : the stream goes on
		dataset string
	}{
		{"named, all readable", true, errDecider{}, "", ""},
		{"named, one expired", true, errDecider{"market.business_licences": expired}, policy.ReasonGrantExpired, "market.business_licences"},
		{"named, check failed", true, errDecider{"approval.permits": down}, "", ""},
		{"named, check failed and one revoked", true, errDecider{"approval.permits": down, "market.business_licences": noGrant}, policy.ReasonNoGrant, "market.business_licences"},
		{"all, one revoked", false, errDecider{"approval.permits": noGrant}, "", ""},
		{"all, both expired", false, errDecider{"approval.permits": expired, "market.business_licences": expired}, policy.ReasonGrantExpired, ""},
		{"all, both gone for different reasons", false, errDecider{"approval.permits": expired, "market.business_licences": noGrant}, policy.ReasonNoGrant, ""},
		{"all, one revoked, one check failed", false, errDecider{"approval.permits": noGrant, "market.business_licences": down}, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &Changes{Policy: tc.errs, Dict: datasets.Default()}
			err := c.authority(context.Background(), p, "inspection", names, tc.named)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("err = %v, want the stream to go on", err)
				}
				return
			}
			ae := apierr.From(err)
			if ae.Code != codes.PermissionDenied || ae.Reason != tc.reason || ae.Meta["purpose"] != "inspection" {
				t.Fatalf("err = %v (metadata %v), want PERMISSION_DENIED %s", err, ae.Meta, tc.reason)
			}
			if tc.dataset != "" && (ae.Meta["dataset"] != tc.dataset || !strings.Contains(ae.Msg, tc.dataset)) {
				t.Fatalf("err = %v (metadata %v) does not name %s", err, ae.Meta, tc.dataset)
			}
		})
	}
}

// countingLimiter allows everything and counts the requests charged.
type countingLimiter struct{ n atomic.Int64 }

func (l *countingLimiter) Allow(context.Context, string, int, int) (bool, error) {
	l.n.Add(1)
	return true, nil
}

// TestRecheckChargesNoQuota checks that the periodic checks of a stream do
// not use up the grant's quota, while notices still do.
func TestRecheckChargesNoQuota(t *testing.T) {
	dict := datasets.Default()
	snap := policy.Prepare(dict, testGrants(time.Now()), 1)
	p := policy.Principal{SystemID: "enforcement-platform", Department: "enforcement"}
	for _, mk := range []func(*countingLimiter) query.Decider{
		func(l *countingLimiter) query.Decider { return EngineDecider{Engine: snap, Limiter: l} },
		func(l *countingLimiter) query.Decider { return &EngineDecider{Engine: snap, Limiter: l} },
	} {
		lim := &countingLimiter{}
		c := &Changes{Dict: dict, Policy: mk(lim)}
		for range 10 {
			if err := c.authority(context.Background(), p, "inspection", []string{"approval.permits"}, true); err != nil {
				t.Fatal(err)
			}
		}
		if n := lim.n.Load(); n != 0 {
			t.Fatalf("%T: 10 checks charged %d requests to the quota", c.Policy, n)
		}
		if n, err := c.notice(context.Background(), p, "inspection", permitInShijiazhuang); err != nil || n == nil {
			t.Fatalf("notice: %v, %v", n, err)
		}
		if lim.n.Load() == 0 {
			t.Fatalf("%T: a notice charged nothing: the limiter is not in use", c.Policy)
		}
	}
}

// chargingDecider decides with Decide only: it is not a
// query.FreeDecider.
type chargingDecider struct{ d EngineDecider }

func (c chargingDecider) Decide(ctx context.Context, req policy.Request) (policy.Decision, error) {
	return c.d.Decide(ctx, req)
}

// TestRecheckWithoutFreeDeciderWarnsOnce: with a Policy that cannot decide
// without charging quotas, the checks decide with Decide (and so charge)
// and the first one logs a warning saying so; later checks log it no more.
// A FreeDecider logs nothing.
func TestRecheckWithoutFreeDeciderWarnsOnce(t *testing.T) {
	dict := datasets.Default()
	snap := policy.Prepare(dict, testGrants(time.Now()), 1)
	p := policy.Principal{SystemID: "enforcement-platform", Department: "enforcement"}
	for _, tc := range []struct {
		name     string
		mk       func(*countingLimiter) query.Decider
		warnings int
		charged  bool
	}{
		{"not a FreeDecider", func(l *countingLimiter) query.Decider {
			return chargingDecider{EngineDecider{Engine: snap, Limiter: l}}
		}, 1, true},
		{"FreeDecider", func(l *countingLimiter) query.Decider { return EngineDecider{Engine: snap, Limiter: l} }, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lim := &countingLimiter{}
			var logs bytes.Buffer
			c := &Changes{Dict: dict, Policy: tc.mk(lim), Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			for range 5 {
				if err := c.authority(context.Background(), p, "inspection", []string{"approval.permits"}, true); err != nil {
					t.Fatal(err)
				}
			}
			if got := strings.Count(logs.String(), "level=WARN"); got != tc.warnings {
				t.Errorf("%d warnings logged, want %d; logs:\n%s", got, tc.warnings, logs.String())
			}
			if tc.warnings > 0 && !strings.Contains(logs.String(), "charge grant quotas") {
				t.Errorf("the warning does not say the checks charge quotas: %s", logs.String())
			}
			if charged := lim.n.Load() > 0; charged != tc.charged {
				t.Errorf("checks charged %d requests, want charged: %v", lim.n.Load(), tc.charged)
			}
		})
	}
}

func TestWatchChangesRefuses(t *testing.T) {
	f := newWatchFixture(t)
	tests := []struct {
		name, token, purpose string
		datasets             []string
		want                 codes.Code
	}{
		{"no token", "", "inspection", nil, codes.Unauthenticated},
		{"bad token", "tok-wrong", "inspection", nil, codes.Unauthenticated},
		{"no purpose", "tok-enforcement", "", nil, codes.InvalidArgument},
		{"unknown dataset", "tok-enforcement", "inspection", []string{"nope.nothing"}, codes.NotFound},
		{"no grant for the dataset", "tok-enforcement", "inspection", []string{"resources.parcels"}, codes.PermissionDenied},
		{"no grant at all", "tok-nobody", "inspection", nil, codes.PermissionDenied},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := f.watch(t, tc.token, tc.purpose, tc.datasets...)
			if err == nil {
				// A refusal before the stream opens arrives as trailers.
				_, err = s.Recv()
			}
			if status.Code(err) != tc.want {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// sseStream reads Server-Sent Events.
type sseStream struct {
	r    *bufio.Reader
	resp *http.Response
}

func (f *watchFixture) sse(t *testing.T, token, query string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.http.URL+"/v1/changes/events?"+query, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return &sseStream{r: bufio.NewReader(resp.Body), resp: resp}
}

// next returns the next event's type and data, skipping comments; bounded.
func (s *sseStream) next(t *testing.T) (string, string, []string) {
	t.Helper()
	var event, data string
	var comments []string
	for i := 0; i < 1000; i++ {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading SSE: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "" && event != "":
			return event, data, comments
		case strings.HasPrefix(line, ":"):
			comments = append(comments, strings.TrimSpace(line[1:]))
		case strings.HasPrefix(line, "event: "):
			event = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data = line[len("data: "):]
		}
	}
	t.Fatal("no event within 1000 lines")
	return "", "", nil
}

func (s *sseStream) waitSubscribed(t *testing.T) {
	t.Helper()
	for i := 0; i < 100; i++ {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading SSE: %v", err)
		}
		if strings.TrimSpace(line) == ": subscribed" {
			return
		}
	}
	t.Fatal("stream never subscribed")
}

func TestChangeEventsSSE(t *testing.T) {
	f := newWatchFixture(t)
	s := f.sse(t, "tok-enforcement", "datasets=approval.permits,market.business_licences&purpose=inspection")
	if s.resp.StatusCode != http.StatusOK || s.resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, content type %q", s.resp.StatusCode, s.resp.Header.Get("Content-Type"))
	}
	s.waitSubscribed(t)
	f.publish(t, permitInBaoding)
	f.publish(t, permitInShijiazhuang)
	event, data, _ := s.next(t)
	if event != "change" {
		t.Fatalf("event %q", event)
	}
	var n v1.ChangeNotice
	if err := protojson.Unmarshal([]byte(data), &n); err != nil {
		t.Fatalf("data %q: %v", data, err)
	}
	if n.GetRecordId() != "P-001" || n.GetKeys()["applicant_id"] != "130102********1237" {
		t.Fatalf("notice = %v", &n)
	}
	if strings.Contains(data, "130102199003071237") {
		t.Fatal("SSE notice carries the unmasked resident ID")
	}
	// A notice of unknown region is not delivered to a caller whose grant
	// is limited to a jurisdiction; the next one is.
	f.publish(t, permitNoRegion)
	f.publish(t, licence)
	_, data, _ = s.next(t)
	if !strings.Contains(data, "L-001") {
		t.Fatalf("second notice %q, want the licence", data)
	}

	t.Run("errors before the stream are JSON with the HTTP status", func(t *testing.T) {
		tests := []struct {
			token, query string
			status       int
			reason       string
		}{
			{"", "purpose=inspection", http.StatusUnauthorized, "UNAUTHENTICATED"},
			{"tok-enforcement", "datasets=resources.parcels&purpose=inspection", http.StatusForbidden, ""},
			{"tok-enforcement", "datasets=approval.permits", http.StatusBadRequest, "INVALID_ARGUMENT"},
		}
		for _, tc := range tests {
			s := f.sse(t, tc.token, tc.query)
			if s.resp.StatusCode != tc.status {
				t.Fatalf("%s: status %d, want %d", tc.query, s.resp.StatusCode, tc.status)
			}
			var body httperr.Body
			if err := json.NewDecoder(s.r).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if body.Error.Code != tc.status || body.Error.Message == "" {
				t.Fatalf("%s: error document %+v", tc.query, body)
			}
			if tc.reason != "" && body.Error.Reason != tc.reason {
				t.Fatalf("%s: reason %q, want %q", tc.query, body.Error.Reason, tc.reason)
			}
			if tc.status == http.StatusUnauthorized && s.resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatalf("%s: 401 without WWW-Authenticate", tc.query)
			}
		}
	})
}

func TestHubEndsLaggingWatchers(t *testing.T) {
	h := NewChangeHub(1)
	w, unwatch := h.watch()
	defer unwatch()
	h.Notify(licence)
	select {
	case <-w.lagged:
		t.Fatal("lagged after one event with a buffer of one")
	default:
	}
	h.Notify(licence)
	select {
	case <-w.lagged:
	default:
		t.Fatal("not lagged after overflowing the buffer")
	}
	h.Notify(licence) // closing twice must not panic
}

// TestNoticeRecordIDs checks that a change notice carries the record id
// only to a caller who may see the dataset's key field, and otherwise the
// same opaque reference the query pipeline gives.
func TestNoticeRecordIDs(t *testing.T) {
	dict := datasets.Default()
	grants := testGrants(time.Now())
	for _, g := range grants {
		if g.GetId() == "test-inspector-permits" {
			keyless := proto.Clone(g).(*v1.Grant)
			keyless.Id = "test-keyless-permits"
			keyless.Consumer = &v1.Consumer{SystemId: "keyless-terminal", Department: "enforcement"}
			keyless.Fields = []string{"region_code", "status"}
			grants = append(grants, keyless)
			break
		}
	}
	refs, err := query.NewRecordRefs(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	c := &Changes{Dict: dict, Policy: EngineDecider{Engine: policy.Prepare(dict, grants, 1)}, Refs: refs}
	ctx := context.Background()
	id := permitInShijiazhuang.GetRecordId()
	for system, want := range map[string]string{
		"inspector-terminal": id,
		"keyless-terminal":   refs.Ref("approval.permits", id),
	} {
		n, err := c.notice(ctx, policy.Principal{SystemID: system, Department: "enforcement"}, "inspection", permitInShijiazhuang)
		if err != nil || n == nil {
			t.Fatalf("%s: notice: %v, %v", system, n, err)
		}
		if n.GetRecordId() != want {
			t.Errorf("%s: record id %q, want %q", system, n.GetRecordId(), want)
		}
		if _, ok := n.GetKeys()["permit_id"]; ok && system == "keyless-terminal" {
			t.Errorf("%s: the notice reveals the permit id in its keys: %v", system, n.GetKeys())
		}
	}
}

// countingDecider decides with a snapshot the test can replace and counts
// every decision, charged (Decide) or not (DecideFree).
type countingDecider struct {
	snap atomic.Pointer[policy.Snapshot]
	n    atomic.Int64
}

func (d *countingDecider) Decide(_ context.Context, req policy.Request) (policy.Decision, error) {
	d.n.Add(1)
	return d.snap.Load().Decide(req)
}

func (d *countingDecider) DecideFree(ctx context.Context, req policy.Request) (policy.Decision, error) {
	return d.Decide(ctx, req)
}

// TestDeniedNoticesSweepAtMostOncePerInterval: on a stream that named no
// datasets, a burst of notices of a dataset the caller may no longer read
// costs one decision each and one check of every watched dataset per
// SweepInterval, not one check per notice.
func TestDeniedNoticesSweepAtMostOncePerInterval(t *testing.T) {
	dict := datasets.Default()
	pol := &countingDecider{}
	pol.snap.Store(policy.Prepare(dict, testGrants(time.Now()), 1))
	var offset atomic.Int64
	hub := NewChangeHub(256)
	c := &Changes{
		Auth:            auth.New([]auth.Entry{{TokenSHA256: auth.Digest("tok-enforcement"), Identity: auth.Identity{SystemID: "enforcement-platform", Department: "enforcement"}}}),
		Dict:            dict,
		Policy:          pol,
		Hub:             hub,
		Now:             func() time.Time { return time.Now().Add(time.Duration(offset.Load())) },
		RecheckInterval: time.Hour, // only notices trigger checks
		SweepInterval:   time.Minute,
		Logger:          slog.New(slog.DiscardHandler),
	}
	p := policy.Principal{SystemID: "enforcement-platform", Department: "enforcement"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	names, err := c.check(ctx, p, &v1.WatchChangesRequest{Purpose: "inspection"})
	if err != nil || len(names) < 2 || names[0] != "approval.permits" {
		t.Fatalf("watched datasets = %v, %v; want approval.permits first of several", names, err)
	}

	ready := make(chan struct{})
	sent := make(chan *v1.ChangeNotice, 16)
	ended := make(chan error, 1)
	sctx := metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer tok-enforcement"))
	go func() {
		ended <- c.run(sctx, &v1.WatchChangesRequest{Purpose: "inspection"},
			func() error { close(ready); return nil },
			func(n *v1.ChangeNotice) error { sent <- n; return nil })
	}()
	select {
	case <-ready:
	case <-ctx.Done():
		t.Fatal("the stream never opened")
	}
	// The permits grant is revoked; the licences grant remains.
	pol.snap.Store(policy.Prepare(dict, testGrants(time.Now(), "demo-enforcement-permits"), 2))
	before := pol.n.Load()
	if err := c.authority(ctx, p, "inspection", names, false); err != nil {
		t.Fatal(err)
	}
	sweep := pol.n.Load() - before // decisions of one check of every watched dataset

	// burst publishes denied permit notices, then a licence notice, and
	// returns the decisions they cost once the licence notice is sent.
	burst := func(denied int) int64 {
		t.Helper()
		start := pol.n.Load()
		for range denied {
			hub.Notify(permitInShijiazhuang)
		}
		hub.Notify(licence)
		select {
		case n := <-sent:
			if n.GetRecordId() != licence.GetRecordId() {
				t.Fatalf("sent %v, want the licence notice only", n)
			}
		case err := <-ended:
			t.Fatalf("the stream ended: %v", err)
		case <-ctx.Done():
			t.Fatal("the licence notice never came")
		}
		return pol.n.Load() - start
	}
	const denied = 50
	if got, want := burst(denied), int64(denied)+sweep+1; got != want {
		t.Errorf("first burst of %d denied notices cost %d decisions, want %d (one check of %d)", denied, got, want, sweep)
	}
	if got, want := burst(denied), int64(denied)+1; got != want {
		t.Errorf("second burst within the interval cost %d decisions, want %d (no check)", got, want)
	}
	offset.Store(int64(2 * time.Minute))
	if got, want := burst(1), 1+sweep+1; got != want {
		t.Errorf("a denied notice after the interval cost %d decisions, want %d (one check)", got, want)
	}
	cancel()
	if err := <-ended; err != nil {
		t.Errorf("run = %v, want nil once the caller leaves", err)
	}
}
