package api

import (
	"context"

	"google.golang.org/grpc/codes"

	"github.com/tongban/tongban/gateway/auth"
	"github.com/tongban/tongban/gateway/autofill"
	"github.com/tongban/tongban/gateway/reqctx"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Forms implements v1.FormsServer: auto-fill of forms and bundles, and the
// corrections queue.
type Forms struct {
	v1.UnimplementedFormsServer
	Auth   *auth.Authenticator
	Engine *autofill.Engine
}

var _ v1.FormsServer = (*Forms)(nil)

// ListForms implements v1.FormsServer. Like the catalogue it needs no
// token: form templates are public.
func (f *Forms) ListForms(context.Context, *v1.ListFormsRequest) (*v1.ListFormsResponse, error) {
	return f.Engine.ListForms(), nil
}

// AutofillForm implements v1.FormsServer.
func (f *Forms) AutofillForm(ctx context.Context, req *v1.AutofillRequest) (*v1.AutofillResponse, error) {
	id, err := f.Auth.Authenticate(ctx)
	if err != nil {
		return nil, err
	}
	return f.Engine.FillForm(ctx, autofill.Request{Principal: Principal(id), RequestID: reqctx.ID(ctx), ApplicantID: req.GetApplicantId()}, req.GetForm())
}

// AutofillBundle implements v1.FormsServer.
func (f *Forms) AutofillBundle(ctx context.Context, req *v1.AutofillBundleRequest) (*v1.AutofillBundleResponse, error) {
	id, err := f.Auth.Authenticate(ctx)
	if err != nil {
		return nil, err
	}
	return f.Engine.FillBundle(ctx, autofill.Request{Principal: Principal(id), RequestID: reqctx.ID(ctx), ApplicantID: req.GetApplicantId()}, req.GetBundle())
}

// CreateCorrection implements v1.FormsServer. Any authenticated caller (an
// applicant's window clerk, a member system) may dispute a value.
func (f *Forms) CreateCorrection(ctx context.Context, req *v1.CreateCorrectionRequest) (*v1.Correction, error) {
	id, err := f.Auth.Authenticate(ctx)
	if err != nil {
		return nil, err
	}
	return f.Engine.CreateCorrection(ctx, Principal(id), reqctx.ID(ctx), req)
}

// ListCorrections implements v1.FormsServer. Admins and auditors read every
// queue; any other caller reads only its own department's queue (the
// department defaults to the caller's). Record ids are shown as the caller
// may see them (autofill.Engine.ListCorrectionsAs): real to the holding
// department, as references to everyone else.
func (f *Forms) ListCorrections(ctx context.Context, req *v1.ListCorrectionsRequest) (*v1.ListCorrectionsResponse, error) {
	id, err := f.Auth.Authenticate(ctx)
	if err != nil {
		return nil, err
	}
	dep := req.GetDepartment()
	if !id.HasRole(auth.RoleAdmin) && !id.HasRole(auth.RoleAuditor) {
		if dep == "" {
			dep = id.Department
		}
		if dep == "" || dep != id.Department {
			return nil, apierr.Newf(codes.PermissionDenied, apierr.ReasonForbiddenRole,
				"%s may read only its own department's corrections queue (or needs role admin or auditor)", id.SystemID)
		}
	}
	cs, err := f.Engine.ListCorrectionsAs(ctx, Principal(id), autofill.Filter{Department: dep, State: req.GetState()})
	if err != nil {
		return nil, err
	}
	return &v1.ListCorrectionsResponse{Corrections: cs}, nil
}

// ResolveCorrection implements v1.FormsServer: the correction's department
// (its own systems) or an admin marks it dealt with.
func (f *Forms) ResolveCorrection(ctx context.Context, req *v1.ResolveCorrectionRequest) (*v1.Correction, error) {
	id, err := f.Auth.Authenticate(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetId() == "" {
		return nil, apierr.Invalid("id", "is required")
	}
	return f.Engine.ResolveCorrection(ctx, Principal(id), reqctx.ID(ctx), req.GetId())
}
