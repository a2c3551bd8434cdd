package builtin_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tongban/tongban/connectors/builtin"
	"github.com/tongban/tongban/connectors/connectortest"
	"github.com/tongban/tongban/connectors/sdk"
	"github.com/tongban/tongban/connectors/simulate"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
	"github.com/tongban/tongban/schemas/ident"
)

func TestTypes(t *testing.T) {
	if got, want := builtin.Types(), []string{"ogcfeatures", "postgres", "rest"}; !slices.Equal(got, want) {
		t.Errorf("Types() = %v, want %v", got, want)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name, typ, settings, want string
	}{
		{"unknown type", "soap", "department: {id: market}", `unknown connector type "soap" (built-in types: ogcfeatures, postgres, rest)`},
		{"empty settings", "rest", "", "settings are empty"},
		{"unknown key", "rest", "department: {id: market}\nbase_uri: http://x", "field base_uri not found"},
		{"key path of a bad pointer", "rest", `
department: {id: market}
base_url: http://127.0.0.1:1
datasets:
  market.business_licences:
    get: /l/{credit_code}
    fields: {name: name}
`, `datasets["market.business_licences"].fields.name: JSON pointer "name" must start with "/"`},
		{"ogcfeatures dataset of another department", "ogcfeatures", `
department: {id: resources}
base_url: http://127.0.0.1:1
datasets:
  approval.permits: {collection: permits}
`, `datasets["approval.permits"]: belongs to department "approval"`},
		{"postgres parameter count", "postgres", `
department: {id: market}
dsn: postgres://u@127.0.0.1:1/db
datasets:
  market.enterprises:
    by_key: {sql: "SELECT * FROM e WHERE a = $1 AND b = $2", params: [credit_code]}
`, `datasets["market.enterprises"].by_key.sql: uses 2 parameters`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := builtin.New(t.Context(), tt.typ, []byte(tt.settings))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, %v; want error containing %q", c, err, tt.want)
			}
			if c != nil {
				t.Errorf("New returned a connector with an error: %#v", c)
			}
		})
	}
}

// demo starts the simulated departments and the three demo connectors.
func demo(t *testing.T) (*simulate.Departments, map[string]sdk.Connector) {
	t.Helper()
	deps, err := simulate.Start(t.Context(), simulate.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("starting simulated departments: %v", err)
	}
	t.Cleanup(func() { _ = deps.Close() })
	vars := map[string]string{"MARKET_URL": deps.MarketURL, "APPROVAL_URL": deps.ApprovalURL, "RESOURCES_URL": deps.ResourcesURL}
	if got := builtin.DemoDepartments(); !slices.Equal(got, []string{"approval", "market", "resources"}) {
		t.Fatalf("DemoDepartments() = %v", got)
	}
	conns := map[string]sdk.Connector{}
	for _, dep := range builtin.DemoDepartments() {
		typ, settings, err := builtin.DemoSettings(dep, vars)
		if err != nil {
			t.Fatal(err)
		}
		c, err := builtin.New(t.Context(), typ, settings)
		if err != nil {
			t.Fatalf("demo connector %s: %v", dep, err)
		}
		conns[dep] = c
	}
	return deps, conns
}

func fetch(t *testing.T, c sdk.Connector, req *v1.FetchRequest) *v1.FetchResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	resp, err := c.Fetch(ctx, req)
	if err != nil {
		t.Fatalf("Fetch(%v): %v", req, err)
	}
	return resp
}

// sameRecord checks a fetched record against the simulator's record: every
// dictionary field the department sent is there, typed per the dictionary.
func sameRecord(t *testing.T, dataset string, got *v1.SourceRecord, want any) {
	t.Helper()
	ds, _ := datasets.Default().Dataset(dataset)
	b, _ := json.Marshal(want)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	fields := got.GetFields().GetFields()
	for name, v := range m {
		f, ok := ds.Field(name)
		if !ok {
			continue
		}
		g, present := fields[name]
		if s, isStr := v.(string); isStr && s == "" && f.Type != "string" {
			if present {
				t.Errorf("%s %s: empty %s field %s is present: %v", dataset, got.Id, f.Type, name, g)
			}
			continue
		}
		if !present {
			t.Errorf("%s %s: field %s missing", dataset, got.Id, name)
			continue
		}
		switch f.Type {
		case "number", "integer":
			if _, ok := g.GetKind().(*structpb.Value_NumberValue); !ok || g.GetNumberValue() != v.(float64) {
				t.Errorf("%s %s: %s = %v, want the number %v", dataset, got.Id, name, g, v)
			}
		case "geometry":
			if g.GetStructValue().AsMap()["type"] != v.(map[string]any)["type"] {
				t.Errorf("%s %s: %s = %v, want %v", dataset, got.Id, name, g, v)
			}
		default:
			if g.GetStringValue() != v {
				t.Errorf("%s %s: %s = %v, want %q", dataset, got.Id, name, g, v)
			}
		}
	}
}

func ids(resp *v1.FetchResponse) []string {
	var out []string
	for _, r := range resp.GetRecords() {
		out = append(out, r.Id)
	}
	slices.Sort(out)
	return out
}

// unknownCreditCode is a credit code with a valid check character that
// names no enterprise.
func unknownCreditCode(t *testing.T, d *simulate.Data) string {
	t.Helper()
	// Registration (2) + region (6) + organisation code (8 + check) + check.
	base := d.Licences[0].CreditCode[:15]
	for _, c := range "0123456789" {
		org := base[8:] + string(c)
		oc, err := ident.OrgCodeCheckChar(org)
		if err != nil {
			t.Fatal(err)
		}
		first17 := base + string(c) + string(oc)
		ch, err := ident.CreditCodeCheckChar(first17)
		if err != nil {
			t.Fatal(err)
		}
		code := first17 + string(ch)
		if _, ok := d.Licence(code); !ok {
			return code
		}
	}
	t.Fatal("no unknown credit code found")
	return ""
}

func TestDemoConnectorsAgainstSimulators(t *testing.T) {
	deps, conns := demo(t)
	data := deps.Data

	t.Run("describe", func(t *testing.T) {
		var all []string
		for dep, c := range conns {
			d, err := c.Describe(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if d.Department != dep {
				t.Errorf("department %q, want %q", d.Department, dep)
			}
			for _, ds := range d.Datasets {
				all = append(all, ds.Name)
			}
		}
		slices.Sort(all)
		want := []string{"approval.permits", "market.business_licences", "market.enterprises", "resources.land_use_certificates", "resources.parcels"}
		if !slices.Equal(all, want) {
			t.Errorf("datasets served = %v, want %v", all, want)
		}
	})
	t.Run("health", func(t *testing.T) {
		for dep, c := range conns {
			if err := c.Health(t.Context()); err != nil {
				t.Errorf("%s: Health: %v", dep, err)
			}
		}
	})
	t.Run("market licences and enterprises by credit code", func(t *testing.T) {
		for _, l := range data.Licences[:5] {
			resp := fetch(t, conns["market"], &v1.FetchRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": l.CreditCode}})
			sameRecord(t, "market.business_licences", resp.Records[0], l)
		}
		for _, e := range data.Enterprises[:5] {
			resp := fetch(t, conns["market"], &v1.FetchRequest{Dataset: "market.enterprises", Keys: map[string]string{"credit_code": e.CreditCode}})
			sameRecord(t, "market.enterprises", resp.Records[0], e)
		}
		l := data.Licences[0]
		resp := fetch(t, conns["market"], &v1.FetchRequest{Dataset: "market.business_licences", Filter: map[string]string{"legal_representative_id": l.LegalRepresentativeID}})
		if !slices.Contains(ids(resp), l.CreditCode) {
			t.Errorf("filter by legal representative: %v lacks %s", ids(resp), l.CreditCode)
		}
		_, err := conns["market"].Fetch(t.Context(), &v1.FetchRequest{Dataset: "market.enterprises", Keys: map[string]string{"credit_code": unknownCreditCode(t, data)}})
		if apierr.CodeOf(err) != codes.NotFound {
			t.Errorf("unknown credit code: %v, want NotFound", err)
		}
		_, err = conns["market"].Fetch(t.Context(), &v1.FetchRequest{Dataset: "market.enterprises", Keys: map[string]string{"credit_code": "91130100MA0000000Z"}})
		if apierr.CodeOf(err) != codes.InvalidArgument {
			t.Errorf("malformed credit code: %v, want InvalidArgument from the department's 400", err)
		}
	})
	t.Run("approval permits by id and applicant", func(t *testing.T) {
		var app string
		for _, p := range data.Permits {
			if len(data.PermitsOf(p.ApplicantID)) >= 2 {
				app = p.ApplicantID
				break
			}
		}
		if app == "" {
			t.Fatal("no applicant with two permits in the simulated data")
		}
		want := data.PermitsOf(app)
		resp := fetch(t, conns["approval"], &v1.FetchRequest{Dataset: "approval.permits", Keys: map[string]string{"applicant_id": app}})
		if len(resp.Records) != len(want) {
			t.Fatalf("permits of %s: got %d, want %d", app, len(resp.Records), len(want))
		}
		for _, p := range want {
			r := fetch(t, conns["approval"], &v1.FetchRequest{Dataset: "approval.permits", Keys: map[string]string{"permit_id": p.PermitID}})
			sameRecord(t, "approval.permits", r.Records[0], p)
		}
	})
	t.Run("resources parcels by id, holder and area", func(t *testing.T) {
		p := data.Parcels[0]
		resp := fetch(t, conns["resources"], &v1.FetchRequest{Dataset: "resources.parcels", Keys: map[string]string{"parcel_id": p.ParcelID}})
		sameRecord(t, "resources.parcels", resp.Records[0], p)

		var wantIDs []string
		for _, q := range data.ParcelsOf(p.HolderID) {
			wantIDs = append(wantIDs, q.ParcelID)
		}
		slices.Sort(wantIDs)
		resp = fetch(t, conns["resources"], &v1.FetchRequest{Dataset: "resources.parcels", Keys: map[string]string{"holder_id": p.HolderID}})
		if got := ids(resp); !slices.Equal(got, wantIDs) {
			t.Errorf("parcels of %s = %v, want %v", p.HolderID, got, wantIDs)
		}

		b := p.Geometry.Bounds()
		resp = fetch(t, conns["resources"], &v1.FetchRequest{Dataset: "resources.parcels", Bbox: &v1.BBox{MinLon: b.MinLon, MinLat: b.MinLat, MaxLon: b.MaxLon, MaxLat: b.MaxLat}})
		if !slices.Contains(ids(resp), p.ParcelID) {
			t.Errorf("bbox of parcel %s: %v lacks it", p.ParcelID, ids(resp))
		}
		// A point inside the parcel: the middle of the first diagonal.
		ring := p.Geometry.Coordinates[0]
		pt := []any{(ring[0][0] + ring[2][0]) / 2, (ring[0][1] + ring[2][1]) / 2}
		g, _ := structpb.NewStruct(map[string]any{"type": "Point", "coordinates": pt})
		resp = fetch(t, conns["resources"], &v1.FetchRequest{Dataset: "resources.parcels", Geometry: g})
		if !slices.Contains(ids(resp), p.ParcelID) {
			t.Errorf("point %v in parcel %s: got %v", pt, p.ParcelID, ids(resp))
		}
	})
	t.Run("resources certificates by number, holder and parcel", func(t *testing.T) {
		c := data.Certificates[0]
		resp := fetch(t, conns["resources"], &v1.FetchRequest{Dataset: "resources.land_use_certificates", Keys: map[string]string{"certificate_no": c.CertificateNo}})
		sameRecord(t, "resources.land_use_certificates", resp.Records[0], c)
		resp = fetch(t, conns["resources"], &v1.FetchRequest{Dataset: "resources.land_use_certificates", Keys: map[string]string{"holder_id": c.HolderID}})
		if len(resp.Records) != len(data.CertificatesOf(c.HolderID)) {
			t.Errorf("certificates of %s: got %d, want %d", c.HolderID, len(resp.Records), len(data.CertificatesOf(c.HolderID)))
		}
		resp = fetch(t, conns["resources"], &v1.FetchRequest{Dataset: "resources.land_use_certificates", Keys: map[string]string{"parcel_id": c.ParcelID}})
		if !slices.Contains(ids(resp), c.CertificateNo) {
			t.Errorf("certificates of parcel %s: %v lacks %s", c.ParcelID, ids(resp), c.CertificateNo)
		}
	})
	t.Run("department down", func(t *testing.T) {
		deps.Market.SetDown(true)
		defer deps.Market.SetDown(false)
		_, err := conns["market"].Fetch(t.Context(), &v1.FetchRequest{Dataset: "market.enterprises", Keys: map[string]string{"credit_code": data.Enterprises[0].CreditCode}})
		if apierr.CodeOf(err) != codes.Unavailable {
			t.Errorf("market down: %v, want Unavailable", err)
		}
	})
	t.Run("conformance", func(t *testing.T) {
		cases := map[string]connectortest.Options{
			"market": {Dataset: "market.business_licences", Key: map[string]string{"credit_code": data.Licences[1].CreditCode},
				UnknownKey: map[string]string{"credit_code": unknownCreditCode(t, data)}},
			"approval":  {Dataset: "approval.permits", Key: map[string]string{"permit_id": data.Permits[0].PermitID}},
			"resources": {Dataset: "resources.parcels", Key: map[string]string{"parcel_id": data.Parcels[1].ParcelID}},
		}
		for dep, opts := range cases {
			t.Run(dep, func(t *testing.T) {
				connectortest.Run(t, conns[dep], opts)
				connectortest.Run(t, connectortest.InProcess(t, conns[dep]), opts)
			})
		}
	})
}

func TestDemoSettingsNeedsVariables(t *testing.T) {
	if _, _, err := builtin.DemoSettings("market", nil); err == nil || !strings.Contains(err.Error(), "MARKET_URL") {
		t.Errorf("DemoSettings without MARKET_URL: %v", err)
	}
	if _, _, err := builtin.DemoSettings("tax", nil); err == nil {
		t.Error("DemoSettings of an unknown department succeeded")
	}
}
