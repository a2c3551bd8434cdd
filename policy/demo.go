package policy

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Legal bases cited by the demo grants.
const (
	basisLicensing   = "《中华人民共和国行政许可法》第三十三条"
	basisSharing     = "《政务数据共享条例》（国务院令第809号）"
	basisBusiness    = "《优化营商环境条例》（国务院令第722号）"
	basisPenalty     = "《中华人民共和国行政处罚法》第五十四条"
	basisPersonalInf = "《中华人民共和国个人信息保护法》第三十四条"
)

// DemoGrants returns the grants the demo seeds, all ACTIVE and valid from 30
// days before now for one year, in Shijiazhuang (jurisdiction 1301):
//
//   - demo-approval-licences: the approval bureau's system approval-bureau
//     reads every field of market.business_licences for purpose approval,
//     the legal representative's ID masked.
//   - demo-approval-parcels, demo-approval-certificates, demo-approval-permits:
//     it reads resources.parcels, resources.land_use_certificates (a major
//     dataset) and approval.permits for purpose approval.
//   - demo-enforcement-permits: the enforcement platform's system
//     enforcement-platform reads approval.permits for purpose inspection
//     with applicant_id, contact_phone and applicant_name masked.
//   - demo-enforcement-licences: it reads the public fields of
//     market.business_licences for purpose inspection.
//   - demo-enforcement-enterprises: it reads market.enterprises (a major
//     dataset) for purpose inspection, personal fields masked.
//
// Every grant carries its workflow history; grants on major datasets carry
// the legal reviewer's approval with a written opinion. Each call returns
// fresh messages.
func DemoGrants(now time.Time) []*v1.Grant {
	from := now.Add(-30 * 24 * time.Hour)
	until := from.AddDate(1, 0, 0)
	approval := &v1.Consumer{SystemId: "approval-bureau", Department: "approval"}
	enforcement := &v1.Consumer{SystemId: "enforcement-platform", Department: "enforcement"}
	mask := func(pairs ...any) []*v1.FieldMask {
		var out []*v1.FieldMask
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, &v1.FieldMask{Field: pairs[i].(string), Mask: pairs[i+1].(v1.MaskKind)})
		}
		return out
	}
	type spec struct {
		id       string
		consumer *v1.Consumer
		dataset  string
		fields   []string
		masks    []*v1.FieldMask
		purposes []string
		basis    string
		major    bool
		quota    *v1.Quota
		opinion  string
	}
	specs := []spec{
		{
			id: "demo-approval-licences", consumer: approval, dataset: "market.business_licences",
			fields: []string{"credit_code", "name", "enterprise_type", "legal_representative", "legal_representative_id",
				"registered_capital", "established_on", "business_scope", "address", "region_code",
				"registration_authority", "status", "operating_until", "issued_on"},
			masks:    mask("legal_representative_id", v1.MaskKind_MASK_KIND_RESIDENT_ID),
			purposes: []string{"approval"},
			basis:    basisLicensing + "；" + basisBusiness,
			quota:    &v1.Quota{PerMinute: 600, PerDay: 20000},
		},
		{
			id: "demo-approval-parcels", consumer: approval, dataset: "resources.parcels",
			fields: []string{"parcel_id", "region_code", "address", "land_use", "area_sqm", "rights_type",
				"holder_name", "holder_id", "geometry"},
			purposes: []string{"approval"},
			basis:    basisLicensing + "；" + basisSharing,
			quota:    &v1.Quota{PerMinute: 600, PerDay: 20000},
		},
		{
			id: "demo-approval-certificates", consumer: approval, dataset: "resources.land_use_certificates",
			fields: []string{"certificate_no", "parcel_id", "holder_name", "holder_id", "land_use", "area_sqm",
				"rights_type", "issued_on", "valid_until", "region_code", "address"},
			purposes: []string{"approval"},
			basis:    basisLicensing + "；" + basisSharing,
			major:    true,
			quota:    &v1.Quota{PerMinute: 300, PerDay: 10000},
			opinion:  "经审核，行政审批局办理建设项目用地审批需核验土地使用权证书，依据充分，范围限于石家庄市，同意共享。",
		},
		{
			id: "demo-approval-permits", consumer: approval, dataset: "approval.permits",
			fields: []string{"permit_id", "matter_code", "matter_name", "applicant_name", "applicant_id",
				"applicant_kind", "decision", "decided_on", "valid_from", "valid_until", "authority",
				"region_code", "site_address", "contact_phone", "status"},
			purposes: []string{"approval"},
			basis:    basisLicensing + "；" + basisBusiness,
		},
		{
			id: "demo-enforcement-permits", consumer: enforcement, dataset: "approval.permits",
			fields: []string{"permit_id", "matter_code", "matter_name", "applicant_name", "applicant_id",
				"applicant_kind", "decision", "decided_on", "valid_from", "valid_until", "authority",
				"region_code", "site_address", "contact_phone", "status"},
			masks: mask(
				"applicant_id", v1.MaskKind_MASK_KIND_RESIDENT_ID,
				"contact_phone", v1.MaskKind_MASK_KIND_PHONE,
				"applicant_name", v1.MaskKind_MASK_KIND_NAME,
			),
			purposes: []string{"inspection"},
			basis:    basisPenalty + "；" + basisPersonalInf + "；" + basisSharing,
			quota:    &v1.Quota{PerMinute: 300, PerDay: 10000},
		},
		{
			id: "demo-enforcement-licences", consumer: enforcement, dataset: "market.business_licences",
			fields: []string{"credit_code", "name", "enterprise_type", "registered_capital", "established_on",
				"business_scope", "address", "region_code", "registration_authority", "status",
				"operating_until", "issued_on"},
			purposes: []string{"inspection"},
			basis:    basisPenalty + "；" + basisSharing,
			quota:    &v1.Quota{PerMinute: 300, PerDay: 10000},
		},
		{
			id: "demo-enforcement-enterprises", consumer: enforcement, dataset: "market.enterprises",
			fields: []string{"credit_code", "name", "region_code", "address", "legal_representative",
				"contact_phone", "industry_code", "industry_name", "status", "established_on"},
			masks: mask(
				"legal_representative", v1.MaskKind_MASK_KIND_NAME,
				"contact_phone", v1.MaskKind_MASK_KIND_PHONE,
			),
			purposes: []string{"inspection"},
			basis:    basisPenalty + "；" + basisPersonalInf + "；" + basisSharing,
			major:    true,
			quota:    &v1.Quota{PerMinute: 120, PerDay: 5000},
			opinion:  "经审核，综合行政执法局开展现场检查需核实企业登记信息，法律依据充分；法定代表人姓名与联系电话须脱敏，同意共享。",
		},
	}
	out := make([]*v1.Grant, 0, len(specs))
	for _, s := range specs {
		proposed := timestamppb.New(from.Add(-48 * time.Hour))
		decided := timestamppb.New(from.Add(-24 * time.Hour))
		approve := &v1.GrantTransition{
			From: v1.GrantState_GRANT_STATE_PROPOSED, To: v1.GrantState_GRANT_STATE_ACTIVE,
			Actor: "demo-admin-2", ActorRole: "admin", At: decided, Opinion: "同意。",
		}
		if s.major {
			approve.Actor, approve.ActorRole, approve.Opinion = "demo-legal-reviewer", "legal_reviewer", s.opinion
		}
		out = append(out, &v1.Grant{
			Id:           s.id,
			Consumer:     &v1.Consumer{SystemId: s.consumer.SystemId, Department: s.consumer.Department},
			Dataset:      s.dataset,
			Fields:       s.fields,
			Masks:        s.masks,
			Purposes:     s.purposes,
			LegalBasis:   s.basis,
			Jurisdiction: "1301",
			ValidFrom:    timestamppb.New(from),
			ValidUntil:   timestamppb.New(until),
			Quota:        s.quota,
			State:        v1.GrantState_GRANT_STATE_ACTIVE,
			ProposedBy:   "demo-admin",
			History: []*v1.GrantTransition{
				{From: v1.GrantState_GRANT_STATE_UNSPECIFIED, To: v1.GrantState_GRANT_STATE_PROPOSED, Actor: "demo-admin", ActorRole: "admin", At: proposed},
				approve,
			},
			NeedsLegalReview: s.major,
		})
	}
	return out
}
