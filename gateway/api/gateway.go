// Package api implements the gateway's gRPC services (and so, through
// grpc-gateway, its REST API). Each method authenticates its caller, checks
// its role where the method needs one, and delegates to the package that does
// the work.
package api

import (
	"context"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tongban/tongban/gateway/auth"
	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/gateway/reqctx"
	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// ActiveGrants lists the grants in force, for the public catalogue.
type ActiveGrants interface {
	ActiveGrants(ctx context.Context) ([]*v1.Grant, error)
}

// ConnectorStatuses reports the state of the department connectors.
type ConnectorStatuses interface {
	Status() []*v1.ConnectorStatus
}

// Gateway implements v1.GatewayServer.
type Gateway struct {
	v1.UnimplementedGatewayServer
	Auth       *auth.Authenticator
	Dict       *datasets.Dictionary
	Pipeline   *query.Pipeline
	Grants     ActiveGrants
	Connectors ConnectorStatuses
	// Changes serves WatchChanges; nil leaves it unimplemented.
	Changes *Changes
}

var _ v1.GatewayServer = (*Gateway)(nil)

// Principal converts an authenticated identity to the policy's principal.
func Principal(id auth.Identity) policy.Principal {
	return policy.Principal{SystemID: id.SystemID, Department: id.Department, Region: id.Region, Roles: id.Roles}
}

// QueryDataset implements v1.GatewayServer.
func (g *Gateway) QueryDataset(ctx context.Context, req *v1.QueryRequest) (*v1.QueryResponse, error) {
	id, err := g.Auth.Authenticate(ctx)
	if err != nil {
		return nil, err
	}
	return g.Pipeline.Run(ctx, query.Request{Principal: Principal(id), RequestID: reqctx.ID(ctx), Query: req})
}

// QueryDatasetAnswer is QueryDataset returning also the parts of the
// answer's JSON the pipeline kept (see query.Answer), for the REST front
// end.
func (g *Gateway) QueryDatasetAnswer(ctx context.Context, req *v1.QueryRequest) (query.Answer, error) {
	id, err := g.Auth.Authenticate(ctx)
	if err != nil {
		return query.Answer{}, err
	}
	return g.Pipeline.RunAnswer(ctx, query.Request{Principal: Principal(id), RequestID: reqctx.ID(ctx), Query: req})
}

// GetCatalogue implements v1.GatewayServer. It needs no token and reveals
// nothing secret: datasets, fields and their classes, and the public face of
// active grants (no quotas, masks or workflow history).
func (g *Gateway) GetCatalogue(ctx context.Context, _ *v1.GetCatalogueRequest) (*v1.Catalogue, error) {
	out := &v1.Catalogue{}
	for _, dep := range g.Dict.Departments {
		cd := &v1.CatalogueDepartment{Id: dep.ID, Name: dep.Name}
		for _, ds := range g.Dict.Datasets {
			if ds.Department == dep.ID {
				cd.Datasets = append(cd.Datasets, ds.Name)
			}
		}
		out.Departments = append(out.Departments, cd)
	}
	for _, ds := range g.Dict.Datasets {
		desc := ds.Descriptor()
		out.Datasets = append(out.Datasets, &v1.CatalogueDataset{
			Name:         ds.Name,
			Title:        ds.Title,
			Department:   ds.Department,
			Kind:         desc.Kind,
			SharingClass: datasets.SharingOf(ds.Sharing),
			Sensitivity:  datasets.SensitivityOf(ds.Sensitivity),
			Fields:       desc.Fields,
			KeyFields:    append(slices.Clone(ds.Keys), ds.Lookups...),
			Freshness:    durationpb.New(ds.Freshness),
		})
	}
	if g.Grants != nil {
		grants, err := g.Grants.ActiveGrants(ctx)
		if err != nil {
			return nil, err
		}
		for _, gr := range grants {
			out.Grants = append(out.Grants, &v1.CatalogueGrant{
				Id:         gr.GetId(),
				Consumer:   consumerName(gr.GetConsumer()),
				Dataset:    gr.GetDataset(),
				Fields:     gr.GetFields(),
				Purposes:   gr.GetPurposes(),
				LegalBasis: gr.GetLegalBasis(),
				ValidFrom:  gr.GetValidFrom(),
				ValidUntil: gr.GetValidUntil(),
			})
		}
	}
	return out, nil
}

func consumerName(c *v1.Consumer) string {
	if c.GetSystemId() != "" {
		return c.GetSystemId()
	}
	parts := []string{"department " + c.GetDepartment()}
	if c.GetRole() != "" {
		parts = append(parts, "role "+c.GetRole())
	}
	return strings.Join(parts, ", ")
}

// WatchChanges implements v1.GatewayServer.
func (g *Gateway) WatchChanges(req *v1.WatchChangesRequest, stream v1.Gateway_WatchChangesServer) error {
	if g.Changes == nil {
		return g.UnimplementedGatewayServer.WatchChanges(req, stream)
	}
	return g.Changes.WatchChanges(req, stream)
}

// ListConnectors implements v1.GatewayServer. Any authenticated caller may
// see the connectors' state.
func (g *Gateway) ListConnectors(ctx context.Context, _ *v1.ListConnectorsRequest) (*v1.ListConnectorsResponse, error) {
	if _, err := g.Auth.Authenticate(ctx); err != nil {
		return nil, err
	}
	out := &v1.ListConnectorsResponse{}
	if g.Connectors != nil {
		out.Connectors = g.Connectors.Status()
	}
	return out, nil
}
