package ogc

import "net/http"

// MediaOpenAPI is the media type of the service description.
const MediaOpenAPI = "application/vnd.oai.openapi+json;version=3.0"

// serveAPI serves the OpenAPI 3.0 description of the façade (rel
// service-desc of the landing page). Clients such as GDAL read the limit
// bounds from it.
func (h *Handler) serveAPI(w http.ResponseWriter, req *request) {
	if _, err := h.params(req, nil); err != nil {
		h.writeError(w, req, err, 0)
		return
	}
	str := map[string]any{"type": "string"}
	param := func(name, in, desc string, schema map[string]any, required bool) map[string]any {
		return map[string]any{"name": name, "in": in, "description": desc, "required": required, "schema": schema}
	}
	purpose := param("purpose", "query", "The legal purpose of the request; default "+quote(h.DefaultPurpose)+".", str, false)
	format := param("f", "query", "Response format.", map[string]any{"type": "string", "enum": []string{"json", "geojson"}}, false)
	collectionID := param("collectionId", "path", "Dataset name, e.g. resources.parcels.", str, true)
	exception := map[string]any{
		"description": "An OGC API exception.",
		"content":     map[string]any{MediaJSON: map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/exception"}}},
	}
	errs := func(ok string, codes ...string) map[string]any {
		out := map[string]any{"200": map[string]any{"description": ok}}
		for _, c := range codes {
			out[c] = exception
		}
		return out
	}
	get := func(id, summary string, params []any, responses map[string]any, public ...bool) map[string]any {
		op := map[string]any{"operationId": id, "summary": summary, "parameters": params, "responses": responses}
		if len(public) > 0 && public[0] {
			op["security"] = []any{}
		}
		return map[string]any{"get": op}
	}
	doc := map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":       "Tongban spatial data exchange (OGC API – Features)",
			"version":     "1.0.0",
			"description": "Spatial datasets republished by the Tongban gateway under the caller's grants. Every items request is decided, shaped and recorded in the audit log.",
		},
		"servers":  []any{map[string]any{"url": req.base}},
		"security": []any{map[string]any{"bearer": []any{}}},
		"paths": map[string]any{
			"/": get("getLandingPage", "Landing page", []any{purpose, format}, errs("The landing page.", "400"), true),
			"/conformance": get("getConformance", "Conformance classes", []any{purpose, format},
				errs("The conformance declaration.", "400"), true),
			"/collections": get("getCollections", "The spatial collections the caller may read", []any{purpose, format},
				errs("The collections.", "400", "401", "503")),
			"/collections/{collectionId}": get("describeCollection", "One collection", []any{collectionID, purpose, format},
				errs("The collection.", "400", "401", "403", "404")),
			"/collections/{collectionId}/items": get("getFeatures", "Features of a collection", []any{
				collectionID,
				param("bbox", "query", "minLon,minLat,maxLon,maxLat in WGS 84 (CRS84).", map[string]any{
					"type": "array", "minItems": 4, "maxItems": 6, "items": map[string]any{"type": "number"},
				}, false),
				param("limit", "query", "Features per page; larger values are clamped.", map[string]any{
					"type": "integer", "minimum": 1, "maximum": MaxLimit, "default": DefaultLimit,
				}, false),
				param("page", "query", "Opaque page token from a next or prev link.", str, false),
				purpose, format,
			}, errs("A GeoJSON FeatureCollection.", "400", "401", "403", "404", "429", "503")),
			"/collections/{collectionId}/items/{featureId}": get("getFeature", "One feature by its key", []any{
				collectionID, param("featureId", "path", "The feature's key, e.g. a parcel code.", str, true), purpose, format,
			}, errs("A GeoJSON Feature.", "400", "401", "403", "404", "429", "503")),
		},
		"components": map[string]any{
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}},
			"schemas": map[string]any{"exception": map[string]any{
				"type":       "object",
				"required":   []string{"code"},
				"properties": map[string]any{"code": str, "description": str},
			}},
		},
	}
	h.writeJSON(w, req, http.StatusOK, MediaOpenAPI, doc)
}

func quote(s string) string {
	if s == "" {
		return "none (required)"
	}
	return `"` + s + `"`
}
