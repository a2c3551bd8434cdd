package simulate

import (
	"fmt"
	"net/http"
	"sync"

	"github.com/tongban/tongban/schemas/ident"
)

// Market is the simulated market regulation bureau (市场监督管理局). It
// serves, under /api/v1:
//
//	GET /api/v1/enterprises/{credit_code}   one register entry
//	GET /api/v1/enterprises?region_code=&industry_code=&status=&legal_representative_id=&page=&page_size=
//	GET /api/v1/licences/{credit_code}      one business licence
//	GET /api/v1/licences?region_code=&status=&legal_representative_id=&page=&page_size=
//	GET /api/v1/changes?since=&wait=&limit= the change feed
//	GET /api/v1/health
//
// A malformed credit code gives 400, an unknown one 404, both with a JSON
// error body {"error": {"code", "message"}}.
type Market struct {
	*Control
	handler http.Handler

	mu          sync.RWMutex
	enterprises []Enterprise
	licences    []BusinessLicence
	byCode      map[string]int // index into both slices
	feed        *feed
}

// NewMarket returns the market regulation bureau serving a copy of d.
func NewMarket(d *Data, f Faults) *Market {
	m := &Market{
		Control:     newControl(d.Seed+1, f),
		enterprises: append([]Enterprise(nil), d.Enterprises...),
		licences:    append([]BusinessLicence(nil), d.Licences...),
		byCode:      make(map[string]int, len(d.Enterprises)),
		feed:        newFeed(),
	}
	for i, e := range m.enterprises {
		if m.licences[i].CreditCode != e.CreditCode {
			panic("simulate: licences and enterprises are not aligned")
		}
		m.byCode[e.CreditCode] = i
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/enterprises/{credit_code}", m.getEnterprise)
	mux.HandleFunc("GET /api/v1/enterprises", m.listEnterprises)
	mux.HandleFunc("GET /api/v1/licences/{credit_code}", m.getLicence)
	mux.HandleFunc("GET /api/v1/licences", m.listLicences)
	mux.HandleFunc("GET /api/v1/changes", m.feed.serve)
	mux.HandleFunc("GET /api/v1/health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, "application/json; charset=utf-8", map[string]string{"status": "ok", "department": "市场监督管理局"})
	})
	mux.HandleFunc("/", notFound)
	m.handler = m.wrap("market regulation bureau", mux)
	return m
}

// ServeHTTP serves the REST API.
func (m *Market) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.handler.ServeHTTP(w, r) }

func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("no resource at %s %s", r.Method, r.URL.Path))
}

// lookup validates a credit code from the path and finds its index.
func (m *Market) lookup(w http.ResponseWriter, r *http.Request, what string) (int, bool) {
	code := r.PathValue("credit_code")
	if err := ident.ValidateCreditCode(code); err != nil {
		writeError(w, http.StatusBadRequest, "INVALID_CREDIT_CODE", "credit_code: "+err.Error())
		return 0, false
	}
	i, ok := m.byCode[code]
	if !ok {
		writeError(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("no %s with credit code %s", what, code))
		return 0, false
	}
	return i, true
}

func (m *Market) getEnterprise(w http.ResponseWriter, r *http.Request) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if i, ok := m.lookup(w, r, "enterprise"); ok {
		writeJSON(w, http.StatusOK, "application/json; charset=utf-8", m.enterprises[i])
	}
}

func (m *Market) getLicence(w http.ResponseWriter, r *http.Request) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if i, ok := m.lookup(w, r, "business licence"); ok {
		writeJSON(w, http.StatusOK, "application/json; charset=utf-8", m.licences[i])
	}
}

// listFilter checks the common list filters.
func listFilter(w http.ResponseWriter, r *http.Request, extra ...string) bool {
	q := r.URL.Query()
	allowed := append([]string{"region_code", "status", "legal_representative_id", "page", "page_size"}, extra...)
	if err := checkParams(q, allowed...); err != nil {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())
		return false
	}
	if err := checkRegionFilter(q.Get("region_code")); err != nil {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())
		return false
	}
	if id := q.Get("legal_representative_id"); id != "" {
		if err := ident.ValidateResidentID(id); err != nil {
			writeError(w, http.StatusBadRequest, "INVALID_RESIDENT_ID", "legal_representative_id: "+err.Error())
			return false
		}
	}
	return true
}

func (m *Market) listEnterprises(w http.ResponseWriter, r *http.Request) {
	if !listFilter(w, r, "industry_code") {
		return
	}
	q := r.URL.Query()
	region, status, rep, ind := q.Get("region_code"), q.Get("status"), q.Get("legal_representative_id"), q.Get("industry_code")
	m.mu.RLock()
	var items []Enterprise
	for _, e := range m.enterprises {
		if regionMatch(region, e.RegionCode) && (status == "" || e.Status == status) &&
			(rep == "" || e.LegalRepresentativeID == rep) && (ind == "" || e.IndustryCode == ind) {
			items = append(items, e)
		}
	}
	m.mu.RUnlock()
	writePage(w, items, q)
}

func (m *Market) listLicences(w http.ResponseWriter, r *http.Request) {
	if !listFilter(w, r) {
		return
	}
	q := r.URL.Query()
	region, status, rep := q.Get("region_code"), q.Get("status"), q.Get("legal_representative_id")
	m.mu.RLock()
	var items []BusinessLicence
	for _, l := range m.licences {
		if regionMatch(region, l.RegionCode) && (status == "" || l.Status == status) &&
			(rep == "" || l.LegalRepresentativeID == rep) {
			items = append(items, l)
		}
	}
	m.mu.RUnlock()
	writePage(w, items, q)
}

func writePage[T any](w http.ResponseWriter, items []T, q map[string][]string) {
	p, err := paginate(items, q)
	if err != nil {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, "application/json; charset=utf-8", p)
}

// Licence returns the licence currently served for a credit code.
func (m *Market) Licence(code string) (BusinessLicence, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	i, ok := m.byCode[code]
	if !ok {
		return BusinessLicence{}, false
	}
	return m.licences[i], true
}

// UpdateLicence replaces the licence of an existing credit code, carries
// the fields the register shares (name, address, region, legal
// representative, status, establishment date) over to the register entry,
// and appends one change per dataset to the feed.
func (m *Market) UpdateLicence(l BusinessLicence) error {
	if err := ident.ValidateCreditCode(l.CreditCode); err != nil {
		return fmt.Errorf("updating licence: credit_code: %w", err)
	}
	m.mu.Lock()
	i, ok := m.byCode[l.CreditCode]
	if !ok {
		m.mu.Unlock()
		return fmt.Errorf("updating licence: no enterprise with credit code %s", l.CreditCode)
	}
	m.licences[i] = l
	e := &m.enterprises[i]
	e.Name, e.Address, e.RegionCode, e.Status, e.EstablishedOn = l.Name, l.Address, l.RegionCode, l.Status, l.EstablishedOn
	e.LegalRepresentative, e.LegalRepresentativeID = l.LegalRepresentative, l.LegalRepresentativeID
	m.mu.Unlock()
	for _, ds := range []string{"market.business_licences", "market.enterprises"} {
		m.feed.add(Change{Dataset: ds, RecordID: l.CreditCode, CreditCode: l.CreditCode, RegionCode: l.RegionCode, Op: "upsert"})
	}
	return nil
}

// RevokeLicence sets the status of a licence and its register entry to
// "吊销" and records the change.
func (m *Market) RevokeLicence(code string) error {
	l, ok := m.Licence(code)
	if !ok {
		return fmt.Errorf("revoking licence: no enterprise with credit code %s", code)
	}
	l.Status = "吊销"
	return m.UpdateLicence(l)
}

// Changes returns the changes after seq, for tests and in-process callers.
func (m *Market) Changes(since int64) []Change {
	c, _, _ := m.feed.since(since, 1<<30)
	return c
}
