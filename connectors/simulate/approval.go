package simulate

import (
	"fmt"
	"net/http"
	"slices"
	"sync"

	"github.com/tongban/tongban/schemas/ident"
)

// Approval is the simulated administrative approval bureau (行政审批局). It
// serves:
//
//	GET /api/permits/{permit_id}
//	GET /api/permits?applicant_id=&matter_code=&region_code=&status=&page=&page_size=
//	GET /api/changes?since=&wait=&limit=   the change feed
//	GET /api/health
//
// applicant_id must be a valid credit code or resident ID (400 otherwise).
type Approval struct {
	*Control
	handler http.Handler

	mu      sync.RWMutex
	permits []Permit
	byID    map[string]int
	feed    *feed
}

// NewApproval returns the approval bureau serving a copy of d.
func NewApproval(d *Data, f Faults) *Approval {
	a := &Approval{
		Control: newControl(d.Seed+2, f),
		permits: append([]Permit(nil), d.Permits...),
		byID:    make(map[string]int, len(d.Permits)),
		feed:    newFeed(),
	}
	for i, p := range a.permits {
		a.byID[p.PermitID] = i
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/permits/{permit_id}", a.get)
	mux.HandleFunc("GET /api/permits", a.list)
	mux.HandleFunc("GET /api/changes", a.feed.serve)
	mux.HandleFunc("GET /api/health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, "application/json; charset=utf-8", map[string]string{"status": "ok", "department": "行政审批局"})
	})
	mux.HandleFunc("/", notFound)
	a.handler = a.wrap("administrative approval bureau", mux)
	return a
}

// ServeHTTP serves the REST API.
func (a *Approval) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.handler.ServeHTTP(w, r) }

func (a *Approval) get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("permit_id")
	if id == "" || len(id) > 64 {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "permit_id must have 1 to 64 characters")
		return
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	i, ok := a.byID[id]
	if !ok || a.permits[i].PermitID == "" {
		writeError(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("no permit %s", id))
		return
	}
	writeJSON(w, http.StatusOK, "application/json; charset=utf-8", a.permits[i])
}

func (a *Approval) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := checkParams(q, "applicant_id", "matter_code", "region_code", "status", "page", "page_size"); err != nil {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())
		return
	}
	if err := checkRegionFilter(q.Get("region_code")); err != nil {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())
		return
	}
	app := q.Get("applicant_id")
	if app != "" && ident.Kind(app) == "" {
		msg := "applicant_id is neither a credit code nor a resident ID"
		if len(app) == 18 {
			if err := ident.ValidateCreditCode(app); err != nil {
				msg += " (as credit code: " + err.Error()
				if err := ident.ValidateResidentID(app); err != nil {
					msg += "; as resident ID: " + err.Error()
				}
				msg += ")"
			}
		}
		writeError(w, http.StatusBadRequest, "INVALID_APPLICANT_ID", msg)
		return
	}
	matter, region, status := q.Get("matter_code"), q.Get("region_code"), q.Get("status")
	a.mu.RLock()
	var items []Permit
	for _, p := range a.permits {
		if p.PermitID != "" && (app == "" || p.ApplicantID == app) && (matter == "" || p.MatterCode == matter) &&
			regionMatch(region, p.RegionCode) && (status == "" || p.Status == status) {
			items = append(items, p)
		}
	}
	a.mu.RUnlock()
	writePage(w, items, q)
}

// Permit returns the permit currently served under an id.
func (a *Approval) Permit(id string) (Permit, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	i, ok := a.byID[id]
	if !ok || a.permits[i].PermitID == "" {
		return Permit{}, false
	}
	return a.permits[i], true
}

// UpsertPermit adds a permit or replaces the one with the same permit_id,
// and appends an "upsert" change to the feed.
func (a *Approval) UpsertPermit(p Permit) (Change, error) {
	if p.PermitID == "" {
		return Change{}, fmt.Errorf("upserting permit: permit_id is empty")
	}
	if k := ident.Kind(p.ApplicantID); k == "" {
		return Change{}, fmt.Errorf("upserting permit %s: applicant_id %q is neither a credit code nor a resident ID", p.PermitID, p.ApplicantID)
	}
	a.mu.Lock()
	if i, ok := a.byID[p.PermitID]; ok {
		a.permits[i] = p
	} else {
		a.byID[p.PermitID] = len(a.permits)
		a.permits = append(a.permits, p)
	}
	a.mu.Unlock()
	return a.feed.add(Change{Dataset: "approval.permits", RecordID: p.PermitID, PermitID: p.PermitID, RegionCode: p.RegionCode, Op: "upsert"}), nil
}

// RevokePermit sets a permit's status to "撤销" and appends an "upsert"
// change to the feed.
func (a *Approval) RevokePermit(id string) (Change, error) {
	p, ok := a.Permit(id)
	if !ok {
		return Change{}, fmt.Errorf("revoking permit: no permit %s", id)
	}
	p.Status = "撤销"
	return a.UpsertPermit(p)
}

// DeletePermit removes a permit and appends a "delete" change to the feed.
func (a *Approval) DeletePermit(id string) (Change, error) {
	a.mu.Lock()
	i, ok := a.byID[id]
	if !ok || a.permits[i].PermitID == "" {
		a.mu.Unlock()
		return Change{}, fmt.Errorf("deleting permit: no permit %s", id)
	}
	region := a.permits[i].RegionCode
	// Keep indexes stable: blank the slot instead of shifting.
	a.permits[i] = Permit{}
	delete(a.byID, id)
	a.mu.Unlock()
	return a.feed.add(Change{Dataset: "approval.permits", RecordID: id, PermitID: id, RegionCode: region, Op: "delete"}), nil
}

// Changes returns the changes after seq, for tests and in-process callers.
func (a *Approval) Changes(since int64) []Change {
	c, _, _ := a.feed.since(since, 1<<30)
	return slices.Clone(c)
}
