package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tongban/tongban/connectors/builtin"
	"github.com/tongban/tongban/connectors/simulate"
	"github.com/tongban/tongban/gateway/config"
)

// cmdSimulate runs the three simulated department systems on loopback until
// ctx ends (SIGINT or SIGTERM), for gateway nodes started separately with
// `tongban serve` (make multinode, the compose file). It prints the base URLs
// and a sample enterprise and person as KEY=VALUE lines, and can write them,
// and the connector configuration a gateway needs to reach the simulators,
// to files.
func cmdSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("simulate", "simulate [--market-port N] [--approval-port N] [--resources-port N] [--env-file FILE] [--connectors-file FILE]", stderr)
	marketPort := fs.Int("market-port", 0, "market regulation bureau (REST/JSON) port on 127.0.0.1; 0 picks a free port")
	approvalPort := fs.Int("approval-port", 0, "administrative approval bureau (REST/JSON) port on 127.0.0.1; 0 picks a free port")
	resourcesPort := fs.Int("resources-port", 0, "natural resources bureau (OGC API - Features) port on 127.0.0.1; 0 picks a free port")
	seed := fs.Uint64("seed", simulate.DefaultSeed, "seed of the generated data")
	latency := fs.Duration("latency", 0, "latency added to every department request")
	jitter := fs.Duration("jitter", 0, "upper bound of a random extra delay per request")
	failureRate := fs.Float64("failure-rate", 0, "share of requests, 0 to 1, answered with 503")
	envFile := fs.String("env-file", "", "write the KEY=VALUE lines to this file once the departments listen (atomically)")
	connectorsFile := fs.String("connectors-file", "", "write a gateway configuration fragment (departments.connectors) for these departments to this file")
	level := fs.String("log-level", "warn", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	log := newLogger(config.Log{Level: *level, Format: "text"}, stderr)

	deps, err := simulate.Start(ctx, simulate.Config{
		Seed:          *seed,
		MarketPort:    *marketPort,
		ApprovalPort:  *approvalPort,
		ResourcesPort: *resourcesPort,
		Faults:        simulate.Faults{Latency: *latency, Jitter: *jitter, FailureRate: *failureRate},
		Logger:        log.With("component", "simulator"),
	})
	if err != nil {
		return err
	}
	defer deps.Close()

	env := simulatorEnv(deps)
	if *connectorsFile != "" {
		fragment, err := simulatorConnectors(deps)
		if err != nil {
			return err
		}
		if err := writeFileAtomic(*connectorsFile, fragment); err != nil {
			return err
		}
	}
	// The env file is written last: a script waiting for it finds the
	// connectors file complete too.
	if *envFile != "" {
		if err := writeFileAtomic(*envFile, env); err != nil {
			return err
		}
	}
	if _, err := stdout.Write(env); err != nil {
		return fmt.Errorf("writing the base URLs: %w", err)
	}
	fmt.Fprintln(stderr, "tongban simulate: three simulated departments running; stop with Ctrl-C")
	<-ctx.Done()
	log.Info("stopping the simulated departments")
	return deps.Close()
}

// simulatorEnv returns the base URLs of the departments, two sample
// enterprises and a sample person that have data in all of them, as
// KEY=VALUE lines that a shell can source.
func simulatorEnv(deps *simulate.Departments) []byte {
	ent, person := deps.Data.SampleEnterprise(), deps.Data.SamplePerson()
	other := ent
	if s := deps.Data.SampleEnterprises(2); len(s) == 2 {
		other = s[1]
	}
	var b bytes.Buffer
	for _, kv := range [][2]string{
		{"MARKET_URL", deps.MarketURL},
		{"APPROVAL_URL", deps.ApprovalURL},
		{"RESOURCES_URL", deps.ResourcesURL},
		{"SAMPLE_CREDIT_CODE", ent.CreditCode},
		{"OTHER_CREDIT_CODE", other.CreditCode},
		{"SAMPLE_RESIDENT_ID", person.ResidentID},
	} {
		fmt.Fprintf(&b, "%s=%s\n", kv[0], kv[1])
	}
	return b.Bytes()
}

// simulatorConnectors returns a gateway configuration fragment with one
// connector per simulated department, the same definitions `tongban demo`
// uses (builtin.DemoSettings), pointing at deps.
func simulatorConnectors(deps *simulate.Departments) ([]byte, error) {
	type connector struct {
		Name     string    `yaml:"name"`
		Type     string    `yaml:"type"`
		Settings yaml.Node `yaml:"settings"`
	}
	var doc struct {
		Departments struct {
			Connectors []connector `yaml:"connectors"`
		} `yaml:"departments"`
	}
	vars := map[string]string{"MARKET_URL": deps.MarketURL, "APPROVAL_URL": deps.ApprovalURL, "RESOURCES_URL": deps.ResourcesURL}
	for _, dep := range builtin.DemoDepartments() {
		typ, raw, err := builtin.DemoSettings(dep, vars)
		if err != nil {
			return nil, err
		}
		var n yaml.Node
		if err := yaml.Unmarshal(raw, &n); err != nil {
			return nil, fmt.Errorf("connector %s: decoding settings: %w", dep, err)
		}
		if n.Kind != yaml.DocumentNode || len(n.Content) != 1 {
			return nil, fmt.Errorf("connector %s: settings are not one YAML document", dep)
		}
		doc.Departments.Connectors = append(doc.Departments.Connectors, connector{Name: dep, Type: typ, Settings: *n.Content[0]})
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Connectors of the simulated departments started by `tongban simulate` at %s.\n", time.Now().UTC().Format(time.RFC3339))
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("encoding the connectors: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding the connectors: %w", err)
	}
	return b.Bytes(), nil
}

// writeFileAtomic writes b to path through a temporary file in the same
// directory, so that a reader never sees a partial file.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
