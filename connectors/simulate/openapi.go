package simulate

import "net/http"

// openAPI serves the OpenAPI 3.0 definition of the natural resources
// bureau, with the query parameters of each collection's items, so that
// clients such as GDAL can tell which property filters the server applies.
func (res *Resources) openAPI(w http.ResponseWriter, r *http.Request) {
	if !checkF(w, r.URL.Query()) {
		return
	}
	str := map[string]any{"type": "string"}
	param := func(name, in, desc string, schema any, required bool) map[string]any {
		return map[string]any{"name": name, "in": in, "description": desc, "required": required, "schema": schema, "style": "form", "explode": false}
	}
	ok := func(desc, mime string) map[string]any {
		return map[string]any{
			"200": map[string]any{"description": desc, "content": map[string]any{mime: map[string]any{"schema": map[string]any{"type": "object"}}}},
			"400": map[string]any{"description": "invalid request"},
			"404": map[string]any{"description": "not found"},
			"503": map[string]any{"description": "department unavailable"},
		}
	}
	get := func(id, summary string, params []any, responses map[string]any) map[string]any {
		op := map[string]any{"operationId": id, "summary": summary, "responses": responses}
		if params != nil {
			op["parameters"] = params
		}
		return map[string]any{"get": op}
	}
	paths := map[string]any{
		"/":            get("getLandingPage", "Landing page", nil, ok("landing page", plainJSON)),
		"/conformance": get("getConformance", "Conformance classes", nil, ok("conformance declaration", plainJSON)),
		"/collections": get("getCollections", "Feature collections", nil, ok("collections", plainJSON)),
	}
	for _, c := range res.collections {
		params := []any{
			param("bbox", "query", "minLon,minLat,maxLon,maxLat in WGS 84 (CRS84)", map[string]any{"type": "array", "minItems": 4, "maxItems": 6, "items": map[string]any{"type": "number"}}, false),
			param("limit", "query", "page size", map[string]any{"type": "integer", "minimum": 1, "maximum": MaxLimit, "default": DefaultLimit}, false),
			param("offset", "query", "index of the first feature", map[string]any{"type": "integer", "minimum": 0, "default": 0}, false),
			param("datetime", "query", "instant or interval (RFC 3339)", str, false),
		}
		for _, k := range c.queryables {
			params = append(params, param(k, "query", "equality filter on property "+k, str, false))
		}
		base := "/collections/" + c.id
		paths[base] = get("describe_"+c.id, c.title, nil, ok("collection", plainJSON))
		paths[base+"/items"] = get("getFeatures_"+c.id, c.title+": features", params, ok("features", geoJSON))
		paths[base+"/items/{featureId}"] = get("getFeature_"+c.id, c.title+": one feature",
			[]any{param("featureId", "path", "feature id", str, true)}, ok("feature", geoJSON))
	}
	writeJSON(w, http.StatusOK, openAPIMIME, map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":   "石家庄市自然资源和规划局 OGC API – Features",
			"version": "1.0.0",
		},
		"servers": []any{map[string]any{"url": base(r)}},
		"paths":   paths,
	})
}
