package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tongban/tongban/gateway/auth"
	"github.com/tongban/tongban/gateway/events"
	"github.com/tongban/tongban/gateway/httperr"
	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/gateway/reqctx"
	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// ReasonWatchLagged is the reason of the RESOURCE_EXHAUSTED error that ends
// a change stream whose reader fell too far behind.
const ReasonWatchLagged = "WATCH_LAGGED"

// ChangeHub fans the change events this node receives out to the change
// streams it serves. One hub per node follows the bus (Follow) and every
// WatchChanges stream or SSE connection watches the hub.
type ChangeHub struct {
	buffer int
	maxAge time.Duration
	start  time.Time

	mu       sync.Mutex
	next     int
	watchers map[int]*hubWatcher
}

type hubWatcher struct {
	ch     chan *v1.ChangeEvent
	lagged chan struct{}
	once   sync.Once
}

// NewChangeHub returns a hub. Each watcher may fall buffer events behind
// before its stream is ended (default 256).
func NewChangeHub(buffer int) *ChangeHub {
	if buffer <= 0 {
		buffer = 256
	}
	return &ChangeHub{buffer: buffer, maxAge: time.Minute, start: time.Now(), watchers: map[int]*hubWatcher{}}
}

// Notify hands one change event to every watcher. It never blocks: a
// watcher whose buffer is full is ended with WATCH_LAGGED.
func (h *ChangeHub) Notify(ev *v1.ChangeEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range h.watchers {
		select {
		case w.ch <- ev:
		default:
			w.once.Do(func() { close(w.lagged) })
		}
	}
}

// Follow feeds the hub from the bus's change events (events.TopicChanges)
// under group, which must be unique to this node. Events older than a
// minute when the hub started (history a new consumer group replays) are
// not forwarded: a stream shows changes from the moment it opens.
func (h *ChangeHub) Follow(ctx context.Context, sub events.Subscriber, group string) (stop func(), err error) {
	return events.SubscribeChanges(ctx, sub, group, func(_ context.Context, ev *v1.ChangeEvent) error {
		if at := ev.GetAt(); at != nil && at.AsTime().Before(h.start.Add(-h.maxAge)) {
			return nil
		}
		h.Notify(ev)
		return nil
	})
}

func (h *ChangeHub) watch() (*hubWatcher, func()) {
	w := &hubWatcher{ch: make(chan *v1.ChangeEvent, h.buffer), lagged: make(chan struct{})}
	h.mu.Lock()
	h.next++
	id := h.next
	h.watchers[id] = w
	h.mu.Unlock()
	return w, func() {
		h.mu.Lock()
		delete(h.watchers, id)
		h.mu.Unlock()
	}
}

// Changes serves change subscriptions: the WatchChanges gRPC stream and
// Server-Sent Events at /v1/changes/events. (grpc-gateway's in-process
// transport does not serve streams, so GET /v1/changes:watch answers
// UNIMPLEMENTED.) The caller's policy is applied to every notice: the
// decision is taken again for each one, and key values are withheld or
// masked as the grant says.
//
// A subscription lives only as long as its authority. When the caller no
// longer holds a grant for the stated purpose (revoked, expired), the
// stream ends with PERMISSION_DENIED, with the policy's reason (NO_GRANT,
// GRANT_EXPIRED, ...) and a message naming the dataset; over SSE this is
// the "error" event, after which the response ends. Authority is checked
// on every event and, so that a quiet stream ends too, every
// RecheckInterval. Which loss ends the stream depends on what was asked:
//
//   - Datasets named in the request are exactly what the caller asked for:
//     the stream ends as soon as any of them becomes unreadable.
//   - With none named ("every dataset I may read"), the stream ends when
//     none of the datasets readable at subscription time remains readable;
//     until then the notices of a dataset that is not readable now are
//     withheld, and resume if a grant covers it again. Such a notice
//     triggers a check of every watched dataset at most once per
//     SweepInterval; the periodic check runs regardless.
//
// A record outside the grant's jurisdiction is withheld, never a reason to
// end. Decision errors other than PERMISSION_DENIED (for example an
// exhausted quota or an unavailable quota service) withhold the notice at
// hand but do not end the stream.
type Changes struct {
	Auth   *auth.Authenticator
	Dict   *datasets.Dictionary
	Policy query.Decider
	Hub    *ChangeHub
	// Now is the decision clock (time.Now when nil).
	Now func() time.Time
	// Refs stands in for record ids the caller may not see (the query
	// pipeline's references, so that notices and answers agree); nil
	// omits such ids.
	Refs *query.RecordRefs
	// Heartbeat is the interval of SSE keep-alive comments (default 15s).
	Heartbeat time.Duration
	// RecheckInterval is how often an open stream checks that the caller
	// still holds its grants, events or not (default 5s). The checks do
	// not charge grant quotas when Policy is a query.FreeDecider (an
	// EngineDecider is: it decides without its Limiter); with a Policy
	// that is not, they decide with Decide, and so charge quotas, and a
	// warning says so once.
	RecheckInterval time.Duration
	// SweepInterval is the least time, on the Now clock, between two
	// checks of every watched dataset that notices trigger on a stream
	// that named no datasets (default 1s): a notice of a dataset the
	// caller may no longer read triggers one only when no check ran
	// within it, so a burst of such notices costs one decision per
	// notice, not one per watched dataset. The periodic checks run
	// regardless.
	SweepInterval time.Duration
	Logger        *slog.Logger

	freeWarn sync.Once
}

// Defaults of Changes.
const (
	// DefaultRecheckInterval is the default of Changes.RecheckInterval.
	DefaultRecheckInterval = 5 * time.Second
	// DefaultSweepInterval is the default of Changes.SweepInterval.
	DefaultSweepInterval = time.Second
)

// WatchChanges implements the method of v1.GatewayServer: the Gateway
// service forwards it here. Response headers are sent once the stream is
// subscribed, so a client that has received them misses no later change.
func (c *Changes) WatchChanges(req *v1.WatchChangesRequest, stream v1.Gateway_WatchChangesServer) error {
	return c.run(stream.Context(), req, func() error { return stream.SendHeader(metadata.MD{}) }, stream.Send)
}

// run authenticates, checks the request, then streams notices until ctx
// ends (nil) or the caller's authority is gone (PERMISSION_DENIED).
func (c *Changes) run(ctx context.Context, req *v1.WatchChangesRequest, ready func() error, send func(*v1.ChangeNotice) error) error {
	id, err := c.Auth.Authenticate(ctx)
	if err != nil {
		return err
	}
	p := Principal(id)
	names, err := c.check(ctx, p, req)
	if err != nil {
		return err
	}
	named := len(req.GetDatasets()) > 0
	purpose := req.GetPurpose()
	w, unwatch := c.Hub.watch()
	defer unwatch()
	if err := ready(); err != nil {
		return err
	}
	every := c.RecheckInterval
	if every <= 0 {
		every = DefaultRecheckInterval
	}
	recheck := time.NewTicker(every)
	defer recheck.Stop()
	sweepEvery := c.SweepInterval
	if sweepEvery <= 0 {
		sweepEvery = DefaultSweepInterval
	}
	var lastSweep time.Time // of the last check of every watched dataset
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.lagged:
			return apierr.New(codes.ResourceExhausted, ReasonWatchLagged,
				"the change stream fell too far behind and was ended; reconnect and re-read the records you track")
		case <-recheck.C:
			lastSweep = c.now()
			if err := c.authority(ctx, p, purpose, names, named); err != nil {
				return err
			}
		case ev := <-w.ch:
			if !slices.Contains(names, ev.GetDataset()) {
				continue
			}
			n, err := c.notice(ctx, p, purpose, ev)
			switch {
			case err == nil && n == nil:
				continue // outside the grant's jurisdiction
			case apierr.CodeOf(err) == codes.PermissionDenied:
				if named {
					return revoked(p, purpose, ev.GetDataset(), err)
				}
				// Has the caller lost every watched dataset? Checked at
				// most once per sweepEvery: the periodic check tells too.
				if now := c.now(); lastSweep.IsZero() || now.Before(lastSweep) || now.Sub(lastSweep) >= sweepEvery {
					lastSweep = now
					if err := c.authority(ctx, p, purpose, names, named); err != nil {
						return err
					}
				}
				continue
			case err != nil:
				c.log().DebugContext(ctx, "change notice withheld", "dataset", ev.GetDataset(), "consumer", p.String(), "error", err)
				continue
			}
			if err := send(n); err != nil {
				return err
			}
		}
	}
}

// authority checks that p may still read the watched datasets for purpose.
// It returns the PERMISSION_DENIED error that ends the stream when a named
// dataset is no longer readable, or, when the caller named none, when no
// watched dataset remains readable. Errors other than PERMISSION_DENIED do
// not end the stream: a check that cannot be made is made again later.
// Quotas are not charged: a check is not a request, so it decides with
// decideFree.
func (c *Changes) authority(ctx context.Context, p policy.Principal, purpose string, names []string, named bool) error {
	now := c.now()
	var denials []error
	for _, name := range names {
		_, err := c.decideFree(ctx, policy.Request{Principal: p, Dataset: name, Purpose: purpose, Time: now})
		switch {
		case err == nil:
			if !named {
				return nil
			}
		case apierr.CodeOf(err) == codes.PermissionDenied:
			if named {
				return revoked(p, purpose, name, err)
			}
			denials = append(denials, err)
		default:
			c.log().WarnContext(ctx, "re-checking a change subscription failed", "dataset", name, "consumer", p.String(), "error", err)
			if !named {
				return nil // perhaps still readable
			}
		}
	}
	if named || len(denials) < len(names) {
		return nil
	}
	reason := apierr.ReasonOf(denials[0])
	for _, err := range denials[1:] {
		if apierr.ReasonOf(err) != reason {
			reason = ""
		}
	}
	if reason == "" {
		reason = apierr.ReasonNoGrant
	}
	return apierr.Newf(codes.PermissionDenied, reason,
		"%s no longer holds a grant for purpose %q on any of the datasets it watched (%s): the grants were revoked or have ended, so the subscription is closed",
		p, purpose, strings.Join(names, ", ")).With("datasets", strings.Join(names, ",")).With("purpose", purpose).WithCause(errors.Join(denials...))
}

// revoked is the error that ends a subscription whose grant for dataset is
// gone; denial is the policy's decision, whose reason it keeps.
func revoked(p policy.Principal, purpose, dataset string, denial error) error {
	reason := apierr.ReasonOf(denial)
	if reason == "" {
		reason = apierr.ReasonNoGrant
	}
	return apierr.Newf(codes.PermissionDenied, reason,
		"the grant that let %s watch %s for purpose %q was revoked or has ended, so the subscription is closed: %s",
		p, dataset, purpose, apierr.From(denial).Msg).With("dataset", dataset).With("purpose", purpose).WithCause(denial)
}

// decideFree decides req without charging grant quotas, with the
// DecideFree of Policy. A Policy that is not a query.FreeDecider cannot:
// req is then decided with Decide, which may charge quotas, and the first
// such check logs a warning saying so.
func (c *Changes) decideFree(ctx context.Context, req policy.Request) (policy.Decision, error) {
	if f, ok := c.Policy.(query.FreeDecider); ok {
		return f.DecideFree(ctx, req)
	}
	c.freeWarn.Do(func() {
		c.log().WarnContext(ctx, "change subscription rechecks will charge grant quotas: the policy decider cannot decide without charging them (it is not a query.FreeDecider)",
			"decider", fmt.Sprintf("%T", c.Policy))
	})
	return c.Policy.Decide(ctx, req)
}

func (c *Changes) log() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// check validates the request and returns the datasets to watch. A named
// dataset must be readable now (the error names the missing grant); with
// none named, every dataset the caller may read now, at least one.
func (c *Changes) check(ctx context.Context, p policy.Principal, req *v1.WatchChangesRequest) ([]string, error) {
	if strings.TrimSpace(req.GetPurpose()) == "" {
		return nil, apierr.Invalid("purpose", "is required: state the legal purpose of the subscription, e.g. \"inspection\"")
	}
	now := c.now()
	if len(req.GetDatasets()) > 0 {
		var out []string
		for i, name := range req.GetDatasets() {
			if _, ok := c.Dict.Dataset(name); !ok {
				return nil, apierr.Newf(codes.NotFound, apierr.ReasonUnknownDataset,
					"datasets[%d]: dataset %q does not exist (see GET /v1/catalogue)", i, name).With("dataset", name)
			}
			if _, err := c.Policy.Decide(ctx, policy.Request{Principal: p, Dataset: name, Purpose: req.GetPurpose(), Time: now}); err != nil {
				return nil, err
			}
			if !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
		return out, nil
	}
	var out []string
	for _, ds := range c.Dict.Datasets {
		if _, err := c.Policy.Decide(ctx, policy.Request{Principal: p, Dataset: ds.Name, Purpose: req.GetPurpose(), Time: now}); err == nil {
			out = append(out, ds.Name)
		}
	}
	if len(out) == 0 {
		return nil, apierr.Newf(codes.PermissionDenied, apierr.ReasonNoGrant,
			"%s holds no grant for purpose %q on any dataset, so there are no changes to watch", p, req.GetPurpose())
	}
	return out, nil
}

// notice shapes one event for the caller, deciding afresh. It returns the
// decision's error when the caller may not read the dataset now, and a nil
// notice when the record lies outside the grant's jurisdiction (or is of
// unknown region when the grant is limited).
func (c *Changes) notice(ctx context.Context, p policy.Principal, purpose string, ev *v1.ChangeEvent) (*v1.ChangeNotice, error) {
	ds, ok := c.Dict.Dataset(ev.GetDataset())
	if !ok {
		return nil, nil
	}
	dec, err := c.Policy.Decide(ctx, policy.Request{Principal: p, Dataset: ds.Name, Purpose: purpose, Time: c.now()})
	if err != nil {
		return nil, err
	}
	region := ""
	if ds.RegionField != "" {
		region = ev.GetKeys()[ds.RegionField]
	}
	fields := dec.FieldsFor(region)
	if fields == nil {
		return nil, nil
	}
	n := &v1.ChangeNotice{
		Dataset:    ds.Name,
		Department: ds.Department,
		RecordId:   c.Refs.Release(&dec, ds, region, ev.GetRecordId()),
		Op:         ev.GetOp(),
		At:         ev.GetAt(),
	}
	for k, v := range ev.GetKeys() {
		if !slices.Contains(fields, k) {
			continue // withheld
		}
		if m := dec.MaskFor(region, k); m != v1.MaskKind_MASK_KIND_UNSPECIFIED {
			v = policy.ApplyMask(m, v)
		}
		if n.Keys == nil {
			n.Keys = map[string]string{}
		}
		n.Keys[k] = v
	}
	return n, nil
}

func (c *Changes) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// ServeHTTP serves the change stream as Server-Sent Events:
//
//	GET /v1/changes/events?datasets=approval.permits&purpose=inspection
//	Authorization: Bearer <token>
//
// datasets may repeat or hold a comma-separated list. Each notice is an
// event "change" whose data is the ChangeNotice in JSON, with an increasing
// id; a comment line every Heartbeat keeps proxies from closing the
// connection. Errors before the stream opens are JSON with the HTTP status
// of their gRPC code; an error that ends an open stream (the reader fell
// behind, the caller's grant was revoked or has ended) is an event "error"
// whose data is the same JSON error document, after which the response
// ends.
func (c *Changes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		httperr.Write(w, errors.New("response writer cannot stream"), reqctx.ID(r.Context()), 0)
		return
	}
	req := &v1.WatchChangesRequest{Purpose: r.URL.Query().Get("purpose")}
	for _, v := range r.URL.Query()["datasets"] {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				req.Datasets = append(req.Datasets, name)
			}
		}
	}
	ctx := r.Context()
	if h := r.Header.Get("Authorization"); h != "" {
		ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", h))
	}
	beat := c.Heartbeat
	if beat <= 0 {
		beat = 15 * time.Second
	}
	var (
		mu       sync.Mutex
		started  bool
		seq      int
		beatDone chan struct{} // closed when the heartbeat has stopped
	)
	write := func(s string) error {
		mu.Lock()
		defer mu.Unlock()
		if _, err := fmt.Fprint(w, s); err != nil {
			return fmt.Errorf("writing change event: %w", err)
		}
		flusher.Flush()
		return nil
	}
	hctx, stopBeat := context.WithCancel(ctx)
	defer stopBeat()
	ready := func() error {
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		mu.Lock()
		started = true
		mu.Unlock()
		beatDone = make(chan struct{})
		go func() {
			defer close(beatDone)
			t := time.NewTicker(beat)
			defer t.Stop()
			for {
				select {
				case <-hctx.Done():
					return
				case <-t.C:
					if write(": keep-alive\n\n") != nil {
						return
					}
				}
			}
		}()
		return write(": subscribed\n\n")
	}
	send := func(n *v1.ChangeNotice) error {
		b, err := protojson.Marshal(n)
		if err != nil {
			return fmt.Errorf("encoding change notice: %w", err)
		}
		seq++
		return write("id: " + strconv.Itoa(seq) + "\nevent: change\ndata: " + string(b) + "\n\n")
	}
	err := c.run(ctx, req, ready, send)
	stopBeat()
	if beatDone != nil {
		// The heartbeat must not write once ServeHTTP has returned.
		<-beatDone
	}
	if err == nil {
		return
	}
	mu.Lock()
	open := started
	mu.Unlock()
	if !open {
		httperr.Write(w, err, reqctx.ID(ctx), 0)
		return
	}
	if ctx.Err() == nil {
		b, _ := json.Marshal(httperr.New(err, reqctx.ID(ctx), 0))
		_ = write("event: error\ndata: " + string(b) + "\n\n")
	}
}
