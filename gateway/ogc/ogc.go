// Package ogc republishes the gateway's spatial datasets as OGC API –
// Features (Part 1: Core, GeoJSON), so that GIS tools such as GDAL and QGIS
// read them with a bearer token.
//
// The façade never talks to a department: every items or feature request is
// a query of the gateway's pipeline (gateway/query), so it is authenticated,
// decided by the caller's grants, shaped (projected, masked, filtered by
// jurisdiction) and recorded in the audit log like any other query. The
// collections a caller sees are the datasets of kind "spatial" in the
// dictionary that its grants let it read for the request's purpose.
//
// Routes, relative to Prefix (default "/ogc"):
//
//	GET /                                  landing page
//	GET /api                               OpenAPI 3.0 description (service-desc)
//	GET /conformance                       conformance classes (core, geojson)
//	GET /collections                       the caller's spatial collections
//	GET /collections/{id}                  one collection (id = dataset name)
//	GET /collections/{id}/items            features: bbox, limit, page, lookup fields
//	GET /collections/{id}/items/{featureId} one feature by its key
//
// Every route takes an optional purpose parameter, the legal purpose the
// caller states (Handler.DefaultPurpose when absent); links in responses
// carry it on. The landing page, the API description and the conformance
// declaration need no token; the other routes answer 401 without one.
package ogc

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/tongban/tongban/gateway/api"
	"github.com/tongban/tongban/gateway/auth"
	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/gateway/reqctx"
	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
)

// Conformance classes the façade declares.
const (
	ConfCore    = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core"
	ConfGeoJSON = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson"
)

// CRS84 is the only coordinate reference system served (WGS 84 lon/lat).
const CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"

// Media types.
const (
	MediaGeoJSON = "application/geo+json"
	MediaJSON    = "application/json"
)

// Limits of the items endpoint. A limit above MaxLimit is clamped, as OGC
// API – Features asks; the pipeline may clamp further (Pipeline.MaxPage),
// and a page then holds fewer features, with a next link.
const (
	DefaultLimit = 10
	MaxLimit     = 1000
)

// DefaultPrefix is the path the façade is mounted under when Prefix is empty.
const DefaultPrefix = "/ogc"

// ReceiptHeader carries the audit receipt of an items or feature response,
// as "node/leafIndex".
const ReceiptHeader = "Tongban-Receipt"

// Handler serves the OGC API – Features façade. Auth, Pipeline and Dict are
// required. It is safe for concurrent use.
type Handler struct {
	// Auth authenticates the bearer token of each request.
	Auth *auth.Authenticator
	// Pipeline runs the items and feature requests as dataset queries.
	Pipeline *query.Pipeline
	// Dict is the dataset dictionary; its datasets of kind "spatial" are
	// the collections.
	Dict *datasets.Dictionary
	// Policy decides which collections a caller may see (listing and
	// collection metadata only, no data). It should be the policy engine
	// without quotas, so that browsing does not use a grant's quota; when
	// nil, Pipeline.Policy is used.
	Policy query.Decider
	// DefaultPurpose is the purpose of requests without a purpose parameter
	// (e.g. "approval"). When empty, the parameter is required.
	DefaultPurpose string
	// Prefix is the path the handler is mounted under (DefaultPrefix when
	// empty), without a trailing slash.
	Prefix string
	// BaseURL returns the scheme and host of absolute links, e.g.
	// "https://tongban.example.gov.cn". When nil it is derived from the
	// request (r.TLS, X-Forwarded-Proto and r.Host).
	BaseURL func(r *http.Request) string
	// Logger receives internal errors (slog.Default when nil).
	Logger *slog.Logger
	// Now is the clock of listing decisions (time.Now when nil).
	Now func() time.Time
}

var _ http.Handler = (*Handler)(nil)

// request is one parsed façade request.
type request struct {
	r         *http.Request
	ctx       context.Context
	id        string // request id
	base      string // absolute URL of the façade root, without trailing slash
	purpose   string
	explicitP bool   // purpose given as a parameter (carried on in links)
	format    string // "json" or "geojson" when given with f=
	principal policy.Principal
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := reqctx.ID(ctx)
	if id == "" {
		id = reqctx.NewID()
		ctx = reqctx.With(ctx, id)
	}
	req := &request{r: r, ctx: ctx, id: id}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.writeError(w, req, apierr.Newf(codes.Unimplemented, apierr.ReasonUnimplemented,
			"method %s is not allowed: the OGC API – Features façade is read-only", r.Method), http.StatusMethodNotAllowed)
		return
	}
	prefix := strings.TrimSuffix(h.prefix(), "/")
	path := r.URL.EscapedPath()
	if !strings.HasPrefix(path, prefix) {
		h.writeError(w, req, notFound("%s is not a path of the OGC API – Features façade", r.URL.Path), 0)
		return
	}
	rest := strings.Trim(strings.TrimPrefix(path, prefix), "/")
	var segs []string
	if rest != "" {
		for _, s := range strings.Split(rest, "/") {
			u, err := url.PathUnescape(s)
			if err != nil || u == "" {
				h.writeError(w, req, notFound("%s is not a path of the OGC API – Features façade", r.URL.Path), 0)
				return
			}
			segs = append(segs, u)
		}
	}
	req.base = h.baseURL(r) + prefix

	switch {
	case len(segs) == 0:
		h.serveLanding(w, req)
	case len(segs) == 1 && segs[0] == "api":
		h.serveAPI(w, req)
	case len(segs) == 1 && segs[0] == "conformance":
		h.serveConformance(w, req)
	case len(segs) == 1 && segs[0] == "collections":
		h.serveCollections(w, req)
	case len(segs) == 2 && segs[0] == "collections":
		h.serveCollection(w, req, segs[1])
	case len(segs) == 3 && segs[0] == "collections" && segs[2] == "items":
		h.serveItems(w, req, segs[1])
	case len(segs) == 4 && segs[0] == "collections" && segs[2] == "items":
		h.serveFeature(w, req, segs[1], segs[3])
	default:
		h.writeError(w, req, notFound("%s is not a path of the OGC API – Features façade", r.URL.Path), 0)
	}
}

func (h *Handler) prefix() string {
	if h.Prefix == "" {
		return DefaultPrefix
	}
	return h.Prefix
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

func (h *Handler) baseURL(r *http.Request) string {
	if h.BaseURL != nil {
		return strings.TrimSuffix(h.BaseURL(r), "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		scheme = p
	}
	return scheme + "://" + r.Host
}

// params checks the query string: every parameter must be one of allowed
// (or purpose or f), given once. It sets the purpose and format of req.
func (h *Handler) params(req *request, allowed func(name string) bool) (url.Values, error) {
	q, err := url.ParseQuery(req.r.URL.RawQuery)
	if err != nil {
		return nil, apierr.Invalid("query", "the query string cannot be parsed: %v", err)
	}
	for name, vs := range q {
		if name != "purpose" && name != "f" && (allowed == nil || !allowed(name)) {
			return nil, apierr.Invalid(name, "unknown query parameter %q", name)
		}
		if len(vs) > 1 {
			return nil, apierr.Invalid(name, "given %d times; give it once", len(vs))
		}
	}
	switch f := q.Get("f"); f {
	case "", "json", "geojson":
		req.format = f
	default:
		return nil, apierr.Invalid("f", "%q is not a supported format: use json or geojson", f)
	}
	req.purpose = strings.TrimSpace(q.Get("purpose"))
	req.explicitP = q.Has("purpose")
	if req.explicitP && req.purpose == "" {
		return nil, apierr.Invalid("purpose", "must not be empty")
	}
	if len(req.purpose) > 128 {
		return nil, apierr.Invalid("purpose", "longer than 128 bytes")
	}
	if req.purpose == "" {
		req.purpose = h.DefaultPurpose
	}
	if req.purpose == "" {
		return nil, apierr.Invalid("purpose", "is required: state the legal purpose of the request, e.g. purpose=approval")
	}
	return q, nil
}

// authenticate resolves the caller from the Authorization header.
func (h *Handler) authenticate(req *request) error {
	ctx := metadata.NewIncomingContext(req.ctx, metadata.Pairs("authorization", req.r.Header.Get("Authorization")))
	id, err := h.Auth.Authenticate(ctx)
	if err != nil {
		return err
	}
	req.principal = api.Principal(id)
	return nil
}

// collection returns the spatial dataset named id, or a 404 error.
func (h *Handler) collection(id string) (*datasets.Dataset, error) {
	ds, ok := h.Dict.Dataset(id)
	if !ok || ds.Kind != "spatial" {
		return nil, notFound("collection %q does not exist (see /collections)", id)
	}
	return ds, nil
}

// mayRead decides, without quota or audit, whether the caller may read ds.
func (h *Handler) mayRead(req *request, ds *datasets.Dataset) (policy.Decision, error) {
	d := h.Policy
	if d == nil {
		d = h.Pipeline.Policy
	}
	return d.Decide(req.ctx, policy.Request{
		Principal: req.principal,
		Dataset:   ds.Name,
		Purpose:   req.purpose,
		Time:      h.now(),
	})
}

func notFound(format string, args ...any) *apierr.Error {
	return apierr.Newf(codes.NotFound, apierr.ReasonNotFound, format, args...)
}

// isNotFound reports a query that matched no record (not an unknown dataset).
func isNotFound(err error) bool {
	var e *apierr.Error
	return errors.As(err, &e) && e.Code == codes.NotFound && e.Reason == apierr.ReasonNotFound
}
