package simulate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/tongban/tongban/schemas/ident"
)

// DefaultSeed is the seed of the demo data.
const DefaultSeed uint64 = 20240601

// AsOf is the date the generated data describes: statuses such as "过期"
// are computed against it, never against the clock, so the same seed gives
// the same data on every day.
var AsOf = time.Date(2026, 6, 30, 0, 0, 0, 0, time.UTC)

// Sizes of the generated data.
const (
	numEnterprises = 1500
	numPersons     = 2000
	numGuides      = 600
	gridCols       = 60 // parcels grid over the central city, lon
	gridRows       = 50 // and lat
	numCityParcels = 2200
	numFarParcels  = 60 // in Tangshan and Baoding
)

// The central-city area in which parcels lie.
const (
	cityMinLon, cityMaxLon = 114.35, 114.65
	cityMinLat, cityMaxLat = 37.95, 38.15
)

// Data is one generated world: the records of the three departments and the
// persons they name. It is not modified after Generate returns; the
// simulated departments copy what they serve.
type Data struct {
	Seed         uint64
	Enterprises  []Enterprise
	Licences     []BusinessLicence
	Persons      []Person
	Permits      []Permit
	Parcels      []Parcel
	Certificates []Certificate

	enterpriseByCode map[string]int
	licenceByCode    map[string]int
	personByID       map[string]int
	permitByID       map[string]int
	permitsByApp     map[string][]int
	parcelByID       map[string]int
	parcelsByHolder  map[string][]int
	certByNo         map[string]int
	certsByHolder    map[string][]int
	certsByParcel    map[string][]int
	guides           map[string]bool
	legalReps        map[string]bool
}

// gen holds the state of one generation.
type gen struct {
	r        *rand.Rand
	d        *Data
	codes    map[string]bool
	names    map[string]bool
	ids      map[string]bool
	permitNo map[string]int // sequence per permit-number prefix
	certNo   map[string]int // sequence per registration office and year
	parcelNo map[string]int // sequence per region
}

// Generate builds the world of the given seed. The same seed gives the same
// data, byte for byte, on every run and machine.
func Generate(seed uint64) *Data {
	g := &gen{
		r:        rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		d:        &Data{Seed: seed},
		codes:    map[string]bool{},
		names:    map[string]bool{},
		ids:      map[string]bool{},
		permitNo: map[string]int{},
		certNo:   map[string]int{},
		parcelNo: map[string]int{},
	}
	g.persons()
	g.enterprises()
	g.guidePermits()
	g.parcels()
	g.d.index()
	return g.d
}

func day(t time.Time) string { return t.Format(time.DateOnly) }

// between returns a random day in [from, to).
func (g *gen) between(from, to time.Time) time.Time {
	days := int(to.Sub(from).Hours() / 24)
	if days <= 0 {
		return from
	}
	return from.AddDate(0, 0, g.r.IntN(days))
}

func (g *gen) pick(ss []string) string { return ss[g.r.IntN(len(ss))] }

// twoRoads picks two different roads of a region.
func (g *gen) twoRoads(r *region) (string, string) {
	i := g.r.IntN(len(r.roads))
	j := g.r.IntN(len(r.roads) - 1)
	if j >= i {
		j++
	}
	return r.roads[i], r.roads[j]
}

func (g *gen) chance(p float64) bool { return g.r.Float64() < p }

func (g *gen) phone() string {
	prefixes := []string{"13", "15", "18", "17", "19", "16", "14"}
	p := prefixes[g.r.IntN(len(prefixes))]
	if g.r.IntN(3) > 0 { // most numbers are 13x, 15x, 18x
		p = prefixes[g.r.IntN(3)]
	}
	return fmt.Sprintf("%s%09d", p, g.r.IntN(1_000_000_000))
}

// weightedRegion draws a region of enterprise registration.
func (g *gen) weightedRegion() *region {
	total := 0
	for _, r := range regions {
		total += r.weight
	}
	n := g.r.IntN(total)
	for _, r := range regions {
		if n < r.weight {
			return r
		}
		n -= r.weight
	}
	return regions[0]
}

func (g *gen) streetAddress(r *region) string {
	return fmt.Sprintf("%s%s%d号", r.full(), g.pick(r.roads), 1+g.r.IntN(399))
}

// persons generates the natural persons.
func (g *gen) persons() {
	total := 0
	for _, ir := range idRegions {
		total += ir.weight
	}
	for len(g.d.Persons) < numPersons {
		n := g.r.IntN(total)
		code := idRegions[0].code
		for _, ir := range idRegions {
			if n < ir.weight {
				code = ir.code
				break
			}
			n -= ir.weight
		}
		birth := g.between(time.Date(1958, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2004, 1, 1, 0, 0, 0, 0, time.UTC))
		male := g.r.IntN(2) == 0
		seq := g.r.IntN(500) * 2 // even: female
		if male {
			seq++
		}
		first := fmt.Sprintf("%s%s%03d", code, birth.Format("20060102"), seq)
		c, err := ident.ResidentIDCheckDigit(first)
		if err != nil {
			panic(fmt.Sprintf("simulate: generated resident ID %s: %v", first, err))
		}
		id := first + string(c)
		if g.ids[id] {
			continue
		}
		g.ids[id] = true
		given, gender := g.pick(givenFemale), "女"
		if male {
			given, gender = g.pick(givenMale), "男"
		}
		home := regions[g.r.IntN(len(regions)-4)] // residents of Shijiazhuang
		g.d.Persons = append(g.d.Persons, Person{
			Name:       g.pick(surnames) + given,
			ResidentID: id,
			Gender:     gender,
			BirthDate:  day(birth),
			Phone:      g.phone(),
			Address:    fmt.Sprintf("%s%s%d号%d栋%d单元%d室", home.full(), g.pick(home.roads), 1+g.r.IntN(399), 1+g.r.IntN(20), 1+g.r.IntN(4), 100*(1+g.r.IntN(18))+1+g.r.IntN(4)),
			RegionCode: home.code,
		})
	}
}

// creditCode makes a new unique credit code for a registration in region
// code with the given category ("91" enterprise, "92" individual business).
func (g *gen) creditCode(category, regionCode string, established time.Time) string {
	const alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
	for {
		var body string
		if established.Year() >= 2016 || g.chance(0.1) {
			// Codes assigned since the reform start with "MA".
			b := []byte("MA")
			for range 6 {
				b = append(b, alphabet[g.r.IntN(len(alphabet))])
			}
			body = string(b)
		} else {
			body = fmt.Sprintf("%08d", g.r.IntN(100_000_000))
		}
		oc, err := ident.OrgCodeCheckChar(body)
		if err != nil {
			panic(fmt.Sprintf("simulate: organisation code %s: %v", body, err))
		}
		first := category + regionCode + body + string(oc)
		cc, err := ident.CreditCodeCheckChar(first)
		if err != nil {
			panic(fmt.Sprintf("simulate: credit code %s: %v", first, err))
		}
		code := first + string(cc)
		if !g.codes[code] {
			g.codes[code] = true
			return code
		}
	}
}

func (g *gen) tradeName() string {
	a := g.r.IntN(len(tradeChars))
	b := g.r.IntN(len(tradeChars) - 1)
	if b >= a {
		b++
	}
	return string([]rune{tradeChars[a], tradeChars[b]})
}

func (g *gen) industry() industry {
	total := 0
	for _, in := range industries {
		total += in.weight
	}
	n := g.r.IntN(total)
	for _, in := range industries {
		if n < in.weight {
			return in
		}
		n -= in.weight
	}
	return industries[0]
}

// legalRep picks a person at least 22 years old on the given day from the
// pool of representatives (the first part of Persons).
func (g *gen) legalRep(on time.Time) int {
	limit := on.AddDate(-22, 0, 0)
	for range 200 {
		i := g.r.IntN(numPersons * 11 / 20)
		b, _ := time.Parse(time.DateOnly, g.d.Persons[i].BirthDate)
		if b.Before(limit) {
			return i
		}
	}
	// The oldest person of the pool qualifies for any day the generator uses.
	oldest := 0
	for i := range numPersons * 11 / 20 {
		if g.d.Persons[i].BirthDate < g.d.Persons[oldest].BirthDate {
			oldest = i
		}
	}
	return oldest
}

var shortCity = map[string]string{"石家庄市": "石家庄", "唐山市": "唐山", "保定市": "保定"}

// enterprises generates enterprises, their licences and their permits.
func (g *gen) enterprises() {
	for len(g.d.Enterprises) < numEnterprises {
		reg := g.weightedRegion()
		in := g.industry()
		est := g.between(time.Date(1998, 1, 1, 0, 0, 0, 0, time.UTC), AsOf.AddDate(0, -3, 0))
		individual := in.individual && g.chance(0.35)
		kind := g.pick([]string{"有限责任公司(自然人投资或控股)", "有限责任公司(自然人投资或控股)", "有限责任公司(自然人独资)", "股份有限公司(非上市、自然人投资或控股)", "个人独资企业"})
		if individual {
			kind = "个体工商户"
		}
		trade := g.tradeName()
		word := g.pick(in.words)
		var name string
		switch {
		case individual:
			shop := map[string]string{"catering": "饭店", "food_retail": "商店", "public_place": "美发店"}[in.group]
			if in.code == "H6291" {
				shop = "小吃店"
			}
			name = fmt.Sprintf("%s%s%s", reg.name, trade, shop)
		case kind == "个人独资企业":
			name = fmt.Sprintf("%s%s%s中心", shortCity[reg.city], trade, word)
		default:
			prefix := shortCity[reg.city]
			if !reg.urban && reg.city == "石家庄市" && g.chance(0.5) {
				prefix = reg.name
			} else if g.chance(0.15) {
				prefix = "河北"
			}
			suffix := "有限公司"
			if strings.HasPrefix(kind, "股份") {
				suffix = "股份有限公司"
			}
			name = prefix + trade + word + suffix
		}
		if g.names[name] {
			continue
		}
		g.names[name] = true
		category := "91"
		if individual {
			category = "92"
		}
		code := g.creditCode(category, reg.code, est)
		rep := g.d.Persons[g.legalRep(est)]
		status := "存续"
		switch n := g.r.IntN(100); {
		case n < 5:
			status = "注销"
		case n < 8:
			status = "吊销"
		}
		addr := g.streetAddress(reg)
		phone := g.phone()
		employees := int32(3 + g.r.IntN(60))
		if !individual && g.chance(0.3) {
			employees += int32(g.r.IntN(500))
		}
		e := Enterprise{
			CreditCode: code, Name: name, RegionCode: reg.code, Address: addr,
			LegalRepresentative: rep.Name, LegalRepresentativeID: rep.ResidentID,
			ContactPhone: phone, IndustryCode: in.code, IndustryName: in.name,
			Employees: employees, Status: status, EstablishedOn: day(est),
		}
		capital := []float64{10, 30, 50, 100, 200, 300, 500, 1000, 2000, 5000}[g.r.IntN(10)]
		if individual {
			capital = float64(1 + g.r.IntN(20))
		}
		until := ""
		if !individual && g.chance(0.5) {
			until = day(est.AddDate(20+10*g.r.IntN(2), 0, -1))
		}
		issued := est
		if g.chance(0.4) {
			issued = g.between(est, AsOf)
		}
		authority := reg.full() + "市场监督管理局"
		if reg.urban && !individual && g.chance(0.3) {
			authority = reg.city + "市场监督管理局"
		}
		if strings.HasSuffix(reg.name, "县") || strings.HasSuffix(reg.name, "市") {
			authority = reg.name + "市场监督管理局"
		}
		l := BusinessLicence{
			CreditCode: code, Name: name, EnterpriseType: kind,
			LegalRepresentative: rep.Name, LegalRepresentativeID: rep.ResidentID,
			RegisteredCapital: capital, EstablishedOn: day(est), BusinessScope: in.scope,
			Address: addr, RegionCode: reg.code, RegistrationAuthority: authority,
			Status: status, OperatingUntil: until, IssuedOn: day(issued),
		}
		g.d.Enterprises = append(g.d.Enterprises, e)
		g.d.Licences = append(g.d.Licences, l)
		g.enterprisePermits(e, reg, in, est)
	}
}

// authority returns the deciding authority of a matter for a region.
func authority(m matter, reg *region) string {
	switch m.level {
	case "province":
		return "河北省文化和旅游厅"
	case "city":
		return reg.city + "行政审批局"
	}
	if reg.city == "石家庄市" && !reg.urban && !strings.HasSuffix(reg.name, "区") {
		return reg.name + "行政审批局"
	}
	return reg.full() + "行政审批局"
}

// permitID returns the next permit number of a matter in a region.
func (g *gen) permitID(m matter, reg *region, in industry, decided time.Time) string {
	// key names the sequence the number draws from.
	key := m.code + reg.code + fmt.Sprint(decided.Year())
	switch m {
	case mFoodBusiness, mFoodProduce, mRoadFreight:
		key = m.code + reg.code
	case mConstruction:
		key = m.code + reg.code + day(decided)
	case mTourGuide, mTravelAgency:
		key = m.code + reg.code[:4]
	}
	g.permitNo[key]++
	n := g.permitNo[key]
	switch m {
	case mFoodBusiness:
		kind := "1" // food sales
		if in.group == "catering" || in.group == "lodging" {
			kind = "2" // catering services
		}
		s := fmt.Sprintf("%s%s%06d", kind, reg.code, n)
		return "JY" + s + luhnDigit(s)
	case mFoodProduce:
		s := fmt.Sprintf("124%s%04d", reg.code, n)
		return "SC" + s + luhnDigit(s)
	case mConstruction:
		return fmt.Sprintf("%s%s%02d01", reg.code, decided.Format("20060102"), n%100)
	case mPlanning:
		return fmt.Sprintf("JZ%s%d%05d", reg.code, decided.Year(), n)
	case mPublicPlace:
		return fmt.Sprintf("WGZ%s%d%05d", reg.code, decided.Year(), n)
	case mOutdoorAd:
		return fmt.Sprintf("HWGG%s%d%05d", reg.code, decided.Year(), n)
	case mTravelAgency:
		return fmt.Sprintf("L-HE-%s%03d", reg.code[2:4], n)
	case mRoadFreight:
		return fmt.Sprintf("YSXK%s%06d", reg.code, n)
	case mTourGuide:
		return fmt.Sprintf("D-%s-%06d", reg.code[:4], n)
	}
	panic("simulate: no permit number format for " + m.name)
}

// luhnDigit returns the Luhn check digit of a digit string.
func luhnDigit(s string) string {
	sum := 0
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if (len(s)-1-i)%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return fmt.Sprint((10 - sum%10) % 10)
}

// permitLine issues a permit of matter m and its renewals up to AsOf.
func (g *gen) permitLine(m matter, reg *region, in industry, start time.Time, alive bool, app applicant) {
	decided := g.between(start, start.AddDate(0, 3, 0))
	if decided.After(AsOf) {
		return
	}
	for {
		p := Permit{
			MatterCode: m.code, MatterName: m.name,
			ApplicantName: app.name, ApplicantID: app.id, ApplicantKind: app.kind,
			Decision: "准予许可", DecidedOn: day(decided), ValidFrom: day(decided),
			Authority: authority(m, reg), RegionCode: reg.code,
			SiteAddress: app.address, ContactPhone: app.phone, Status: "有效",
		}
		if m == mConstruction || m == mPlanning || m == mOutdoorAd {
			a, b := g.twoRoads(reg)
			p.SiteAddress = fmt.Sprintf("%s%s与%s交叉口%s侧", reg.full(), a, b, g.pick([]string{"东北", "西北", "东南", "西南"}))
		}
		p.PermitID = g.permitID(m, reg, in, decided)
		if g.chance(0.03) {
			p.Decision, p.ValidFrom, p.Status = "不予许可", "", ""
			g.d.Permits = append(g.d.Permits, p)
			decided = decided.AddDate(0, 0, 30+g.r.IntN(60))
			if decided.After(AsOf) {
				return
			}
			continue
		}
		var end time.Time
		if m.years > 0 {
			end = decided.AddDate(m.years, 0, -1)
			p.ValidUntil = day(end)
		}
		renew := m.years > 0 && end.Before(AsOf.AddDate(0, 1, 0)) && alive && g.chance(0.85)
		switch {
		case renew:
			p.Status = "注销" // replaced by the renewed permit
		case m.years > 0 && end.Before(AsOf):
			p.Status = "过期"
		case !alive:
			p.Status = "注销"
		case g.chance(0.01):
			p.Status = "撤销"
		}
		g.d.Permits = append(g.d.Permits, p)
		if !renew {
			return
		}
		decided = end.AddDate(0, 0, -20-g.r.IntN(40))
		if decided.After(AsOf) {
			return
		}
	}
}

// applicant is who a permit names.
type applicant struct{ name, id, kind, address, phone string }

func (g *gen) enterprisePermits(e Enterprise, reg *region, in industry, est time.Time) {
	alive := e.Status == "存续"
	app := applicant{e.Name, e.CreditCode, "enterprise", e.Address, e.ContactPhone}
	for _, gm := range groupMatters[in.group] {
		if !g.chance(gm.prob) {
			continue
		}
		lines := 1
		if gm.lines > 1 {
			lines = 1 + g.r.IntN(gm.lines)
		}
		for range lines {
			start := est.AddDate(0, 0, 20)
			if gm.m == mFoodBusiness && start.Before(time.Date(2015, 10, 1, 0, 0, 0, 0, time.UTC)) {
				// Food business permits replaced the older licences in October 2015.
				start = g.between(time.Date(2015, 10, 1, 0, 0, 0, 0, time.UTC), time.Date(2016, 6, 1, 0, 0, 0, 0, time.UTC))
			}
			if gm.lines > 1 {
				start = g.between(est, AsOf)
			}
			g.permitLine(gm.m, reg, in, start, alive, app)
		}
	}
}

// guidePermits issues tour-guide certificates to persons. Guides are drawn
// from a band of Persons that overlaps the legal representatives, so some
// persons are both.
func (g *gen) guidePermits() {
	g.d.guides = map[string]bool{}
	lo := numPersons * 9 / 20
	for i := lo; i < lo+numGuides; i++ {
		p := g.d.Persons[i]
		birth, _ := time.Parse(time.DateOnly, p.BirthDate)
		start := birth.AddDate(21, 0, 0)
		if s := time.Date(2016, 1, 1, 0, 0, 0, 0, time.UTC); start.Before(s) {
			start = g.between(s, AsOf.AddDate(-1, 0, 0)) // electronic guide cards since 2016
		}
		if start.After(AsOf) {
			continue
		}
		reg := regionByCode[p.RegionCode]
		g.permitLine(mTourGuide, reg, industry{}, start, true, applicant{p.Name, p.ResidentID, "person", p.Address, p.Phone})
	}
}

// landUse details per land use class.
var landUses = map[string]struct {
	years  int
	rights string
}{
	"餐饮用地":   {40, "国有建设用地使用权"},
	"零售商业用地": {40, "国有建设用地使用权"},
	"商务金融用地": {40, "国有建设用地使用权"},
	"工业用地":   {50, "国有建设用地使用权"},
	"仓储用地":   {50, "国有建设用地使用权"},
	"城镇住宅用地": {70, "国有建设用地使用权/房屋（构筑物）所有权"},
	"农村宅基地":  {0, "宅基地使用权/房屋（构筑物）所有权"},
}

// cityRegion returns the division a point of the central-city area lies in.
func cityRegion(lon, lat float64) *region {
	switch {
	case lat > 38.11:
		return regionByCode["130123"] // 正定县
	case lat < 37.97:
		return regionByCode["130111"] // 栾城区
	case lon < 114.42:
		return regionByCode["130110"] // 鹿泉区
	case lon > 114.60:
		return regionByCode["130109"] // 藁城区
	case lon >= 114.50 && lat >= 38.04:
		return regionByCode["130102"] // 长安区
	case lon < 114.50 && lat >= 38.04:
		return regionByCode["130105"] // 新华区
	case lon < 114.50:
		return regionByCode["130104"] // 桥西区
	default:
		return regionByCode["130108"] // 裕华区
	}
}

// polygonArea returns the area in square metres of a small lon/lat ring
// (equirectangular projection at the ring's latitude).
func polygonArea(ring [][2]float64) float64 {
	lat0 := ring[0][1] * math.Pi / 180
	kx := 111320 * math.Cos(lat0)
	const ky = 110574.0
	s := 0.0
	for i := 0; i+1 < len(ring); i++ {
		s += ring[i][0]*kx*ring[i+1][1]*ky - ring[i+1][0]*kx*ring[i][1]*ky
	}
	return math.Abs(s) / 2
}

// quad draws a quadrilateral strictly inside the cell [x0,x0+w]×[y0,y0+h].
func (g *gen) quad(x0, y0, w, h float64) Polygon {
	fw := 0.2 + 0.5*g.r.Float64()
	fh := 0.2 + 0.5*g.r.Float64()
	cx := x0 + w*(0.05+(0.9-fw)*g.r.Float64())
	cy := y0 + h*(0.05+(0.9-fh)*g.r.Float64())
	j := func(s float64) float64 { return (g.r.Float64() - 0.5) * 0.08 * s }
	r6 := func(v float64) float64 { return math.Round(v*1e6) / 1e6 }
	sw := [2]float64{r6(cx + j(w)), r6(cy + j(h))}
	ring := [][2]float64{
		sw,
		{r6(cx + fw*w + j(w)), r6(cy + j(h))},
		{r6(cx + fw*w + j(w)), r6(cy + fh*h + j(h))},
		{r6(cx + j(w)), r6(cy + fh*h + j(h))},
		sw,
	}
	return Polygon{Type: "Polygon", Coordinates: [][][2]float64{ring}}
}

// parcels generates land parcels and their certificates.
func (g *gen) parcels() {
	byRegion := map[string][]int{}
	for i, e := range g.d.Enterprises {
		byRegion[e.RegionCode] = append(byRegion[e.RegionCode], i)
	}
	enterpriseIndustry := map[string]industry{}
	for _, in := range industries {
		enterpriseIndustry[in.code] = in
	}
	cells := g.r.Perm(gridCols * gridRows)[:numCityParcels]
	slices.Sort(cells) // parcel numbers follow the grid, west to east
	w := (cityMaxLon - cityMinLon) / gridCols
	h := (cityMaxLat - cityMinLat) / gridRows
	type site struct {
		poly Polygon
		reg  *region
		zone int
	}
	var sites []site
	for _, c := range cells {
		col, row := c%gridCols, c/gridCols
		x0, y0 := cityMinLon+float64(col)*w, cityMinLat+float64(row)*h
		sites = append(sites, site{g.quad(x0, y0, w, h), cityRegion(x0+w/2, y0+h/2), row/10*10 + col/10 + 1})
	}
	far := []struct {
		code     string
		lon, lat float64
	}{{"130202", 118.17, 39.61}, {"130203", 118.19, 39.65}, {"130602", 115.45, 38.87}, {"130606", 115.49, 38.86}}
	for i := range numFarParcels {
		f := far[i%len(far)]
		k := i / len(far)
		x0, y0 := f.lon+float64(k%4)*0.004, f.lat+float64(k/4)*0.003
		sites = append(sites, site{g.quad(x0, y0, 0.004, 0.003), regionByCode[f.code], 1 + k/4})
	}
	personLo := numPersons * 2 / 5
	for _, s := range sites {
		var holderName, holderID, use string
		if cands := byRegion[s.reg.code]; len(cands) > 0 && g.chance(0.8) {
			e := g.d.Enterprises[cands[g.r.IntN(len(cands))]]
			holderName, holderID = e.Name, e.CreditCode
			use = enterpriseIndustry[e.IndustryCode].landUse
		} else {
			p := g.d.Persons[personLo+g.r.IntN(numPersons-personLo)]
			holderName, holderID = p.Name, p.ResidentID
			use = "城镇住宅用地"
			if !s.reg.urban {
				use = "农村宅基地"
			}
		}
		lu := landUses[use]
		letters := "GB"
		if use == "农村宅基地" {
			letters = "JC"
		}
		g.parcelNo[s.reg.code]++
		pid := fmt.Sprintf("%s%03d%03d%s%05d", s.reg.code, 1+s.zone/10, 1+s.zone%10, letters, g.parcelNo[s.reg.code])
		ring := s.poly.Coordinates[0]
		area := math.Round(polygonArea(ring)*100) / 100
		ra, rb := g.twoRoads(s.reg)
		addr := fmt.Sprintf("%s%s以%s、%s以%s", s.reg.full(), ra, g.pick([]string{"东", "西"}), rb, g.pick([]string{"南", "北"}))
		g.d.Parcels = append(g.d.Parcels, Parcel{
			ParcelID: pid, RegionCode: s.reg.code, Address: addr, LandUse: use,
			AreaSqm: area, RightsType: lu.rights, HolderName: holderName, HolderID: holderID,
			Geometry: s.poly,
		})
		if g.chance(0.1) {
			continue // not yet registered
		}
		issued := g.between(time.Date(2016, 1, 1, 0, 0, 0, 0, time.UTC), AsOf)
		until := ""
		if lu.years > 0 {
			granted := g.between(time.Date(1995, 1, 1, 0, 0, 0, 0, time.UTC), issued)
			until = day(granted.AddDate(lu.years, 0, -1))
		}
		office := s.reg.city
		if !s.reg.urban && s.reg.city == "石家庄市" {
			office = s.reg.name
		}
		key := office + fmt.Sprint(issued.Year())
		g.certNo[key]++
		g.d.Certificates = append(g.d.Certificates, Certificate{
			CertificateNo: fmt.Sprintf("冀(%d)%s不动产权第%07d号", issued.Year(), office, g.certNo[key]),
			ParcelID:      pid, HolderName: holderName, HolderID: holderID, LandUse: use,
			AreaSqm: area, RightsType: lu.rights, IssuedOn: day(issued), ValidUntil: until,
			RegionCode: s.reg.code, Address: addr,
		})
	}
}

// index builds the lookup maps.
func (d *Data) index() {
	d.enterpriseByCode = make(map[string]int, len(d.Enterprises))
	d.licenceByCode = make(map[string]int, len(d.Licences))
	d.personByID = make(map[string]int, len(d.Persons))
	d.permitByID = make(map[string]int, len(d.Permits))
	d.permitsByApp = map[string][]int{}
	d.parcelByID = make(map[string]int, len(d.Parcels))
	d.parcelsByHolder = map[string][]int{}
	d.certByNo = make(map[string]int, len(d.Certificates))
	d.certsByHolder = map[string][]int{}
	d.certsByParcel = map[string][]int{}
	d.legalReps = map[string]bool{}
	if d.guides == nil {
		d.guides = map[string]bool{}
	}
	for i, e := range d.Enterprises {
		d.enterpriseByCode[e.CreditCode] = i
		d.legalReps[e.LegalRepresentativeID] = true
	}
	for i, l := range d.Licences {
		d.licenceByCode[l.CreditCode] = i
	}
	for i, p := range d.Persons {
		d.personByID[p.ResidentID] = i
	}
	for i, p := range d.Permits {
		if _, dup := d.permitByID[p.PermitID]; dup {
			panic("simulate: duplicate permit number " + p.PermitID)
		}
		d.permitByID[p.PermitID] = i
		d.permitsByApp[p.ApplicantID] = append(d.permitsByApp[p.ApplicantID], i)
		if p.MatterCode == mTourGuide.code && p.Status == "有效" {
			d.guides[p.ApplicantID] = true
		}
	}
	for i, p := range d.Parcels {
		d.parcelByID[p.ParcelID] = i
		d.parcelsByHolder[p.HolderID] = append(d.parcelsByHolder[p.HolderID], i)
	}
	for i, c := range d.Certificates {
		if _, dup := d.certByNo[c.CertificateNo]; dup {
			panic("simulate: duplicate certificate number " + c.CertificateNo)
		}
		d.certByNo[c.CertificateNo] = i
		d.certsByHolder[c.HolderID] = append(d.certsByHolder[c.HolderID], i)
		d.certsByParcel[c.ParcelID] = append(d.certsByParcel[c.ParcelID], i)
	}
}
