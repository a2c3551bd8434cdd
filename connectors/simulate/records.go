// Package simulate runs three simulated department systems on loopback, each
// speaking the protocol a real department would expose, over deterministic
// data generated from a seed:
//
//   - the market regulation bureau (市场监督管理局), REST/JSON: business
//     licences and the enterprise register;
//   - the administrative approval bureau (行政审批局), REST/JSON: licensing
//     results, with a change feed;
//   - the natural resources bureau (自然资源和规划局), OGC API – Features
//     (GeoJSON): land parcels and land-use certificates.
//
// Generate builds the data; NewMarket, NewApproval and NewResources build the
// http.Handlers; Start serves all three on 127.0.0.1. Every handler can be
// slowed down, made to fail at a rate, or switched off at run time, and
// counts the requests it receives.
package simulate

// Enterprise is an entry of the enterprise register (market.enterprises).
// JSON field names are those of tongban.v1.Enterprise.
type Enterprise struct {
	CreditCode            string `json:"credit_code"`
	Name                  string `json:"name"`
	RegionCode            string `json:"region_code"`
	Address               string `json:"address"`
	LegalRepresentative   string `json:"legal_representative"`
	LegalRepresentativeID string `json:"legal_representative_id"`
	ContactPhone          string `json:"contact_phone"`
	IndustryCode          string `json:"industry_code"`
	IndustryName          string `json:"industry_name"`
	Employees             int32  `json:"employees"`
	Status                string `json:"status"`
	EstablishedOn         string `json:"established_on"`
}

// BusinessLicence is a business licence (market.business_licences). JSON
// field names are those of tongban.v1.BusinessLicence.
type BusinessLicence struct {
	CreditCode            string  `json:"credit_code"`
	Name                  string  `json:"name"`
	EnterpriseType        string  `json:"enterprise_type"`
	LegalRepresentative   string  `json:"legal_representative"`
	LegalRepresentativeID string  `json:"legal_representative_id"`
	RegisteredCapital     float64 `json:"registered_capital"`
	EstablishedOn         string  `json:"established_on"`
	BusinessScope         string  `json:"business_scope"`
	Address               string  `json:"address"`
	RegionCode            string  `json:"region_code"`
	RegistrationAuthority string  `json:"registration_authority"`
	Status                string  `json:"status"`
	OperatingUntil        string  `json:"operating_until"`
	IssuedOn              string  `json:"issued_on"`
}

// Permit is an administrative licensing result (approval.permits). JSON
// field names are those of tongban.v1.ApprovalRecord.
type Permit struct {
	PermitID      string `json:"permit_id"`
	MatterCode    string `json:"matter_code"`
	MatterName    string `json:"matter_name"`
	ApplicantName string `json:"applicant_name"`
	ApplicantID   string `json:"applicant_id"`
	ApplicantKind string `json:"applicant_kind"`
	Decision      string `json:"decision"`
	DecidedOn     string `json:"decided_on"`
	ValidFrom     string `json:"valid_from"`
	ValidUntil    string `json:"valid_until"`
	Authority     string `json:"authority"`
	RegionCode    string `json:"region_code"`
	SiteAddress   string `json:"site_address"`
	ContactPhone  string `json:"contact_phone"`
	Status        string `json:"status"`
}

// Polygon is a GeoJSON Polygon in WGS 84: one exterior ring, closed (the
// last position equals the first), counter-clockwise.
type Polygon struct {
	Type        string         `json:"type"`
	Coordinates [][][2]float64 `json:"coordinates"`
}

// Bounds returns the envelope of the polygon.
func (p Polygon) Bounds() BBox {
	b := BBox{MinLon: 181, MinLat: 91, MaxLon: -181, MaxLat: -91}
	for _, ring := range p.Coordinates {
		for _, c := range ring {
			b.MinLon = min(b.MinLon, c[0])
			b.MaxLon = max(b.MaxLon, c[0])
			b.MinLat = min(b.MinLat, c[1])
			b.MaxLat = max(b.MaxLat, c[1])
		}
	}
	return b
}

// Parcel is a cadastral parcel (resources.parcels). JSON field names are
// those of tongban.v1.LandParcel; Geometry is the feature geometry in OGC
// API – Features responses.
type Parcel struct {
	ParcelID   string  `json:"parcel_id"`
	RegionCode string  `json:"region_code"`
	Address    string  `json:"address"`
	LandUse    string  `json:"land_use"`
	AreaSqm    float64 `json:"area_sqm"`
	RightsType string  `json:"rights_type"`
	HolderName string  `json:"holder_name"`
	HolderID   string  `json:"holder_id"`
	Geometry   Polygon `json:"geometry"`
}

// Certificate is a land-use right certificate
// (resources.land_use_certificates). JSON field names are those of
// tongban.v1.LandUseCertificate.
type Certificate struct {
	CertificateNo string  `json:"certificate_no"`
	ParcelID      string  `json:"parcel_id"`
	HolderName    string  `json:"holder_name"`
	HolderID      string  `json:"holder_id"`
	LandUse       string  `json:"land_use"`
	AreaSqm       float64 `json:"area_sqm"`
	RightsType    string  `json:"rights_type"`
	IssuedOn      string  `json:"issued_on"`
	ValidUntil    string  `json:"valid_until"`
	RegionCode    string  `json:"region_code"`
	Address       string  `json:"address"`
}

// Person is a natural person of the simulated city. Persons are not a
// department dataset; they appear as legal representatives, permit
// applicants (tour guides) and parcel holders.
type Person struct {
	Name       string `json:"name"`
	ResidentID string `json:"resident_id"`
	Gender     string `json:"gender"`
	BirthDate  string `json:"birth_date"`
	Phone      string `json:"phone"`
	Address    string `json:"address"`
	// RegionCode is the region of residence (not the region of the ID).
	RegionCode string `json:"region_code"`
}

// BBox is a bounding box in WGS 84 degrees.
type BBox struct {
	MinLon, MinLat, MaxLon, MaxLat float64
}
