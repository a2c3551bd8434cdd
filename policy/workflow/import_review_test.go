package workflow

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// TestImportChecksHistory checks that Import refuses grants whose history
// does not follow the workflow rules: an active grant approved by its own
// proposer, by the wrong role, without an opinion on a major dataset, a
// rejected grant stored as active, or a history that skips the review.
func TestImportChecksHistory(t *testing.T) {
	var major, normal *v1.Grant
	for _, g := range policy.DemoGrants(t0) {
		if g.NeedsLegalReview && major == nil {
			major = g
		}
		if !g.NeedsLegalReview && normal == nil {
			normal = g
		}
	}
	if major == nil || normal == nil {
		t.Fatal("demo grants lack a major or a normal grant")
	}
	cases := []struct {
		name  string
		base  *v1.Grant
		edit  func(g *v1.Grant)
		valid bool
	}{
		{"demo major grant", major, func(*v1.Grant) {}, true},
		{"demo normal grant", normal, func(*v1.Grant) {}, true},
		{"self-approved", normal, func(g *v1.Grant) { g.History[1].Actor = g.ProposedBy }, false},
		{"major approved by an admin", major, func(g *v1.Grant) { g.History[1].ActorRole = RoleAdmin }, false},
		{"major approved without opinion", major, func(g *v1.Grant) { g.History[1].Opinion = " " }, false},
		{"rejected but active", major, func(g *v1.Grant) { g.History[1].To = v1.GrantState_GRANT_STATE_REJECTED }, false},
		{"no review", normal, func(g *v1.Grant) { g.History = g.History[:1] }, false},
		{"proposal by someone else", normal, func(g *v1.Grant) { g.History[0].Actor = "mallory" }, false},
		{"revoked after approval", normal, func(g *v1.Grant) {
			g.State = v1.GrantState_GRANT_STATE_REVOKED
			g.History = append(g.History, &v1.GrantTransition{From: v1.GrantState_GRANT_STATE_ACTIVE, To: v1.GrantState_GRANT_STATE_REVOKED,
				Actor: "demo-admin", ActorRole: RoleAdmin, Opinion: "项目结束"})
		}, true},
		{"revived after revocation", normal, func(g *v1.Grant) {
			g.History = append(g.History,
				&v1.GrantTransition{From: v1.GrantState_GRANT_STATE_ACTIVE, To: v1.GrantState_GRANT_STATE_REVOKED, Actor: "demo-admin", ActorRole: RoleAdmin, Opinion: "x"},
				&v1.GrantTransition{From: v1.GrantState_GRANT_STATE_REVOKED, To: v1.GrantState_GRANT_STATE_ACTIVE, Actor: "demo-admin-2", ActorRole: RoleAdmin, Opinion: "x"})
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			g := proto.Clone(c.base).(*v1.Grant)
			c.edit(g)
			n, err := f.wf.Import(context.Background(), []*v1.Grant{g})
			if c.valid {
				if err != nil || n != 1 {
					t.Fatalf("Import = %d, %v; want 1 grant", n, err)
				}
				return
			}
			wantErr(t, err, codes.InvalidArgument, "", "")
			if _, err := f.st.Get(context.Background(), g.Id); apierr.CodeOf(err) != codes.NotFound {
				t.Fatalf("refused grant was stored: %v", err)
			}
		})
	}
}
