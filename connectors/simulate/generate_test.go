package simulate

import (
	"encoding/json"
	"math"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tongban/tongban/schemas/datasets"
	"github.com/tongban/tongban/schemas/ident"
)

// testData is generated once for the read-only tests.
var testData = Generate(DefaultSeed)

func TestGenerateIsDeterministic(t *testing.T) {
	a, err := json.Marshal(Generate(7))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(Generate(7))
	if string(a) != string(b) {
		t.Fatal("two generations from seed 7 differ")
	}
	c, _ := json.Marshal(Generate(8))
	if string(a) == string(c) {
		t.Fatal("seeds 7 and 8 give the same data")
	}
	again := Generate(DefaultSeed)
	if !reflect.DeepEqual(again.Permits, testData.Permits) || !reflect.DeepEqual(again.Parcels, testData.Parcels) {
		t.Fatal("default seed generation is not repeatable")
	}
}

func TestGenerateCounts(t *testing.T) {
	d := testData
	for _, c := range []struct {
		what     string
		got, min int
	}{
		{"enterprises", len(d.Enterprises), 1000},
		{"licences", len(d.Licences), len(d.Enterprises)},
		{"permits", len(d.Permits), 5000},
		{"parcels", len(d.Parcels), 2000},
		{"certificates", len(d.Certificates), len(d.Parcels) * 3 / 4},
		{"persons", len(d.Persons), 1000},
		{"tour guides in force", len(d.guides), 100},
	} {
		if c.got < c.min {
			t.Errorf("%s: %d, want at least %d", c.what, c.got, c.min)
		}
	}
	kinds := map[string]int{}
	groups := map[string]int{}
	for _, p := range d.Permits {
		kinds[p.ApplicantKind]++
	}
	for _, e := range d.Enterprises {
		groups[e.IndustryCode[:3]]++
	}
	if kinds["person"] < 300 || kinds["enterprise"] < 4000 {
		t.Errorf("applicant kinds %v, want persons and enterprises", kinds)
	}
	for _, prefix := range []string{"H62", "F52", "E47", "K70", "L72"} {
		if groups[prefix] == 0 {
			t.Errorf("no enterprise of industry %sxx", prefix)
		}
	}
}

var phoneRE = regexp.MustCompile(`^1[3-9][0-9]{9}$`)
var dateRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)

func TestGeneratedIdentifiersAreValid(t *testing.T) {
	d := testData
	seen := map[string]bool{}
	for _, e := range d.Enterprises {
		if err := ident.ValidateCreditCode(e.CreditCode); err != nil {
			t.Fatalf("enterprise %s: credit_code: %v", e.Name, err)
		}
		if seen[e.CreditCode] || seen[e.Name] {
			t.Fatalf("duplicate enterprise %s %s", e.CreditCode, e.Name)
		}
		seen[e.CreditCode], seen[e.Name] = true, true
		if e.CreditCode[2:8] != e.RegionCode {
			t.Errorf("%s: region %s differs from the credit code's", e.CreditCode, e.RegionCode)
		}
		if regionByCode[e.RegionCode] == nil || !strings.HasPrefix(e.Address, regionByCode[e.RegionCode].full()) {
			t.Errorf("%s: address %q not in region %s", e.CreditCode, e.Address, e.RegionCode)
		}
		if err := ident.ValidateResidentID(e.LegalRepresentativeID); err != nil {
			t.Fatalf("%s: legal_representative_id: %v", e.CreditCode, err)
		}
		p, ok := d.Person(e.LegalRepresentativeID)
		if !ok || p.Name != e.LegalRepresentative {
			t.Fatalf("%s: legal representative %s is not a known person", e.CreditCode, e.LegalRepresentativeID)
		}
		est, err := time.Parse(time.DateOnly, e.EstablishedOn)
		if err != nil || est.After(AsOf) {
			t.Fatalf("%s: established_on %q", e.CreditCode, e.EstablishedOn)
		}
		birth, _ := time.Parse("20060102", e.LegalRepresentativeID[6:14])
		if birth.AddDate(18, 0, 0).After(est) {
			t.Errorf("%s: legal representative born %s is under 18 on %s", e.CreditCode, birth.Format(time.DateOnly), e.EstablishedOn)
		}
		if !phoneRE.MatchString(e.ContactPhone) {
			t.Errorf("%s: contact_phone %q", e.CreditCode, e.ContactPhone)
		}
		if !slices.Contains([]string{"存续", "注销", "吊销"}, e.Status) {
			t.Errorf("%s: status %q", e.CreditCode, e.Status)
		}
		l, ok := d.Licence(e.CreditCode)
		if !ok || l.Name != e.Name || l.LegalRepresentativeID != e.LegalRepresentativeID || l.Status != e.Status || l.IssuedOn < l.EstablishedOn {
			t.Errorf("%s: licence %+v does not match the register", e.CreditCode, l)
		}
	}
	for _, p := range d.Persons {
		if err := ident.ValidateResidentID(p.ResidentID); err != nil {
			t.Fatalf("person %s: %v", p.Name, err)
		}
		if seen[p.ResidentID] {
			t.Fatalf("duplicate resident ID %s", p.ResidentID)
		}
		seen[p.ResidentID] = true
		male := (p.ResidentID[16]-'0')%2 == 1
		if male != (p.Gender == "男") || p.BirthDate != p.ResidentID[6:10]+"-"+p.ResidentID[10:12]+"-"+p.ResidentID[12:14] {
			t.Errorf("person %+v: gender or birth date disagrees with the ID", p)
		}
		if !phoneRE.MatchString(p.Phone) {
			t.Errorf("person %s: phone %q", p.ResidentID, p.Phone)
		}
	}
	ids := map[string]bool{}
	for _, p := range d.Permits {
		if ids[p.PermitID] {
			t.Fatalf("duplicate permit %s", p.PermitID)
		}
		ids[p.PermitID] = true
		want := map[string]string{"enterprise": ident.KindCreditCode, "person": ident.KindResidentID}[p.ApplicantKind]
		if k := ident.Kind(p.ApplicantID); k == "" || k != want {
			t.Fatalf("permit %s: applicant_id %s is %q, applicant_kind %s", p.PermitID, p.ApplicantID, k, p.ApplicantKind)
		}
		if !dateRE.MatchString(p.DecidedOn) || (p.ValidUntil != "" && p.ValidUntil < p.ValidFrom) {
			t.Errorf("permit %s: dates %s %s %s", p.PermitID, p.DecidedOn, p.ValidFrom, p.ValidUntil)
		}
		if p.Decision == "准予许可" && p.Status == "有效" && p.ValidUntil != "" && p.ValidUntil < AsOf.Format(time.DateOnly) {
			t.Errorf("permit %s in force but expired on %s", p.PermitID, p.ValidUntil)
		}
		if !phoneRE.MatchString(p.ContactPhone) || p.Authority == "" || p.SiteAddress == "" {
			t.Errorf("permit %+v has empty or bad fields", p)
		}
	}
	for _, p := range d.Parcels {
		if ident.Kind(p.HolderID) == "" {
			t.Fatalf("parcel %s: holder_id %s is not valid", p.ParcelID, p.HolderID)
		}
	}
	for _, c := range d.Certificates {
		p, ok := d.Parcel(c.ParcelID)
		if !ok || p.HolderID != c.HolderID || p.AreaSqm != c.AreaSqm || p.RegionCode != c.RegionCode {
			t.Fatalf("certificate %s does not match parcel %s", c.CertificateNo, c.ParcelID)
		}
	}
}

func TestParcelGeometry(t *testing.T) {
	d := testData
	city := BBox{cityMinLon, cityMinLat, cityMaxLon, cityMaxLat}
	inCity := 0
	type env struct {
		b  BBox
		id string
	}
	var envs []env
	for _, p := range d.Parcels {
		g := p.Geometry
		if g.Type != "Polygon" || len(g.Coordinates) != 1 || len(g.Coordinates[0]) != 5 || g.Coordinates[0][0] != g.Coordinates[0][4] {
			t.Fatalf("parcel %s: geometry is not a closed quadrilateral: %+v", p.ParcelID, g)
		}
		b := g.Bounds()
		if city.Contains(b.MinLon, b.MinLat) && city.Contains(b.MaxLon, b.MaxLat) {
			inCity++
			if !strings.HasPrefix(p.RegionCode, "1301") {
				t.Errorf("parcel %s in Shijiazhuang has region %s", p.ParcelID, p.RegionCode)
			}
		} else if strings.HasPrefix(p.RegionCode, "1301") {
			t.Errorf("parcel %s of region %s lies outside the city: %+v", p.ParcelID, p.RegionCode, b)
		}
		// Counter-clockwise exterior ring (RFC 7946 right-hand rule).
		ring := g.Coordinates[0]
		s := 0.0
		for i := 0; i+1 < len(ring); i++ {
			s += ring[i][0]*ring[i+1][1] - ring[i+1][0]*ring[i][1]
		}
		if s <= 0 {
			t.Errorf("parcel %s: ring is not counter-clockwise", p.ParcelID)
		}
		if a := polygonArea(ring); math.Abs(a-p.AreaSqm) > 1 || p.AreaSqm < 500 {
			t.Errorf("parcel %s: area_sqm %v, polygon %v", p.ParcelID, p.AreaSqm, a)
		}
		envs = append(envs, env{b, p.ParcelID})
	}
	if inCity < 2000 {
		t.Errorf("%d parcels in the central city, want at least 2000", inCity)
	}
	// No two envelopes overlap, so no two parcels do.
	sort.Slice(envs, func(i, j int) bool { return envs[i].b.MinLon < envs[j].b.MinLon })
	for i := range envs {
		for j := i + 1; j < len(envs) && envs[j].b.MinLon <= envs[i].b.MaxLon; j++ {
			if envs[i].b.Intersects(envs[j].b) {
				t.Fatalf("parcels %s and %s overlap", envs[i].id, envs[j].id)
			}
		}
	}
}

func TestSamples(t *testing.T) {
	for _, seed := range []uint64{DefaultSeed, 1, 2, 3} {
		d := testData
		if seed != DefaultSeed {
			d = Generate(seed)
		}
		e := d.SampleEnterprise()
		if l, ok := d.Licence(e.CreditCode); !ok || l.Status != "存续" {
			t.Errorf("seed %d: sample enterprise %s has no live licence", seed, e.CreditCode)
		}
		if !d.hasValidPermit(e.CreditCode, mFoodBusiness.code) {
			t.Errorf("seed %d: sample enterprise %s has no food business permit in force", seed, e.CreditCode)
		}
		if len(d.ParcelsOf(e.CreditCode)) == 0 || len(d.CertificatesOf(e.CreditCode)) == 0 {
			t.Errorf("seed %d: sample enterprise %s has no parcel or certificate", seed, e.CreditCode)
		}
		p := d.SamplePerson()
		if !d.hasValidPermit(p.ResidentID, mTourGuide.code) || len(d.ParcelsOf(p.ResidentID)) == 0 || len(d.CertificatesOf(p.ResidentID)) == 0 {
			t.Errorf("seed %d: sample person %s lacks a guide permit, parcel or certificate", seed, p.ResidentID)
		}
		if len(d.EnterprisesOf(p.ResidentID)) == 0 {
			t.Errorf("seed %d: sample person %s is not a legal representative", seed, p.ResidentID)
		}
		if n := len(d.SampleEnterprises(10)); n != 10 {
			t.Errorf("seed %d: %d sample enterprises, want 10", seed, n)
		}
	}
}

// jsonKeys returns the JSON field names of a record.
func jsonKeys(t *testing.T, v any) []string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestRecordFieldsMatchDictionary(t *testing.T) {
	dict := datasets.Default()
	for _, c := range []struct {
		dataset string
		record  any
	}{
		{"market.enterprises", Enterprise{}},
		{"market.business_licences", BusinessLicence{}},
		{"approval.permits", Permit{}},
		{"resources.parcels", Parcel{}},
		{"resources.land_use_certificates", Certificate{}},
	} {
		ds, ok := dict.Dataset(c.dataset)
		if !ok {
			t.Fatalf("dataset %s is not in the dictionary", c.dataset)
		}
		want := slices.Clone(ds.FieldNames())
		slices.Sort(want)
		if got := jsonKeys(t, c.record); !slices.Equal(got, want) {
			t.Errorf("%s: JSON fields %v, dictionary %v", c.dataset, got, want)
		}
	}
}

func TestLookups(t *testing.T) {
	d := testData
	for _, p := range d.Permits[:50] {
		got, ok := d.Permit(p.PermitID)
		if !ok || got != p {
			t.Fatalf("Permit(%s) = %+v, %v", p.PermitID, got, ok)
		}
		if !slices.Contains(d.PermitsOf(p.ApplicantID), p) {
			t.Fatalf("PermitsOf(%s) lacks %s", p.ApplicantID, p.PermitID)
		}
	}
	if _, ok := d.Enterprise("91350100M000100Y43"); ok {
		t.Error("found an enterprise that was not generated")
	}
	c := d.Certificates[0]
	if got, ok := d.Certificate(c.CertificateNo); !ok || got != c {
		t.Errorf("Certificate(%s) = %+v, %v", c.CertificateNo, got, ok)
	}
}

func BenchmarkGenerate(b *testing.B) {
	for b.Loop() {
		Generate(DefaultSeed)
	}
}
