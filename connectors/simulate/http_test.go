package simulate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tongban/tongban/schemas/ident"
)

// getJSON fetches a URL and decodes its JSON body into v (when not nil).
func getJSON(t *testing.T, u string, v any) (int, http.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: decoding %q: %v", u, body, err)
		}
	}
	return resp.StatusCode, resp.Header
}

// unknownCreditCode returns a valid credit code that was not generated.
func unknownCreditCode(t *testing.T, d *Data) string {
	t.Helper()
	for i := range 1000 {
		body := fmt.Sprintf("%08d", 99_000_000+i)
		oc, err := ident.OrgCodeCheckChar(body)
		if err != nil {
			t.Fatal(err)
		}
		first := "91130102" + body + string(oc)
		cc, err := ident.CreditCodeCheckChar(first)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := d.Enterprise(first + string(cc)); !ok {
			return first + string(cc)
		}
	}
	t.Fatal("no unknown credit code found")
	return ""
}

func TestMarketEndpoints(t *testing.T) {
	d := testData
	m := NewMarket(d, Faults{})
	srv := httptest.NewServer(m)
	defer srv.Close()
	e := d.SampleEnterprise()

	var got Enterprise
	if code, h := getJSON(t, srv.URL+"/api/v1/enterprises/"+e.CreditCode, &got); code != 200 || got != e || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		t.Fatalf("enterprise: %d %+v", code, got)
	}
	var lic BusinessLicence
	if code, _ := getJSON(t, srv.URL+"/api/v1/licences/"+e.CreditCode, &lic); code != 200 || lic.CreditCode != e.CreditCode || lic.Name != e.Name {
		t.Fatalf("licence: %d %+v", code, lic)
	}
	tests := []struct {
		name, path string
		status     int
		code, msg  string
	}{
		{"unknown enterprise", "/api/v1/enterprises/" + unknownCreditCode(t, d), 404, "NOT_FOUND", "no enterprise with credit code"},
		{"unknown licence", "/api/v1/licences/" + unknownCreditCode(t, d), 404, "NOT_FOUND", "no business licence"},
		{"bad check", "/api/v1/licences/91350100M000100Y4U", 400, "INVALID_CREDIT_CODE", "credit_code: check character is 'U', want '3'"},
		{"lower case", "/api/v1/enterprises/" + strings.ToLower(e.CreditCode), 400, "INVALID_CREDIT_CODE", "credit_code:"},
		{"unknown path", "/api/v2/licences", 404, "NOT_FOUND", "no resource"},
		{"unknown param", "/api/v1/licences?regioncode=130102", 400, "INVALID_ARGUMENT", `unknown query parameter "regioncode"`},
		{"page size", "/api/v1/enterprises?page_size=101", 400, "INVALID_ARGUMENT", "page_size 101 is larger than 100"},
		{"page", "/api/v1/enterprises?page=0", 400, "INVALID_ARGUMENT", "page"},
		{"region", "/api/v1/enterprises?region_code=1301x", 400, "INVALID_ARGUMENT", "region_code"},
		{"rep id", "/api/v1/licences?legal_representative_id=11010519491231002x", 400, "INVALID_RESIDENT_ID", "legal_representative_id: check character 'x'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b errorBody
			code, _ := getJSON(t, srv.URL+tc.path, &b)
			if code != tc.status || b.Error.Code != tc.code || !strings.Contains(b.Error.Message, tc.msg) {
				t.Fatalf("GET %s = %d %+v, want %d %s %q", tc.path, code, b, tc.status, tc.code, tc.msg)
			}
		})
	}

	// Paging through a region returns every enterprise of the region once.
	var want []string
	for _, x := range d.Enterprises {
		if x.RegionCode == "130102" {
			want = append(want, x.CreditCode)
		}
	}
	var all []string
	for page := 1; page <= 100; page++ {
		var p Page[Enterprise]
		if code, _ := getJSON(t, fmt.Sprintf("%s/api/v1/enterprises?region_code=130102&page=%d&page_size=30", srv.URL, page), &p); code != 200 {
			t.Fatalf("page %d: %d", page, code)
		}
		if p.Total != len(want) || p.Page != page || p.PageSize != 30 || p.TotalPages != (len(want)+29)/30 {
			t.Fatalf("page %d: %+v, want total %d", page, p, len(want))
		}
		if len(p.Items) == 0 {
			break
		}
		for _, x := range p.Items {
			all = append(all, x.CreditCode)
		}
	}
	if !slices.Equal(all, want) {
		t.Fatalf("paged %d enterprises, want %d", len(all), len(want))
	}
	// A city prefix excludes Tangshan and Baoding; a province prefix does not.
	var city, prov Page[BusinessLicence]
	getJSON(t, srv.URL+"/api/v1/licences?region_code=1301&page_size=1", &city)
	getJSON(t, srv.URL+"/api/v1/licences?region_code=13&page_size=1", &prov)
	if city.Total == 0 || prov.Total != len(d.Licences) || city.Total >= prov.Total {
		t.Fatalf("region prefixes: city %d, province %d of %d", city.Total, prov.Total, len(d.Licences))
	}
	var byRep Page[Enterprise]
	getJSON(t, srv.URL+"/api/v1/enterprises?legal_representative_id="+e.LegalRepresentativeID, &byRep)
	if byRep.Total != len(d.EnterprisesOf(e.LegalRepresentativeID)) || !slices.Contains(byRep.Items, e) {
		t.Fatalf("by legal representative: %+v", byRep)
	}
}

func TestMarketUpdateLicence(t *testing.T) {
	d := testData
	m := NewMarket(d, Faults{})
	srv := httptest.NewServer(m)
	defer srv.Close()
	e := d.SampleEnterprise()
	if err := m.RevokeLicence(e.CreditCode); err != nil {
		t.Fatal(err)
	}
	var lic BusinessLicence
	getJSON(t, srv.URL+"/api/v1/licences/"+e.CreditCode, &lic)
	var ent Enterprise
	getJSON(t, srv.URL+"/api/v1/enterprises/"+e.CreditCode, &ent)
	if lic.Status != "吊销" || ent.Status != "吊销" {
		t.Fatalf("after revocation: licence %q, enterprise %q", lic.Status, ent.Status)
	}
	if l, _ := d.Licence(e.CreditCode); l.Status != "存续" {
		t.Fatal("revocation changed the generated data")
	}
	var cl ChangeList
	getJSON(t, srv.URL+"/api/v1/changes?since=0", &cl)
	if len(cl.Changes) != 2 || cl.LastSeq != 2 || cl.Changes[0].CreditCode != e.CreditCode || cl.Changes[1].Dataset != "market.enterprises" {
		t.Fatalf("changes: %+v", cl)
	}
	if err := m.UpdateLicence(BusinessLicence{CreditCode: unknownCreditCode(t, d)}); err == nil {
		t.Error("UpdateLicence of an unknown enterprise succeeded")
	}
	if err := m.UpdateLicence(BusinessLicence{CreditCode: "bad"}); err == nil {
		t.Error("UpdateLicence with a bad credit code succeeded")
	}
}

func TestApprovalEndpoints(t *testing.T) {
	d := testData
	a := NewApproval(d, Faults{})
	srv := httptest.NewServer(a)
	defer srv.Close()
	p := d.Permits[123]
	var got Permit
	if code, _ := getJSON(t, srv.URL+"/api/permits/"+url.PathEscape(p.PermitID), &got); code != 200 || got != p {
		t.Fatalf("permit: %d %+v", code, got)
	}
	for _, tc := range []struct {
		name, path string
		status     int
		code       string
	}{
		{"unknown permit", "/api/permits/JY00000000000000", 404, "NOT_FOUND"},
		{"long id", "/api/permits/" + strings.Repeat("A", 65), 400, "INVALID_ARGUMENT"},
		{"bad applicant", "/api/permits?applicant_id=91350100M000100Y4U", 400, "INVALID_APPLICANT_ID"},
		{"lower x", "/api/permits?applicant_id=11010519491231002x", 400, "INVALID_APPLICANT_ID"},
		{"unknown param", "/api/permits?applicant=1", 400, "INVALID_ARGUMENT"},
		{"repeated param", "/api/permits?status=有效&status=过期", 400, "INVALID_ARGUMENT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b errorBody
			if code, _ := getJSON(t, srv.URL+tc.path, &b); code != tc.status || b.Error.Code != tc.code || b.Error.Message == "" {
				t.Fatalf("GET %s = %d %+v, want %d %s", tc.path, code, b, tc.status, tc.code)
			}
		})
	}
	// A valid applicant with no permits gets an empty page, not 404.
	var empty Page[Permit]
	if code, _ := getJSON(t, srv.URL+"/api/permits?applicant_id=11010519491231002X", &empty); code != 200 || empty.Total != 0 || empty.Items == nil {
		t.Fatalf("no permits: %d %+v", code, empty)
	}
	for _, id := range []string{d.SampleEnterprise().CreditCode, d.SamplePerson().ResidentID} {
		want := d.PermitsOf(id)
		var all []Permit
		for page := 1; page <= 50; page++ {
			var pg Page[Permit]
			if code, _ := getJSON(t, fmt.Sprintf("%s/api/permits?applicant_id=%s&page=%d&page_size=1", srv.URL, id, page), &pg); code != 200 {
				t.Fatalf("page %d: %d", page, code)
			}
			if pg.Total != len(want) {
				t.Fatalf("total %d, want %d", pg.Total, len(want))
			}
			if len(pg.Items) == 0 {
				break
			}
			all = append(all, pg.Items...)
		}
		if !slices.Equal(all, want) {
			t.Fatalf("applicant %s: paged %v, want %v", id, all, want)
		}
	}
	var food Page[Permit]
	getJSON(t, srv.URL+"/api/permits?matter_code="+mFoodBusiness.code+"&status=有效&region_code=130102&page_size=100", &food)
	for _, x := range food.Items {
		if x.MatterName != "食品经营许可" || x.Status != "有效" || x.RegionCode != "130102" {
			t.Fatalf("filtered list has %+v", x)
		}
	}
	if food.Total == 0 {
		t.Fatal("no food business permits in force in 130102")
	}
}

func TestApprovalChangeFeed(t *testing.T) {
	d := testData
	a := NewApproval(d, Faults{})
	srv := httptest.NewServer(a)
	defer srv.Close()

	var cl ChangeList
	if code, _ := getJSON(t, srv.URL+"/api/changes", &cl); code != 200 || len(cl.Changes) != 0 || cl.LastSeq != 0 || cl.Changes == nil {
		t.Fatalf("initial feed: %d %+v", code, cl)
	}
	// A long poll returns as soon as a change arrives.
	var wg sync.WaitGroup
	var polled ChangeList
	wg.Go(func() { getJSON(t, srv.URL+"/api/changes?since=0&wait=20s", &polled) })
	// Wait until the poll is parked, then revoke.
	for i := 0; i < 2000 && a.Requests() < 2; i++ {
		time.Sleep(time.Millisecond)
	}
	id := d.Permits[7].PermitID
	ch, err := a.RevokePermit(id)
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if len(polled.Changes) != 1 || polled.Changes[0] != ch || ch.Seq != 1 || ch.Op != "upsert" || ch.PermitID != id || ch.Dataset != "approval.permits" {
		t.Fatalf("long poll got %+v, change %+v", polled, ch)
	}
	var p Permit
	getJSON(t, srv.URL+"/api/permits/"+url.PathEscape(id), &p)
	if p.Status != "撤销" {
		t.Fatalf("revoked permit has status %q", p.Status)
	}
	if _, err := a.DeletePermit(id); err != nil {
		t.Fatal(err)
	}
	if code, _ := getJSON(t, srv.URL+"/api/permits/"+url.PathEscape(id), nil); code != 404 {
		t.Fatalf("deleted permit: %d", code)
	}
	np := d.Permits[8]
	np.PermitID = "JY21301029999990"
	if _, err := a.UpsertPermit(np); err != nil {
		t.Fatal(err)
	}
	cl = ChangeList{}
	getJSON(t, srv.URL+"/api/changes?since=1", &cl)
	if len(cl.Changes) != 2 || cl.Changes[0].Op != "delete" || cl.Changes[1].PermitID != np.PermitID || cl.LastSeq != 3 {
		t.Fatalf("changes since 1: %+v", cl)
	}
	getJSON(t, srv.URL+"/api/changes?since=1&limit=1", &cl)
	if len(cl.Changes) != 1 || cl.LastSeq != 2 {
		t.Fatalf("limited changes: %+v", cl)
	}
	if _, err := a.RevokePermit("nope"); err == nil {
		t.Error("revoking an unknown permit succeeded")
	}
	if _, err := a.UpsertPermit(Permit{PermitID: "X", ApplicantID: "bad"}); err == nil {
		t.Error("upserting a permit with a bad applicant succeeded")
	}
	for _, q := range []string{"since=-1", "wait=soon", "limit=0", "since=1&foo=2"} {
		if code, _ := getJSON(t, srv.URL+"/api/changes?"+q, nil); code != 400 {
			t.Errorf("changes?%s = %d, want 400", q, code)
		}
	}
	if got := a.Changes(0); len(got) != 3 {
		t.Errorf("Changes(0) has %d changes", len(got))
	}
}

func TestFaults(t *testing.T) {
	d := testData
	a := NewApproval(d, Faults{})
	srv := httptest.NewServer(a)
	defer srv.Close()
	health := srv.URL + "/api/health"
	if code, _ := getJSON(t, health, nil); code != 200 {
		t.Fatalf("health: %d", code)
	}
	a.SetDown(true)
	var b errorBody
	code, h := getJSON(t, health, &b)
	if code != 503 || b.Error.Code != "SERVICE_UNAVAILABLE" || !strings.Contains(b.Error.Message, "down") || h.Get("Retry-After") == "" {
		t.Fatalf("down: %d %+v", code, b)
	}
	if !a.Down() {
		t.Fatal("Down() is false")
	}
	a.SetDown(false)
	a.SetFailureRate(1)
	for range 5 {
		if code, _ := getJSON(t, health, nil); code != 503 {
			t.Fatalf("failure rate 1: %d", code)
		}
	}
	a.SetFailureRate(0.5)
	fails := 0
	for range 200 {
		if code, _ := getJSON(t, health, nil); code == 503 {
			fails++
		}
	}
	if fails < 40 || fails > 160 {
		t.Errorf("failure rate 0.5: %d of 200 failed", fails)
	}
	if got := a.Requests(); got != 1+1+5+200 {
		t.Errorf("Requests() = %d, want 207", got)
	}
	if got := a.Failures(); got != int64(1+5+fails) {
		t.Errorf("Failures() = %d, want %d", got, 1+5+fails)
	}
	a.SetFailureRate(0)
	a.SetLatency(2*time.Millisecond, time.Millisecond)
	if code, _ := getJSON(t, health, nil); code != 200 {
		t.Fatalf("with latency: %d", code)
	}
	a.ResetRequests()
	if a.Requests() != 0 || a.Failures() != 0 {
		t.Error("ResetRequests did not reset")
	}
	// A request cancelled while delayed is not served.
	a.SetLatency(time.Hour, 0)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, health, nil)
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	for i := 0; i < 2000 && a.Requests() < 1; i++ {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err == nil {
		t.Error("cancelled delayed request succeeded")
	}
}

func TestStart(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	deps, err := Start(ctx, Config{Seed: 5, Faults: Faults{Latency: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{deps.MarketURL + "/api/v1/health", deps.ApprovalURL + "/api/health", deps.ResourcesURL + "/conformance"} {
		if !strings.HasPrefix(u, "http://127.0.0.1:") {
			t.Fatalf("URL %s is not on loopback", u)
		}
		if code, _ := getJSON(t, u, nil); code != 200 {
			t.Fatalf("GET %s: %d", u, code)
		}
	}
	if deps.Data.Seed != 5 || deps.Market.Requests() != 1 {
		t.Fatalf("seed %d, market requests %d", deps.Data.Seed, deps.Market.Requests())
	}
	// A parked long poll ends when the departments stop.
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(deps.ApprovalURL + "/api/changes?wait=30s")
		if err == nil {
			resp.Body.Close()
		}
	}()
	for i := 0; i < 2000 && deps.Approval.Requests() < 2; i++ {
		time.Sleep(time.Millisecond)
	}
	cancel() // ending ctx closes the departments
	<-done
	if err := deps.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(deps.MarketURL + "/api/v1/health"); err == nil {
		t.Fatal("market still serving after Close")
	}
	if _, err := Start(t.Context(), Config{Faults: Faults{FailureRate: 2}}); err == nil {
		t.Fatal("Start accepted failure_rate 2")
	}
	if _, err := Start(t.Context(), Config{MarketPort: 70000}); err == nil {
		t.Fatal("Start accepted port 70000")
	}
}
