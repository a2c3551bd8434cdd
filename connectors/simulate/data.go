package simulate

import (
	"slices"
)

// Enterprise returns the register entry of a credit code.
func (d *Data) Enterprise(code string) (Enterprise, bool) {
	i, ok := d.enterpriseByCode[code]
	if !ok {
		return Enterprise{}, false
	}
	return d.Enterprises[i], true
}

// Licence returns the business licence of a credit code.
func (d *Data) Licence(code string) (BusinessLicence, bool) {
	i, ok := d.licenceByCode[code]
	if !ok {
		return BusinessLicence{}, false
	}
	return d.Licences[i], true
}

// Person returns the person with a resident identity number.
func (d *Data) Person(id string) (Person, bool) {
	i, ok := d.personByID[id]
	if !ok {
		return Person{}, false
	}
	return d.Persons[i], true
}

// Permit returns the permit with a permit number.
func (d *Data) Permit(id string) (Permit, bool) {
	i, ok := d.permitByID[id]
	if !ok {
		return Permit{}, false
	}
	return d.Permits[i], true
}

// PermitsOf returns the permits of an applicant (credit code or resident
// ID), oldest decision first.
func (d *Data) PermitsOf(applicantID string) []Permit {
	return pickAll(d.Permits, d.permitsByApp[applicantID])
}

// Parcel returns the parcel with a parcel number.
func (d *Data) Parcel(id string) (Parcel, bool) {
	i, ok := d.parcelByID[id]
	if !ok {
		return Parcel{}, false
	}
	return d.Parcels[i], true
}

// ParcelsOf returns the parcels held by a credit code or resident ID.
func (d *Data) ParcelsOf(holderID string) []Parcel {
	return pickAll(d.Parcels, d.parcelsByHolder[holderID])
}

// Certificate returns the certificate with a certificate number.
func (d *Data) Certificate(no string) (Certificate, bool) {
	i, ok := d.certByNo[no]
	if !ok {
		return Certificate{}, false
	}
	return d.Certificates[i], true
}

// CertificatesOf returns the land-use certificates of a holder.
func (d *Data) CertificatesOf(holderID string) []Certificate {
	return pickAll(d.Certificates, d.certsByHolder[holderID])
}

// EnterprisesOf returns the enterprises whose legal representative has the
// resident ID.
func (d *Data) EnterprisesOf(residentID string) []Enterprise {
	var out []Enterprise
	for _, e := range d.Enterprises {
		if e.LegalRepresentativeID == residentID {
			out = append(out, e)
		}
	}
	return out
}

func pickAll[T any](all []T, idx []int) []T {
	out := make([]T, len(idx))
	for i, j := range idx {
		out[i] = all[j]
	}
	return out
}

// hasValidPermit reports whether the applicant holds a permit in force,
// optionally of one matter.
func (d *Data) hasValidPermit(id, matterCode string) bool {
	return slices.ContainsFunc(d.permitsByApp[id], func(i int) bool {
		p := d.Permits[i]
		return p.Status == "有效" && (matterCode == "" || p.MatterCode == matterCode)
	})
}

// SampleEnterprises returns up to n enterprises that have data in all three
// departments: a live licence, a permit in force, a parcel and a
// land-use certificate. Catering and food-retail enterprises holding a food
// business permit come first, so food-licence forms have data. The order is
// deterministic.
func (d *Data) SampleEnterprises(n int) []Enterprise {
	var food, other []Enterprise
	for _, e := range d.Enterprises {
		if e.Status != "存续" || !d.hasValidPermit(e.CreditCode, "") ||
			len(d.parcelsByHolder[e.CreditCode]) == 0 || len(d.certsByHolder[e.CreditCode]) == 0 {
			continue
		}
		if d.hasValidPermit(e.CreditCode, mFoodBusiness.code) {
			food = append(food, e)
		} else {
			other = append(other, e)
		}
	}
	all := append(food, other...)
	return all[:min(n, len(all))]
}

// SampleEnterprise returns an enterprise with data in all three departments
// (see SampleEnterprises). It panics if there is none, which the tests rule
// out for the seeds they cover.
func (d *Data) SampleEnterprise() Enterprise {
	s := d.SampleEnterprises(1)
	if len(s) == 0 {
		panic("simulate: no enterprise has data in all three departments")
	}
	return s[0]
}

// SamplePersons returns up to n persons who hold a tour-guide permit in
// force and a parcel with a certificate. Those who are also legal
// representatives come first. The order is deterministic.
func (d *Data) SamplePersons(n int) []Person {
	var reps, other []Person
	for _, p := range d.Persons {
		if !d.guides[p.ResidentID] || len(d.parcelsByHolder[p.ResidentID]) == 0 || len(d.certsByHolder[p.ResidentID]) == 0 {
			continue
		}
		if d.legalReps[p.ResidentID] {
			reps = append(reps, p)
		} else {
			other = append(other, p)
		}
	}
	all := append(reps, other...)
	return all[:min(n, len(all))]
}

// SamplePerson returns a person with a tour-guide permit in force, a parcel
// with a certificate, and (for the seeds the tests cover) an enterprise of
// which they are the legal representative. It panics if there is none.
func (d *Data) SamplePerson() Person {
	s := d.SamplePersons(1)
	if len(s) == 0 {
		panic("simulate: no person has data in all departments")
	}
	return s[0]
}
