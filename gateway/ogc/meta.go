package ogc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"

	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	"github.com/tongban/tongban/schemas/ident"
)

// Link is an OGC API link.
type Link struct {
	Href  string `json:"href"`
	Rel   string `json:"rel"`
	Type  string `json:"type,omitempty"`
	Title string `json:"title,omitempty"`
}

// landing is the landing page document.
type landing struct {
	Title       string `json:"title"`
	Description string `json:"description"`
	Links       []Link `json:"links"`
}

// conformance is the conformance declaration.
type conformance struct {
	ConformsTo []string `json:"conformsTo"`
}

// Collection describes one feature collection.
type Collection struct {
	ID          string   `json:"id"`
	Title       string   `json:"title"`
	Description string   `json:"description,omitempty"`
	ItemType    string   `json:"itemType"`
	CRS         []string `json:"crs"`
	Links       []Link   `json:"links"`
}

type collections struct {
	Links       []Link       `json:"links"`
	Collections []Collection `json:"collections"`
}

// exception is the OGC API exception document.
type exception struct {
	Code        string `json:"code"`
	Description string `json:"description"`
}

// link builds an absolute link to path (relative to the façade root) with
// query, adding the purpose when the caller gave one.
func (req *request) link(path string, query url.Values) string {
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	if req.explicitP {
		q.Set("purpose", req.purpose)
	}
	u := req.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// self returns the link of the request itself with format f.
func (req *request) self(path string, query url.Values, rel, typ, f string) Link {
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	if f != "" {
		q.Set("f", f)
	}
	return Link{Href: req.link(path, q), Rel: rel, Type: typ}
}

func (h *Handler) serveLanding(w http.ResponseWriter, req *request) {
	if _, err := h.params(req, nil); err != nil {
		h.writeError(w, req, err, 0)
		return
	}
	doc := landing{
		Title: "Tongban spatial data exchange (OGC API – Features)",
		Description: "Spatial datasets of the departments linked by the Tongban gateway. " +
			"Send \"Authorization: Bearer <token>\"; every items request is decided by the caller's grants " +
			"for the stated purpose (parameter purpose, default " + fmt.Sprintf("%q", h.DefaultPurpose) + ") and recorded in the audit log.",
		Links: []Link{
			req.self("/", nil, "self", MediaJSON, ""),
			{Href: req.link("/api", nil), Rel: "service-desc", Type: MediaOpenAPI, Title: "OpenAPI 3.0 description"},
			{Href: req.link("/conformance", nil), Rel: "conformance", Type: MediaJSON, Title: "Conformance classes"},
			{Href: req.link("/collections", nil), Rel: "data", Type: MediaJSON, Title: "Feature collections"},
		},
	}
	h.writeJSON(w, req, http.StatusOK, MediaJSON, doc)
}

func (h *Handler) serveConformance(w http.ResponseWriter, req *request) {
	if _, err := h.params(req, nil); err != nil {
		h.writeError(w, req, err, 0)
		return
	}
	h.writeJSON(w, req, http.StatusOK, MediaJSON, conformance{ConformsTo: []string{ConfCore, ConfGeoJSON}})
}

func (h *Handler) serveCollections(w http.ResponseWriter, req *request) {
	if _, err := h.params(req, nil); err != nil {
		h.writeError(w, req, err, 0)
		return
	}
	if err := h.authenticate(req); err != nil {
		h.writeError(w, req, err, 0)
		return
	}
	doc := collections{
		Links:       []Link{req.self("/collections", nil, "self", MediaJSON, "")},
		Collections: []Collection{},
	}
	for _, ds := range h.Dict.Datasets {
		if ds.Kind != "spatial" {
			continue
		}
		if _, err := h.mayRead(req, ds); err != nil {
			if code := apierr.CodeOf(err); code == codes.PermissionDenied || code == codes.NotFound {
				continue
			}
			h.writeError(w, req, err, 0)
			return
		}
		doc.Collections = append(doc.Collections, h.describe(req, ds))
	}
	h.writeJSON(w, req, http.StatusOK, MediaJSON, doc)
}

func (h *Handler) serveCollection(w http.ResponseWriter, req *request, id string) {
	if _, err := h.params(req, nil); err != nil {
		h.writeError(w, req, err, 0)
		return
	}
	if err := h.authenticate(req); err != nil {
		h.writeError(w, req, err, 0)
		return
	}
	ds, err := h.collection(id)
	if err != nil {
		h.writeError(w, req, err, 0)
		return
	}
	if _, err := h.mayRead(req, ds); err != nil {
		h.writeError(w, req, err, 0)
		return
	}
	c := h.describe(req, ds)
	c.Links = append([]Link{req.self("/collections/"+url.PathEscape(ds.Name), nil, "self", MediaJSON, "")}, c.Links...)
	h.writeJSON(w, req, http.StatusOK, MediaJSON, c)
}

// describe returns the collection document of ds (without a self link).
func (h *Handler) describe(req *request, ds *datasets.Dataset) Collection {
	items := "/collections/" + url.PathEscape(ds.Name) + "/items"
	desc := ds.Title
	if dep, ok := h.Dict.Department(ds.Department); ok {
		desc += ", held by " + dep.Name
	}
	filters := append(append([]string{}, ds.Keys...), ds.Lookups...)
	desc += ". Features may be selected by bbox and by " + strings.Join(filters, ", ") + "; feature ids are " + strings.Join(ds.Keys, ", ") + "."
	return Collection{
		ID:          ds.Name,
		Title:       ds.Title,
		Description: desc,
		ItemType:    "feature",
		CRS:         []string{CRS84},
		Links: []Link{
			{Href: req.link(items, nil), Rel: "items", Type: MediaGeoJSON, Title: "Features (GeoJSON)"},
			{Href: req.link(items, url.Values{"f": {"json"}}), Rel: "items", Type: MediaJSON, Title: "Features (JSON)"},
		},
	}
}

// writeJSON writes v as the response body.
func (h *Handler) writeJSON(w http.ResponseWriter, req *request, status int, contentType string, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		h.writeError(w, req, fmt.Errorf("encoding %s response: %w", contentType, err), 0)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", fmt.Sprint(buf.Len()))
	w.WriteHeader(status)
	if req.r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(buf.Bytes())
}

// writeError writes err as an OGC exception. status overrides the status
// that follows from the error's gRPC code when not zero. Unclassified errors
// are logged and sent as a generic internal error.
func (h *Handler) writeError(w http.ResponseWriter, req *request, err error, status int) {
	var ae *apierr.Error
	if !errors.As(err, &ae) {
		ae = apierr.From(err)
	}
	if ae.Code == codes.Internal || ae.Code == codes.Unknown {
		h.logger().ErrorContext(req.ctx, "OGC API request failed", "path", ident.Redact(req.r.URL.Path), "err", ident.Redact(err.Error()))
	}
	if status == 0 {
		status = runtime.HTTPStatusFromCode(ae.Code)
		if ae.Reason == apierr.ReasonResponseTooLarge {
			// Too many records for one answer: the caller must narrow
			// the query, so this is not a reason to retry (429).
			status = http.StatusBadRequest
		}
	}
	if ae.Code == codes.Unauthenticated {
		v := `Bearer realm="tongban"`
		if req.r.Header.Get("Authorization") != "" {
			v += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", v)
	}
	msg := ae.Msg
	if msg == "" {
		msg = http.StatusText(status)
	}
	reason := ae.Reason
	if reason == "" {
		reason = strings.ToUpper(ae.Code.String())
	}
	w.Header().Set("Cache-Control", "no-store")
	h.writeJSON(w, req, status, MediaJSON, exception{Code: reason, Description: msg})
}
