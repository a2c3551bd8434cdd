package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"gopkg.in/yaml.v3"

	"github.com/tongban/tongban/connectors/builtin"
	"github.com/tongban/tongban/connectors/host"
	"github.com/tongban/tongban/connectors/sdk"
	"github.com/tongban/tongban/connectors/simulate"
	"github.com/tongban/tongban/gateway/auth"
	"github.com/tongban/tongban/gateway/config"
	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/policy/workflow"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
	"github.com/tongban/tongban/schemas/testenv"
)

// envConnectorType makes the test binary serve a built-in connector, so that
// the nodes under test run real plugin processes.
const envConnectorType = "TONGBAN_APP_TEST_CONNECTOR"

func TestMain(m *testing.M) {
	if typ := os.Getenv(envConnectorType); typ != "" {
		c, err := builtin.New(context.Background(), typ, []byte(os.Getenv(sdk.EnvConfig)))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		sdk.Serve(c)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func testLauncher(typ string) (*exec.Cmd, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envConnectorType+"="+typ)
	return cmd, nil
}

// nodeConfig is the configuration of one test node against the simulators.
func nodeConfig(t testing.TB, name string, deps *simulate.Departments) config.Config {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Node = name
	cfg.Server.RESTAddr = "127.0.0.1:0"
	cfg.Server.GRPCAddr = "127.0.0.1:0"
	cfg.Store.Path = filepath.Join(dir, "grants.db")
	cfg.Audit.Dir = filepath.Join(dir, "audit")
	cfg.Audit.SigningKeyFile = filepath.Join(dir, "audit.key")
	cfg.Audit.SubjectKeyFile = filepath.Join(dir, "subject.key")
	cfg.Forms.CorrectionsPath = filepath.Join(dir, "corrections.db")
	cfg.Identities = []config.Identity{
		{TokenSHA256: auth.Digest("t-approval"), SystemID: "approval-bureau", Department: "approval", Region: "130100"},
		{TokenSHA256: auth.Digest("t-enforcement"), SystemID: "enforcement-platform", Department: "enforcement", Region: "130100"},
	}
	vars := map[string]string{"MARKET_URL": deps.MarketURL, "APPROVAL_URL": deps.ApprovalURL, "RESOURCES_URL": deps.ResourcesURL}
	for _, dep := range []string{"market", "approval"} {
		typ, raw, err := builtin.DemoSettings(dep, vars)
		if err != nil {
			t.Fatal(err)
		}
		settings, err := decodeSettings(raw)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Departments.Connectors = append(cfg.Departments.Connectors, host.ConnectorConfig{Name: dep, Type: typ, Settings: settings})
	}
	return cfg
}

func startNode(t testing.TB, cfg config.Config) *App {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := New(ctx, cfg, Options{
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Launcher:   testLauncher,
		SeedGrants: policy.DemoGrants,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func licenceQuery(code string) *v1.QueryRequest {
	return &v1.QueryRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": code}, Purpose: "approval"}
}

func asApproval() context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer t-approval"))
}

// TestRevocationReachesOtherNode runs two nodes sharing one PostgreSQL grant
// store: a grant revoked through node A stops node B serving.
func TestRevocationReachesOtherNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, simulators and plugin processes")
	}
	dsn := testenv.Postgres(t)
	deps, err := simulate.Start(context.Background(), simulate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deps.Close() })
	cfgA, cfgB := nodeConfig(t, "node-a", deps), nodeConfig(t, "node-b", deps)
	for _, c := range []*config.Config{&cfgA, &cfgB} {
		c.Store = config.Store{Driver: "postgres", DSN: dsn}
	}
	a := startNode(t, cfgA)
	b := startNode(t, cfgB)
	code := deps.Data.SampleEnterprise().CreditCode

	for _, n := range []*App{a, b} {
		if _, err := n.Query(asApproval(), licenceQuery(code)); err != nil {
			t.Fatalf("%s before revocation: %v", n.cfg.Node, err)
		}
	}
	admin := workflow.Actor{ID: "admin-li", Roles: []string{workflow.RoleAdmin}}
	if _, err := a.Workflow.Revoke(context.Background(), admin, "demo-approval-licences", "test"); err != nil {
		t.Fatal(err)
	}
	// Node A swaps its snapshot before Revoke returns.
	if _, err := a.Query(asApproval(), licenceQuery(code)); apierr.CodeOf(err) != codes.PermissionDenied {
		t.Fatalf("node A after revocation: err = %v, want PERMISSION_DENIED", err)
	}
	// Node B learns from the shared store's revision; its poll interval is
	// PolicyPoll. Wait for it, bounded, and report how long it took.
	start := time.Now()
	deadline := start.Add(10 * time.Second)
	for {
		_, err := b.Query(asApproval(), licenceQuery(code))
		if apierr.CodeOf(err) == codes.PermissionDenied {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node B still serves 10s after the revocation (err %v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("node B denied %v after the revocation on node A (poll interval %v)", time.Since(start).Round(time.Millisecond), PolicyPoll)
}

// TestChangeEventEvictsAndNotifies follows a change at the department: the
// connector's change feed reaches the gateway, the cached copy is evicted
// (the next query is live and sees the change), and an enforcement platform
// subscribed over gRPC is notified under its own grant.
func TestChangeEventEvictsAndNotifies(t *testing.T) {
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

	var permit simulate.Permit
	for _, p := range deps.Data.Permits {
		if p.Status == "有效" && strings.HasPrefix(p.RegionCode, "1301") {
			permit = p
			break
		}
	}
	asEnforcement := metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer t-enforcement"))
	q := &v1.QueryRequest{Dataset: "approval.permits", Keys: map[string]string{"permit_id": permit.PermitID}, Purpose: "inspection"}
	for i, want := range []v1.Delivery{v1.Delivery_DELIVERY_LIVE, v1.Delivery_DELIVERY_CACHE} {
		resp, err := node.Query(asEnforcement, q)
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Records[0].GetProvenance().GetDelivery(); got != want {
			t.Fatalf("query %d: delivery %v, want %v", i, got, want)
		}
	}

	conn, err := grpc.NewClient(node.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	wctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer t-enforcement")
	stream, err := v1.NewGatewayClient(conn).WatchChanges(wctx, &v1.WatchChangesRequest{Datasets: []string{"approval.permits"}, Purpose: "inspection"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil { // subscribed: no later change is missed
		t.Fatal(err)
	}
	// The connector long-polls the department's feed from its latest
	// position; revoke until the change shows up (bounded).
	notices := make(chan *v1.ChangeNotice, 16)
	go func() {
		for {
			n, err := stream.Recv()
			if err != nil {
				close(notices)
				return
			}
			notices <- n
		}
	}()
	var notice *v1.ChangeNotice
	giveUp := time.After(45 * time.Second)
	for notice == nil {
		// Each revocation appends to the feed; repeat it in case the relay
		// had not yet reached the feed's end when the first was made.
		if _, err := deps.Approval.RevokePermit(permit.PermitID); err != nil {
			t.Fatal(err)
		}
		select {
		case notice = <-notices:
		case <-time.After(3 * time.Second):
		case <-giveUp:
			t.Fatal("no change notice within 45s of the revocation")
		}
	}
	if notice.GetRecordId() != permit.PermitID || notice.GetDataset() != "approval.permits" {
		t.Fatalf("notice = %v", notice)
	}
	// The node evicted its copy: the next query goes to the department and
	// sees the revocation.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := node.Query(asEnforcement, q)
		if err != nil {
			t.Fatal(err)
		}
		rec := resp.Records[0]
		if rec.GetProvenance().GetDelivery() == v1.Delivery_DELIVERY_LIVE {
			if st := rec.GetFields().GetFields()["status"].GetStringValue(); st != "撤销" {
				t.Fatalf("status after revocation = %q", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("cached copy still served 10s after the change notice")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func decodeSettings(raw []byte) (map[string]any, error) {
	var m map[string]any
	return m, yaml.Unmarshal(raw, &m)
}

// TestNewFailureStopsWhatItStarted checks that a node which cannot start
// returns the error (and releases the audit log it had opened).
func TestNewFailureStopsWhatItStarted(t *testing.T) {
	deps, err := simulate.Start(context.Background(), simulate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deps.Close() })
	cfg := nodeConfig(t, "node-x", deps)
	cfg.Departments.Connectors = append(cfg.Departments.Connectors, host.ConnectorConfig{
		Name: "ghost", Type: host.TypeExternal, Path: filepath.Join(t.TempDir(), "no-such-connector"), SHA256: strings.Repeat("0", 64),
	})
	if _, err := New(context.Background(), cfg, Options{Launcher: testLauncher}); err == nil {
		t.Fatal("New succeeded with a connector binary that does not exist")
	}
	// The audit log directory is free again: a node with a good config opens it.
	cfg.Departments.Connectors = cfg.Departments.Connectors[:len(cfg.Departments.Connectors)-1]
	a := startNode(t, cfg)
	if a.Log == nil {
		t.Fatal("no audit log")
	}
}
