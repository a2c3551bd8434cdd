package api

import (
	"context"

	"github.com/tongban/tongban/gateway/auth"
	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/policy/workflow"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Grants implements v1.GrantsServer over the grant workflow. Roles are
// separated: admin proposes, approves normal grants and revokes;
// legal_reviewer reviews grants on major datasets; auditor reads. The
// workflow enforces who may do what; this layer only authenticates.
type Grants struct {
	v1.UnimplementedGrantsServer
	Auth     *auth.Authenticator
	Workflow *workflow.Workflow
}

var _ v1.GrantsServer = (*Grants)(nil)

func actor(id auth.Identity) workflow.Actor {
	return workflow.Actor{ID: id.SystemID, Roles: id.Roles}
}

// readers may list and show grants.
var readers = []string{auth.RoleAdmin, auth.RoleLegalReviewer, auth.RoleAuditor}

// ListGrants implements v1.GrantsServer.
func (s *Grants) ListGrants(ctx context.Context, req *v1.ListGrantsRequest) (*v1.ListGrantsResponse, error) {
	if _, err := s.Auth.Require(ctx, readers...); err != nil {
		return nil, err
	}
	gs, err := s.Workflow.List(ctx, workflow.Filter{State: req.GetState(), Dataset: req.GetDataset()})
	if err != nil {
		return nil, err
	}
	return &v1.ListGrantsResponse{Grants: gs}, nil
}

// GetGrant implements v1.GrantsServer.
func (s *Grants) GetGrant(ctx context.Context, req *v1.GetGrantRequest) (*v1.Grant, error) {
	if _, err := s.Auth.Require(ctx, readers...); err != nil {
		return nil, err
	}
	return s.Workflow.Get(ctx, req.GetId())
}

// ProposeGrant implements v1.GrantsServer.
func (s *Grants) ProposeGrant(ctx context.Context, req *v1.ProposeGrantRequest) (*v1.Grant, error) {
	id, err := s.Auth.Authenticate(ctx)
	if err != nil {
		return nil, err
	}
	return s.Workflow.Propose(ctx, actor(id), req.GetGrant())
}

// ReviewGrant implements v1.GrantsServer.
func (s *Grants) ReviewGrant(ctx context.Context, req *v1.ReviewGrantRequest) (*v1.Grant, error) {
	id, err := s.Auth.Authenticate(ctx)
	if err != nil {
		return nil, err
	}
	return s.Workflow.Review(ctx, actor(id), req.GetId(), req.GetDecision(), req.GetOpinion())
}

// RevokeGrant implements v1.GrantsServer.
func (s *Grants) RevokeGrant(ctx context.Context, req *v1.RevokeGrantRequest) (*v1.Grant, error) {
	id, err := s.Auth.Authenticate(ctx)
	if err != nil {
		return nil, err
	}
	return s.Workflow.Revoke(ctx, actor(id), req.GetId(), req.GetReason())
}

// ActiveGrantLister lists the grants in force for the public catalogue.
type ActiveGrantLister struct {
	Workflow *workflow.Workflow
}

// ActiveGrants implements ActiveGrants.
func (l ActiveGrantLister) ActiveGrants(ctx context.Context) ([]*v1.Grant, error) {
	return l.Workflow.List(ctx, workflow.Filter{State: v1.GrantState_GRANT_STATE_ACTIVE})
}

// EngineDecider adapts the policy engine (with quotas) to query.Decider
// and query.FreeDecider.
type EngineDecider struct {
	Engine policy.Decider
	// Limiter charges the quotas of the grants a decision uses; nil
	// charges none.
	Limiter policy.Limiter
}

var (
	_ query.Decider     = EngineDecider{}
	_ query.FreeDecider = EngineDecider{}
)

// Decide implements query.Decider: it decides and charges the quotas of
// the grants the decision uses.
func (d EngineDecider) Decide(ctx context.Context, req policy.Request) (policy.Decision, error) {
	if d.Limiter == nil {
		return d.Engine.Decide(req)
	}
	return policy.DecideWithQuota(ctx, d.Engine, d.Limiter, req)
}

// DecideFree implements query.FreeDecider: it decides without the Limiter.
func (d EngineDecider) DecideFree(_ context.Context, req policy.Request) (policy.Decision, error) {
	return d.Engine.Decide(req)
}
