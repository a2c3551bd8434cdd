package rest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tongban/tongban/connectors/builtin/internal/testutil"
	"github.com/tongban/tongban/connectors/connectortest"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

const token = "s3cret-token"

// licence is a business licence as the fake market bureau stores it, with
// its own JSON names (camel case, capital as text, dates with slashes).
type licence struct {
	USCC    string `json:"uscc"`
	Name    string `json:"entName"`
	Type    string `json:"entType"`
	Rep     string `json:"legalRep"`
	Capital string `json:"regCap"`
	Est     string `json:"estDate"`
	Region  string `json:"regionCode"`
	Status  string `json:"regState"`
	Until   string `json:"opTo,omitempty"`
	Updated string `json:"updatedAt"`
}

// permit is an approval result with the dictionary's own field names.
type permit struct {
	PermitID    string `json:"permit_id"`
	ApplicantID string `json:"applicant_id"`
	MatterName  string `json:"matter_name"`
	DecidedOn   string `json:"decided_on"`
	Status      string `json:"status"`
}

// fakeDept is a REST department system: a market bureau with page-numbered
// lists and an approval bureau with cursor ("next" link) lists.
type fakeDept struct {
	licences []licence
	permits  []permit
	hits     atomic.Int64
	mu       sync.Mutex
	paths    []string // raw request URIs, for escaping checks
	other    string   // URL of another host, for redirects
}

func newFakeDept() *fakeDept {
	f := &fakeDept{}
	for i := range 7 {
		f.licences = append(f.licences, licence{
			USCC:    fmt.Sprintf("91130100MA0%05dX", i),
			Name:    fmt.Sprintf("石家庄市第%d商贸有限公司", i),
			Type:    "有限责任公司",
			Rep:     "张三",
			Capital: strconv.Itoa(100*i) + ".5",
			Est:     "2015/03/12",
			Region:  "130102",
			Status:  map[bool]string{true: "存续", false: "注销"}[i%2 == 0],
			Until:   map[bool]string{true: "2045-03-11"}[i == 1],
			Updated: "2024-05-01T08:00:00+08:00",
		})
	}
	for i := range 5 {
		f.permits = append(f.permits, permit{
			PermitID:    fmt.Sprintf("冀审批〔2024〕%03d号", i),
			ApplicantID: "91130100MA00000000",
			MatterName:  "食品经营许可",
			DecidedOn:   "2024-01-0" + strconv.Itoa(i+1),
			Status:      "有效",
		})
	}
	f.permits = append(f.permits, permit{PermitID: "P-OTHER", ApplicantID: "130102199001011234", MatterName: "建设工程规划许可", DecidedOn: "20240301", Status: "有效"})
	return f
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeDept) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.hits.Add(1)
	f.mu.Lock()
	f.paths = append(f.paths, r.RequestURI)
	f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+token {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"code": 401})
		return
	}
	q := r.URL.Query()
	switch p := r.URL.EscapedPath(); {
	case p == "/healthz":
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	case strings.HasPrefix(p, "/api/v1/licences/"):
		code := r.URL.Path[len("/api/v1/licences/"):]
		for _, l := range f.licences {
			if l.USCC == code {
				writeJSON(w, http.StatusOK, map[string]any{"code": 0, "data": l})
				return
			}
		}
		writeJSON(w, http.StatusNotFound, map[string]any{"code": 404, "msg": "未找到"})
	case p == "/api/v1/licences":
		page, _ := strconv.Atoi(q.Get("page"))
		size, _ := strconv.Atoi(q.Get("size"))
		if page < 1 || size < 1 {
			writeJSON(w, http.StatusBadRequest, map[string]any{"code": 400})
			return
		}
		var match []licence
		for _, l := range f.licences {
			if (q.Get("regState") == "" || l.Status == q.Get("regState")) && (q.Get("uscc") == "" || l.USCC == q.Get("uscc")) {
				match = append(match, l)
			}
		}
		lo, hi := min((page-1)*size, len(match)), min(page*size, len(match))
		writeJSON(w, http.StatusOK, map[string]any{"code": 0, "data": map[string]any{"total": len(match), "items": match[lo:hi]}})
	case p == "/api/v1/permits":
		// Cursor paging: two records a page, a relative "next" link.
		cursor, _ := strconv.Atoi(q.Get("cursor"))
		var match []permit
		for _, pm := range f.permits {
			if q.Get("applicant_id") == "" || pm.ApplicantID == q.Get("applicant_id") {
				match = append(match, pm)
			}
		}
		end := min(cursor+2, len(match))
		body := map[string]any{"items": match[cursor:end], "links": map[string]any{}}
		if end < len(match) {
			next := "/api/v1/permits?" + (urlValues{"applicant_id": q.Get("applicant_id"), "cursor": strconv.Itoa(end)}).encode()
			if q.Get("applicant_id") == "EVIL" {
				next = f.other + "/steal"
			}
			body["links"] = map[string]any{"next": next}
		}
		writeJSON(w, http.StatusOK, body)
	case strings.HasPrefix(p, "/api/v1/permits/"):
		for _, pm := range f.permits {
			if pm.PermitID == r.URL.Path[len("/api/v1/permits/"):] {
				writeJSON(w, http.StatusOK, pm)
				return
			}
		}
		http.NotFound(w, r)
	case p == "/moved/licences/91130100MA000000X":
		http.Redirect(w, r, "/api/v1/licences/91130100MA000000X", http.StatusFound)
	case strings.HasPrefix(p, "/away/"):
		http.Redirect(w, r, f.other+"/api/v1/licences/91130100MA000000X", http.StatusFound)
	case strings.HasPrefix(p, "/big/"):
		writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"uscc": "x", "entName": strings.Repeat("大", 4096)}})
	case strings.HasPrefix(p, "/broken/"):
		writeJSON(w, http.StatusInternalServerError, map[string]any{"code": 500})
	case strings.HasPrefix(p, "/badreq/"):
		writeJSON(w, http.StatusBadRequest, map[string]any{"code": 400})
	case strings.HasPrefix(p, "/garbage/"):
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"data": {"uscc": `))
	case strings.HasPrefix(p, "/wrongtype/"):
		writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"uscc": "91130100MA000000X", "regCap": "五百万"}})
	case strings.HasPrefix(p, "/slow/"):
		// Answer only when the client gives up (or the test ends).
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	default:
		http.NotFound(w, r)
	}
}

type urlValues map[string]string

func (v urlValues) encode() string {
	var parts []string
	for _, k := range []string{"applicant_id", "cursor"} {
		parts = append(parts, k+"="+v[k])
	}
	return strings.Join(parts, "&")
}

func marketYAML(base string, extra string) string {
	return fmt.Sprintf(`
department: {id: market, name: 市场监督管理局}
base_url: %s
auth: {bearer_token: %s}
timeout: 5s
max_response_bytes: 8192
health_path: /healthz
datasets:
  market.business_licences:
    get: /api/v1/licences/{credit_code}
    record: /data
    id: /uscc
    updated_at: /updatedAt
    freshness: 30m
    fields:
      credit_code: /uscc
      name: /entName
      enterprise_type: /entType
      legal_representative: /legalRep
      registered_capital: /regCap
      established_on: /estDate
      region_code: /regionCode
      status: /regState
      operating_until: /opTo
    list:
      path: /api/v1/licences
      params: {status: regState, credit_code: uscc}
      items: /data/items
      paging: {style: page, page_param: page, size_param: size, size: 3, total: /data/total}
%s`, base, token, extra)
}

func approvalYAML(base string) string {
	return fmt.Sprintf(`
department: {id: approval}
base_url: %s
auth: {bearer_token: %s}
max_pages: 3
datasets:
  approval.permits:
    get: /api/v1/permits/{permit_id}
    list:
      path: /api/v1/permits
      params: {applicant_id: applicant_id}
      items: /items
      paging: {next: /links/next}
`, base, token)
}

func start(t *testing.T) (*fakeDept, *httptest.Server, *httptest.Server) {
	t.Helper()
	f := newFakeDept()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	other := newFakeDept()
	osrv := httptest.NewServer(other)
	t.Cleanup(osrv.Close)
	f.other = osrv.URL
	return f, srv, osrv
}

func mustNew(t *testing.T, yaml string) *Connector {
	t.Helper()
	c, err := New(t.Context(), []byte(yaml))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func fetch(t *testing.T, c *Connector, req *v1.FetchRequest) (*v1.FetchResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	return c.Fetch(ctx, req)
}

func TestFetchByKeyTypesValues(t *testing.T) {
	_, srv, _ := start(t)
	c := mustNew(t, marketYAML(srv.URL, ""))
	resp, err := fetch(t, c, &v1.FetchRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": "91130100MA000001X"}})
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if len(resp.Records) != 1 {
		t.Fatalf("got %d records, want 1", len(resp.Records))
	}
	r := resp.Records[0]
	if r.Id != "91130100MA000001X" {
		t.Errorf("id = %q", r.Id)
	}
	f := r.Fields.AsMap()
	want := map[string]any{
		"credit_code":          "91130100MA000001X",
		"name":                 "石家庄市第1商贸有限公司",
		"enterprise_type":      "有限责任公司",
		"legal_representative": "张三",
		"registered_capital":   100.5,
		"established_on":       "2015-03-12",
		"region_code":          "130102",
		"status":               "注销",
		"operating_until":      "2045-03-11",
	}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("field %s = %#v, want %#v", k, f[k], v)
		}
	}
	if len(f) != len(want) {
		t.Errorf("fields = %v, want exactly %v", f, want)
	}
	if got := r.UpdatedAt.AsTime().UTC().Format(time.RFC3339); got != "2024-05-01T00:00:00Z" {
		t.Errorf("updated_at = %s", got)
	}
	d, err := c.Describe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Datasets[0].Freshness.AsDuration(); got != 30*time.Minute {
		t.Errorf("freshness = %v, want the configured 30m", got)
	}
	if d.DepartmentName != "市场监督管理局" || d.Department != "market" {
		t.Errorf("descriptor department = %q %q", d.Department, d.DepartmentName)
	}
}

func TestFetchErrors(t *testing.T) {
	_, srv, osrv := start(t)
	other := osrv.Config.Handler.(*fakeDept)
	// Each case points the get template somewhere else.
	tests := []struct {
		name   string
		get    string
		keys   map[string]string
		code   codes.Code
		reason string
	}{
		{"not found", "/api/v1/licences/{credit_code}", map[string]string{"credit_code": "91130100MA0NOPE00X"}, codes.NotFound, apierr.ReasonNotFound},
		{"unknown key field", "/api/v1/licences/{credit_code}", map[string]string{"legal_representative_id": "130102199001011234"}, codes.InvalidArgument, apierr.ReasonUnknownField},
		{"empty key", "/api/v1/licences/{credit_code}", map[string]string{"credit_code": " "}, codes.InvalidArgument, apierr.ReasonInvalidArgument},
		{"dot-dot key", "/api/v1/licences/{credit_code}", map[string]string{"credit_code": ".."}, codes.InvalidArgument, apierr.ReasonInvalidArgument},
		{"redirect to another host", "/away/{credit_code}", map[string]string{"credit_code": "x"}, codes.Unavailable, apierr.ReasonDepartmentDown},
		{"oversize response", "/big/{credit_code}", map[string]string{"credit_code": "x"}, codes.ResourceExhausted, apierr.ReasonResponseTooLarge},
		{"department 500", "/broken/{credit_code}", map[string]string{"credit_code": "x"}, codes.Unavailable, apierr.ReasonDepartmentDown},
		{"department 400", "/badreq/{credit_code}", map[string]string{"credit_code": "x"}, codes.InvalidArgument, apierr.ReasonInvalidArgument},
		{"malformed JSON", "/garbage/{credit_code}", map[string]string{"credit_code": "x"}, codes.Internal, apierr.ReasonInternal},
		{"number field not a number", "/wrongtype/{credit_code}", map[string]string{"credit_code": "x"}, codes.Internal, apierr.ReasonInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yaml := strings.Replace(marketYAML(srv.URL, ""), "get: /api/v1/licences/{credit_code}", "get: "+tt.get, 1)
			c := mustNew(t, yaml)
			_, err := fetch(t, c, &v1.FetchRequest{Dataset: "market.business_licences", Keys: tt.keys})
			e := testutil.WantCode(t, err, tt.code, tt.reason)
			if tt.code == codes.Unavailable && e.Meta["department"] != "market" {
				t.Errorf("Unavailable error does not name the department: %v", e.Meta)
			}
		})
	}
	if n := other.hits.Load(); n != 0 {
		t.Errorf("the other host received %d requests; redirects to it must be refused", n)
	}
}

func TestSameHostRedirectFollowed(t *testing.T) {
	_, srv, _ := start(t)
	yaml := strings.Replace(marketYAML(srv.URL, ""), "get: /api/v1/licences/{credit_code}", "get: /moved/licences/{credit_code}", 1)
	c := mustNew(t, yaml)
	resp, err := fetch(t, c, &v1.FetchRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": "91130100MA000000X"}})
	if err != nil {
		t.Fatalf("Fetch through same-host redirect: %v", err)
	}
	if resp.Records[0].Id != "91130100MA000000X" {
		t.Errorf("id = %q", resp.Records[0].Id)
	}
}

func TestKeyValuesAreEscaped(t *testing.T) {
	f, srv, _ := start(t)
	c := mustNew(t, marketYAML(srv.URL, ""))
	for _, key := range []string{"a/../../admin?x=1#frag", "91130100MA000000X/../91130100MA000001X", "%2e%2e", "' OR 1=1 --"} {
		_, err := fetch(t, c, &v1.FetchRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": key}})
		testutil.WantCode(t, err, codes.NotFound, apierr.ReasonNotFound)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.paths {
		if !strings.HasPrefix(p, "/api/v1/licences/") || strings.Count(p, "/") != 4 || strings.Contains(p, "?") {
			t.Errorf("request URI %q escapes the path template", p)
		}
	}
	if len(f.paths) != 4 {
		t.Errorf("department saw %d requests, want 4: %q", len(f.paths), f.paths)
	}
}

func TestFilterPagesByTotal(t *testing.T) {
	_, srv, _ := start(t)
	c := mustNew(t, marketYAML(srv.URL, ""))
	tests := []struct {
		name   string
		status string
		want   int
	}{
		{"four of seven across two pages", "存续", 4},
		{"three across one page", "注销", 3},
		{"none", "吊销", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := fetch(t, c, &v1.FetchRequest{Dataset: "market.business_licences", Filter: map[string]string{"status": tt.status}})
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if len(resp.Records) != tt.want {
				t.Fatalf("got %d records, want %d", len(resp.Records), tt.want)
			}
			for _, r := range resp.Records {
				if got := r.Fields.Fields["status"].GetStringValue(); got != tt.status {
					t.Errorf("record %s status %q", r.Id, got)
				}
			}
		})
	}
	t.Run("gateway paging", func(t *testing.T) {
		var ids []string
		token := ""
		for range 10 {
			resp, err := fetch(t, c, &v1.FetchRequest{Dataset: "market.business_licences", Filter: map[string]string{"status": "存续"}, PageSize: 3, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range resp.Records {
				ids = append(ids, r.Id)
			}
			if token = resp.NextPageToken; token == "" {
				break
			}
		}
		if len(ids) != 4 || ids[0] == ids[3] {
			t.Errorf("paged ids = %v, want 4 distinct", ids)
		}
		_, err := fetch(t, c, &v1.FetchRequest{Dataset: "market.business_licences", Filter: map[string]string{"status": "存续"}, PageToken: "!!"})
		testutil.WantCode(t, err, codes.InvalidArgument, "")
	})
	t.Run("unsupported filter field", func(t *testing.T) {
		_, err := fetch(t, c, &v1.FetchRequest{Dataset: "market.business_licences", Filter: map[string]string{"name": "x"}})
		e := testutil.WantCode(t, err, codes.InvalidArgument, "")
		if !strings.Contains(e.Msg, "name") {
			t.Errorf("message %q does not name the field", e.Msg)
		}
	})
	t.Run("unknown filter field", func(t *testing.T) {
		_, err := fetch(t, c, &v1.FetchRequest{Dataset: "market.business_licences", Filter: map[string]string{"colour": "x"}})
		testutil.WantCode(t, err, codes.InvalidArgument, apierr.ReasonUnknownField)
	})
	t.Run("bbox on a dataset without geometry", func(t *testing.T) {
		_, err := fetch(t, c, &v1.FetchRequest{Dataset: "market.business_licences", Bbox: &v1.BBox{MinLon: 1, MinLat: 1, MaxLon: 2, MaxLat: 2}})
		testutil.WantCode(t, err, codes.InvalidArgument, "")
	})
	t.Run("unknown dataset", func(t *testing.T) {
		_, err := fetch(t, c, &v1.FetchRequest{Dataset: "market.nope", Keys: map[string]string{"credit_code": "x"}})
		testutil.WantCode(t, err, codes.InvalidArgument, apierr.ReasonUnknownDataset)
	})
	t.Run("nothing selected", func(t *testing.T) {
		_, err := fetch(t, c, &v1.FetchRequest{Dataset: "market.business_licences"})
		testutil.WantCode(t, err, codes.InvalidArgument, apierr.ReasonMissingKey)
	})
}

func TestLookupFollowsNextLinks(t *testing.T) {
	_, srv, osrv := start(t)
	c := mustNew(t, approvalYAML(srv.URL))
	resp, err := fetch(t, c, &v1.FetchRequest{Dataset: "approval.permits", Keys: map[string]string{"applicant_id": "91130100MA00000000"}})
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if len(resp.Records) != 5 {
		t.Fatalf("got %d permits, want 5 (three pages)", len(resp.Records))
	}
	if got := resp.Records[4].Fields.Fields["decided_on"].GetStringValue(); got != "2024-01-05" {
		t.Errorf("decided_on = %q", got)
	}
	// Found by key through the get template, also with a matching lookup.
	resp, err = fetch(t, c, &v1.FetchRequest{Dataset: "approval.permits", Keys: map[string]string{"permit_id": "P-OTHER", "applicant_id": "130102199001011234"}})
	if err != nil || len(resp.Records) != 1 || resp.Records[0].Fields.Fields["decided_on"].GetStringValue() != "2024-03-01" {
		t.Fatalf("Fetch by key and lookup = %v, %v", resp, err)
	}
	// A key whose record does not match the lookup is not found.
	_, err = fetch(t, c, &v1.FetchRequest{Dataset: "approval.permits", Keys: map[string]string{"permit_id": "P-OTHER", "applicant_id": "91130100MA00000000"}})
	testutil.WantCode(t, err, codes.NotFound, "")
	// No permits for this applicant.
	_, err = fetch(t, c, &v1.FetchRequest{Dataset: "approval.permits", Keys: map[string]string{"applicant_id": "NOBODY"}})
	testutil.WantCode(t, err, codes.NotFound, "")
	// A next link to another host is refused.
	c.sets["approval.permits"].cfg.List.Params["applicant_id"] = "applicant_id"
	other := osrv.Config.Handler.(*fakeDept)
	srvDept := srv.Config.Handler.(*fakeDept)
	srvDept.permits = append(srvDept.permits, permit{PermitID: "E1", ApplicantID: "EVIL"}, permit{PermitID: "E2", ApplicantID: "EVIL"}, permit{PermitID: "E3", ApplicantID: "EVIL"})
	_, err = fetch(t, c, &v1.FetchRequest{Dataset: "approval.permits", Keys: map[string]string{"applicant_id": "EVIL"}})
	testutil.WantCode(t, err, codes.Unavailable, "")
	if other.hits.Load() != 0 {
		t.Errorf("next link to another host was followed")
	}
}

func TestPageCap(t *testing.T) {
	_, srv, _ := start(t)
	yaml := strings.Replace(approvalYAML(srv.URL), "max_pages: 3", "max_pages: 2", 1)
	c := mustNew(t, yaml)
	_, err := fetch(t, c, &v1.FetchRequest{Dataset: "approval.permits", Keys: map[string]string{"applicant_id": "91130100MA00000000"}})
	testutil.WantCode(t, err, codes.ResourceExhausted, apierr.ReasonResponseTooLarge)

	yaml = strings.Replace(approvalYAML(srv.URL), "max_pages: 3", "max_pages: 3\nmax_records: 4", 1)
	c = mustNew(t, yaml)
	_, err = fetch(t, c, &v1.FetchRequest{Dataset: "approval.permits", Keys: map[string]string{"applicant_id": "91130100MA00000000"}})
	testutil.WantCode(t, err, codes.ResourceExhausted, apierr.ReasonResponseTooLarge)
}

func TestContextAndConnectionFailures(t *testing.T) {
	_, srv, _ := start(t)
	slow := mustNew(t, strings.Replace(marketYAML(srv.URL, ""), "get: /api/v1/licences/{credit_code}", "get: /slow/{credit_code}", 1))
	key := &v1.FetchRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": "x"}}

	t.Run("slow department past the caller's deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := slow.Fetch(ctx, key)
		testutil.WantCode(t, err, codes.Unavailable, apierr.ReasonDepartmentDown)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
		}
	})
	t.Run("slow department past the configured timeout", func(t *testing.T) {
		c := mustNew(t, strings.Replace(strings.Replace(marketYAML(srv.URL, ""), "get: /api/v1/licences/{credit_code}", "get: /slow/{credit_code}", 1), "timeout: 5s", "timeout: 50ms", 1))
		_, err := fetch(t, c, key)
		testutil.WantCode(t, err, codes.Unavailable, apierr.ReasonDepartmentDown)
	})
	t.Run("cancelled while waiting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			time.Sleep(20 * time.Millisecond)
			cancel()
		}()
		_, err := slow.Fetch(ctx, key)
		testutil.WantCode(t, err, codes.Canceled, "")
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v does not wrap context.Canceled", err)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		url := dead.URL
		dead.Close()
		c := mustNew(t, marketYAML(url, ""))
		_, err := fetch(t, c, key)
		e := testutil.WantCode(t, err, codes.Unavailable, apierr.ReasonDepartmentDown)
		if !strings.Contains(e.Msg, "market") {
			t.Errorf("message %q does not name the department", e.Msg)
		}
		if err := c.Health(t.Context()); apierr.CodeOf(err) != codes.Unavailable {
			t.Errorf("Health of a dead department = %v, want Unavailable", err)
		}
	})
}

func TestHealthAndAuth(t *testing.T) {
	_, srv, _ := start(t)
	t.Run("healthy", func(t *testing.T) {
		if err := mustNew(t, marketYAML(srv.URL, "")).Health(t.Context()); err != nil {
			t.Fatalf("Health: %v", err)
		}
	})
	t.Run("health path failing", func(t *testing.T) {
		c := mustNew(t, strings.Replace(marketYAML(srv.URL, ""), "health_path: /healthz", "health_path: /broken/x", 1))
		testutil.WantCode(t, c.Health(t.Context()), codes.Unavailable, "")
	})
	t.Run("token from environment", func(t *testing.T) {
		t.Setenv("TONGBAN_TEST_MARKET_TOKEN", token)
		c := mustNew(t, strings.Replace(marketYAML(srv.URL, ""), "bearer_token: "+token, "bearer_token_env: TONGBAN_TEST_MARKET_TOKEN", 1))
		if err := c.Health(t.Context()); err != nil {
			t.Fatalf("Health: %v", err)
		}
	})
	t.Run("unset token variable", func(t *testing.T) {
		_, err := New(t.Context(), []byte(strings.Replace(marketYAML(srv.URL, ""), "bearer_token: "+token, "bearer_token_env: TONGBAN_TEST_UNSET_VARIABLE", 1)))
		if err == nil || !strings.Contains(err.Error(), "TONGBAN_TEST_UNSET_VARIABLE") {
			t.Fatalf("New with unset token variable: %v", err)
		}
	})
	t.Run("wrong token", func(t *testing.T) {
		c := mustNew(t, strings.Replace(marketYAML(srv.URL, ""), "bearer_token: "+token, "bearer_token: wrong", 1))
		testutil.WantCode(t, c.Health(t.Context()), codes.Unavailable, "")
	})
}

func TestMutualTLS(t *testing.T) {
	ca := testutil.NewCA(t)
	serverCert := ca.Server(t)
	client := ca.Client(t, "tongban-gateway")
	f := newFakeDept()
	srv := httptest.NewUnstartedServer(f)
	srv.TLS = &tls.Config{
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool,
		Certificates: []tls.Certificate{{Certificate: [][]byte{serverCert.DER}, PrivateKey: serverCert.Key}},
		MinVersion:   tls.VersionTLS12,
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	withCert := strings.Replace(marketYAML(srv.URL, ""), "auth: {bearer_token: "+token+"}",
		fmt.Sprintf("auth: {bearer_token: %s, cert_file: %s, key_file: %s, ca_file: %s}", token, client.CertFile, client.KeyFile, ca.CertFile), 1)
	c := mustNew(t, withCert)
	resp, err := fetch(t, c, &v1.FetchRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": "91130100MA000002X"}})
	if err != nil {
		t.Fatalf("Fetch over mutual TLS: %v", err)
	}
	if resp.Records[0].Fields.Fields["registered_capital"].GetNumberValue() != 200.5 {
		t.Errorf("record = %v", resp.Records[0])
	}

	noCert := strings.Replace(marketYAML(srv.URL, ""), "auth: {bearer_token: "+token+"}",
		fmt.Sprintf("auth: {bearer_token: %s, ca_file: %s}", token, ca.CertFile), 1)
	c = mustNew(t, noCert)
	_, err = fetch(t, c, &v1.FetchRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": "91130100MA000002X"}})
	testutil.WantCode(t, err, codes.Unavailable, "")

	untrusted := strings.Replace(marketYAML(srv.URL, ""), "auth: {bearer_token: "+token+"}",
		fmt.Sprintf("auth: {bearer_token: %s, cert_file: %s, key_file: %s}", token, client.CertFile, client.KeyFile), 1)
	c = mustNew(t, untrusted)
	_, err = fetch(t, c, &v1.FetchRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": "91130100MA000002X"}})
	testutil.WantCode(t, err, codes.Unavailable, "")
}

func TestJSONSettings(t *testing.T) {
	// The host hands settings over as JSON; JSON is YAML.
	_, srv, _ := start(t)
	js := fmt.Sprintf(`{"department":{"id":"approval"},"base_url":%q,"auth":{"bearer_token":%q},
		"datasets":{"approval.permits":{"get":"/api/v1/permits/{permit_id}"}}}`, srv.URL, token)
	c := mustNew(t, js)
	resp, err := fetch(t, c, &v1.FetchRequest{Dataset: "approval.permits", Keys: map[string]string{"permit_id": "P-OTHER"}})
	if err != nil || resp.Records[0].Id != "P-OTHER" {
		t.Fatalf("Fetch = %v, %v", resp, err)
	}
}

func TestConformance(t *testing.T) {
	_, srv, _ := start(t)
	c := mustNew(t, marketYAML(srv.URL, ""))
	opts := connectortest.Options{Dataset: "market.business_licences", Key: map[string]string{"credit_code": "91130100MA000003X"}}
	t.Run("direct", func(t *testing.T) { connectortest.Run(t, c, opts) })
	t.Run("over gRPC", func(t *testing.T) { connectortest.Run(t, connectortest.InProcess(t, c), opts) })
}
