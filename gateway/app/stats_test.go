package app

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/tongban/tongban/connectors/simulate"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// TestTransparencyStatsArePublished checks the node's wiring of the public
// statistics: an exchange and a correction made through the node show up in
// GetTransparencyStats, which needs no token.
func TestTransparencyStatsArePublished(t *testing.T) {
	if testing.Short() {
		t.Skip("starts simulators and plugin processes")
	}
	deps, err := simulate.Start(context.Background(), simulate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deps.Close() })
	node := startNode(t, nodeConfig(t, "node-a", deps))
	if err := node.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	go func() { _ = node.Serve(ctx) }()

	code := deps.Data.SampleEnterprise().CreditCode
	if _, err := node.Query(asApproval(), licenceQuery(code)); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(node.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	asApprovalOut := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer t-approval")
	if _, err := v1.NewFormsClient(conn).CreateCorrection(asApprovalOut, &v1.CreateCorrectionRequest{
		Form: "food_business_licence", ApplicantId: code, Field: "operator_name", ProposedValue: "新名称",
	}); err != nil {
		t.Fatal(err)
	}

	stats, err := v1.NewAuditClient(conn).GetTransparencyStats(ctx, &v1.GetTransparencyStatsRequest{})
	if err != nil {
		t.Fatalf("GetTransparencyStats: %v", err)
	}
	var licences uint64
	for _, c := range stats.GetExchanges() {
		if c.GetDataset() == "market.business_licences" && c.GetConsumer() == "approval-bureau" {
			licences += c.GetExchanges()
		}
	}
	if licences == 0 {
		t.Errorf("exchanges = %v, want the approval bureau's licence query counted", stats.GetExchanges())
	}
	if stats.GetCorrectionsOpen() != 1 {
		t.Errorf("corrections_open = %d, want 1", stats.GetCorrectionsOpen())
	}
}
