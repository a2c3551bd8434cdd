// Package demo runs a complete exchange on one machine: the three simulated
// department systems, their connectors as plugin processes, a gateway node
// on the embedded defaults, demo identities with fixed tokens, and seeded
// grants. It prints a "try it" block of commands that work against it.
package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"gopkg.in/yaml.v3"

	"github.com/tongban/tongban/connectors/builtin"
	"github.com/tongban/tongban/connectors/host"
	"github.com/tongban/tongban/connectors/simulate"
	"github.com/tongban/tongban/gateway/app"
	"github.com/tongban/tongban/gateway/auth"
	"github.com/tongban/tongban/gateway/config"
	"github.com/tongban/tongban/policy"
)

// Options configure the demo.
type Options struct {
	// Dir holds the demo's grant store, audit log and keys.
	Dir string
	// RESTAddr and GRPCAddr are the gateway's listen addresses.
	RESTAddr, GRPCAddr string
	// Logger receives the logs of the gateway and the simulators.
	Logger *slog.Logger
	// Out receives the "try it" block.
	Out io.Writer
	// Launcher starts built-in connector types (default: this binary).
	Launcher host.Launcher
	// Ready, when set, is called once the gateway listens.
	Ready func(*Demo)
}

// Demo is a running demo.
type Demo struct {
	App         *app.App
	Departments *simulate.Departments
	Enterprise  simulate.Enterprise
	Person      simulate.Person
	RESTURL     string
}

// Identity is a demo caller with a fixed token.
type Identity struct {
	Token string
	config.Identity
}

// Identities returns the demo identities. Their tokens are fixed and
// public, which is why `tongban serve` refuses them.
func Identities(subject string) []Identity {
	return []Identity{
		{"demo-approval-bureau", config.Identity{SystemID: "approval-bureau", Department: "approval", Region: "130100"}},
		{"demo-enforcement", config.Identity{SystemID: "enforcement-platform", Department: "enforcement", Region: "130100"}},
		{"demo-admin", config.Identity{SystemID: "admin-li", Department: "data-bureau", Roles: []string{auth.RoleAdmin}}},
		{"demo-admin-2", config.Identity{SystemID: "admin-zhao", Department: "data-bureau", Roles: []string{auth.RoleAdmin}}},
		{"demo-reviewer", config.Identity{SystemID: "reviewer-chen", Department: "justice", Roles: []string{auth.RoleLegalReviewer}}},
		{"demo-auditor", config.Identity{SystemID: "auditor-sun", Department: "audit", Roles: []string{auth.RoleAuditor}}},
		{"demo-subject", config.Identity{SystemID: "subject-" + subject[len(subject)-4:], Roles: []string{auth.RoleSubject}, Subject: subject}},
	}
}

// Tokens returns the fixed tokens of the demo identities, which `tongban
// serve` refuses.
func Tokens() []string {
	var out []string
	for _, id := range Identities("0000") { // the subject only names one identity
		out = append(out, id.Token)
	}
	return out
}

// Config returns the gateway configuration of the demo for simulators at
// the given base URLs.
func Config(dir string, deps *simulate.Departments, subject string) (config.Config, error) {
	cfg := config.Default()
	cfg.Node = "demo-node"
	cfg.Store.Path = filepath.Join(dir, "grants.db")
	cfg.Audit.Dir = filepath.Join(dir, "audit")
	cfg.Audit.SigningKeyFile = filepath.Join(dir, "audit.key")
	cfg.Audit.SubjectKeyFile = filepath.Join(dir, "subject.key")
	cfg.Forms.CorrectionsPath = filepath.Join(dir, "corrections.db")
	for _, id := range Identities(subject) {
		id.Identity.TokenSHA256 = auth.Digest(id.Token)
		cfg.Identities = append(cfg.Identities, id.Identity)
	}
	vars := map[string]string{"MARKET_URL": deps.MarketURL, "APPROVAL_URL": deps.ApprovalURL, "RESOURCES_URL": deps.ResourcesURL}
	for _, dep := range builtin.DemoDepartments() {
		typ, raw, err := builtin.DemoSettings(dep, vars)
		if err != nil {
			return cfg, err
		}
		var settings map[string]any
		if err := yaml.Unmarshal(raw, &settings); err != nil {
			return cfg, fmt.Errorf("demo connector %s: %w", dep, err)
		}
		cfg.Departments.Connectors = append(cfg.Departments.Connectors, host.ConnectorConfig{Name: dep, Type: typ, Settings: settings})
	}
	return cfg, cfg.Validate()
}

// Start starts the simulators and the gateway and binds its listeners.
func Start(ctx context.Context, opts Options) (*Demo, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("creating the demo directory: %w", err)
	}
	deps, err := simulate.Start(ctx, simulate.Config{Logger: opts.Logger.With("component", "simulator")})
	if err != nil {
		return nil, fmt.Errorf("starting the simulated departments: %w", err)
	}
	d := &Demo{Departments: deps, Enterprise: deps.Data.SampleEnterprise(), Person: deps.Data.SamplePerson()}
	cfg, err := Config(opts.Dir, deps, d.Person.ResidentID)
	if err != nil {
		deps.Close()
		return nil, err
	}
	if opts.RESTAddr != "" {
		cfg.Server.RESTAddr = opts.RESTAddr
	}
	if opts.GRPCAddr != "" {
		cfg.Server.GRPCAddr = opts.GRPCAddr
	}
	d.App, err = app.New(ctx, cfg, app.Options{Logger: opts.Logger, Launcher: opts.Launcher, SeedGrants: policy.DemoGrants})
	if err != nil {
		deps.Close()
		return nil, err
	}
	if err := d.App.Listen(); err != nil {
		d.Close()
		return nil, err
	}
	d.RESTURL = "http://" + d.App.RESTAddr()
	return d, nil
}

// Close stops the gateway and the simulators.
func (d *Demo) Close() {
	if d.App != nil {
		d.App.Close()
	}
	d.Departments.Close()
}

// Run starts the demo, prints the "try it" block, and serves until ctx ends.
func Run(ctx context.Context, opts Options) error {
	d, err := Start(ctx, opts)
	if err != nil {
		return err
	}
	defer d.Close()
	if opts.Out != nil {
		if err := d.PrintTryIt(opts.Out); err != nil {
			return err
		}
	}
	if opts.Ready != nil {
		opts.Ready(d)
	}
	return d.App.Serve(ctx)
}

// PrintTryIt writes the commands that work against this demo.
func (d *Demo) PrintTryIt(w io.Writer) error {
	return tryIt.Execute(w, map[string]any{
		"URL":        d.RESTURL,
		"GRPC":       d.App.GRPCAddr(),
		"Enterprise": d.Enterprise,
		"Person":     d.Person,
		"Bad":        corrupt(d.Enterprise.CreditCode),
		"VKey":       d.App.VerifierKey,
	})
}

// corrupt changes the check character of a credit code.
func corrupt(code string) string {
	last := code[len(code)-1]
	repl := byte('0')
	if last == '0' {
		repl = '1'
	}
	return code[:len(code)-1] + string(repl)
}

var tryIt = template.Must(template.New("tryit").Funcs(template.FuncMap{"upper": strings.ToUpper}).Parse(`
Tongban demo is running: gateway {{.URL}} (REST), {{.GRPC}} (gRPC), three simulated departments.
Demo tokens: demo-approval-bureau, demo-enforcement, demo-admin, demo-admin-2, demo-reviewer, demo-auditor, demo-subject.

Try it:

  # The public catalogue (公示): datasets, fields, active grants and their legal basis. No token.
  curl -s {{.URL}}/v1/catalogue

  # The approval bureau reads the business licence of {{.Enterprise.Name}}.
  curl -s -H 'Authorization: Bearer demo-approval-bureau' -X POST \
    {{.URL}}/v1/datasets/market.business_licences:query \
    -d '{"keys": {"credit_code": "{{.Enterprise.CreditCode}}"}, "purpose": "approval"}'

  # The enforcement platform reads the permits of {{.Person.Name}} ({{.Person.ResidentID}}): personal fields masked.
  curl -s -H 'Authorization: Bearer demo-enforcement' -X POST \
    {{.URL}}/v1/datasets/approval.permits:query \
    -d '{"keys": {"applicant_id": "{{.Person.ResidentID}}"}, "purpose": "inspection"}'

  # Land parcels held by {{.Enterprise.Name}}.
  curl -s -H 'Authorization: Bearer demo-approval-bureau' -X POST \
    {{.URL}}/v1/datasets/resources.parcels:query \
    -d '{"keys": {"holder_id": "{{.Enterprise.CreditCode}}"}, "purpose": "approval", "fields": ["parcel_id", "address", "land_use", "area_sqm"]}'

  # A wrong check character gets 400 naming the field; no token gets 401; no grant gets 403.
  curl -s -H 'Authorization: Bearer demo-approval-bureau' -X POST \
    {{.URL}}/v1/datasets/market.business_licences:query -d '{"keys": {"credit_code": "{{.Bad}}"}, "purpose": "approval"}'
  curl -s -X POST {{.URL}}/v1/datasets/market.business_licences:query -d '{"keys": {"credit_code": "{{.Enterprise.CreditCode}}"}, "purpose": "approval"}'
  curl -s -H 'Authorization: Bearer demo-approval-bureau' -X POST \
    {{.URL}}/v1/datasets/market.enterprises:query -d '{"keys": {"credit_code": "{{.Enterprise.CreditCode}}"}, "purpose": "approval"}'

  # Auto-fill: the food business licence application of {{.Enterprise.Name}}, and a one-thing bundle.
  tongban autofill food_business_licence --applicant {{.Enterprise.CreditCode}} --token demo-approval-bureau --url {{.URL}}
  tongban autofill open_restaurant --bundle --applicant {{.Enterprise.CreditCode}} --token demo-approval-bureau --url {{.URL}}
  curl -s -H 'Authorization: Bearer demo-approval-bureau' -X POST \
    {{.URL}}/v1/forms/tour_guide_certificate:autofill -d '{"applicant_id": "{{.Person.ResidentID}}"}'

  # Parcels as OGC API – Features for GIS tools (GDAL, QGIS), the caller's policy applied.
  curl -s -H 'Authorization: Bearer demo-approval-bureau' '{{.URL}}/ogc/collections/resources.parcels/items?bbox=114.40,37.98,114.45,38.02&limit=2'
  GDAL_HTTP_HEADERS='Authorization: Bearer demo-approval-bureau' ogrinfo -ro -so OAPIF:{{.URL}}/ogc resources.parcels \
    -spat 114.40 37.98 114.45 38.02

  # Permit changes, as Server-Sent Events, for the enforcement platform.
  curl -sN -H 'Authorization: Bearer demo-enforcement' '{{.URL}}/v1/changes/events?datasets=approval.permits&purpose=inspection'

  # Every exchange is in the signed, append-only audit log; {{.Person.Name}} sees who read their data.
  curl -s {{.URL}}/v1/audit/checkpoint
  curl -s -H 'Authorization: Bearer demo-subject' {{.URL}}/v1/subjects/{{.Person.ResidentID}}/accesses
  curl -s {{.URL}}/v1/transparency/stats

  # Grants, with legal review of major datasets (run from another terminal).
  tongban grants list --token demo-auditor --url {{.URL}}
  tongban grants propose --token demo-admin --url {{.URL}} --dataset market.enterprises \
    --system approval-bureau --fields credit_code,name,industry_name,employees --purpose approval \
    --legal-basis '《优化营商环境条例》第三十五条' --jurisdiction 1301
  tongban grants review ID --token demo-reviewer --url {{.URL}} --approve --opinion '符合最小必要原则，同意共享'

  # Connector state, metrics, the OpenAPI document, gRPC reflection.
  curl -s -H 'Authorization: Bearer demo-auditor' {{.URL}}/v1/connectors
  curl -s {{.URL}}/openapi.json | head
  grpcurl -plaintext {{.GRPC}} list

Audit verifier key: {{.VKey}}
Stop with Ctrl-C.
`))
