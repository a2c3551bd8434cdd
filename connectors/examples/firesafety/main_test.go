package main

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/tongban/tongban/connectors/connectortest"
	"github.com/tongban/tongban/connectors/host"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// opts names a record the registry holds.
var opts = connectortest.Options{
	Dataset: dataset,
	Key:     map[string]string{keyField: "SJZ-XF-2024-0003"},
}

func newTestRegistry(t *testing.T) *Registry {
	t.Helper()
	r, err := NewRegistry(inspectionsCSV, Settings{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The conformance suite, in process over gRPC: fast, no binary needed.
func TestConformanceInProcess(t *testing.T) {
	connectortest.Run(t, connectortest.InProcess(t, newTestRegistry(t)), opts)
}

func TestFilterAndPaging(t *testing.T) {
	r := newTestRegistry(t)
	filter := map[string]string{"credit_code": "91130102MA07T2QL4Y"}
	var got []string
	token := ""
	for range 10 { // bounded: two pages expected
		resp, err := r.Fetch(t.Context(), &v1.FetchRequest{Dataset: dataset, Filter: filter, PageSize: 1, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range resp.GetRecords() {
			got = append(got, rec.GetId())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if len(got) != 2 || got[0] != "SJZ-XF-2024-0001" || got[1] != "SJZ-XF-2024-0006" {
		t.Errorf("pages = %v", got)
	}
	for _, tc := range []struct {
		name string
		req  *v1.FetchRequest
		code codes.Code
	}{
		{"no key or filter", &v1.FetchRequest{Dataset: dataset}, codes.InvalidArgument},
		{"unknown filter field", &v1.FetchRequest{Dataset: dataset, Filter: map[string]string{"owner": "x"}}, codes.InvalidArgument},
		{"bad page token", &v1.FetchRequest{Dataset: dataset, Filter: filter, PageToken: "x"}, codes.InvalidArgument},
		{"bbox", &v1.FetchRequest{Dataset: dataset, Bbox: &v1.BBox{}}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := r.Fetch(t.Context(), tc.req); apierr.CodeOf(err) != tc.code {
				t.Errorf("error = %v, want %v", err, tc.code)
			}
		})
	}
}

// TestAsExternalPlugin is what a department's CI does: build the binary,
// pin its digest, let the gateway's host launch it, and run the suite
// against it as the gateway reaches it.
func TestAsExternalPlugin(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "firesafety")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)

	h, err := host.New(host.Config{Connectors: []host.ConnectorConfig{{
		Name:     "fire",
		Type:     host.TypeExternal,
		Path:     bin,
		SHA256:   hex.EncodeToString(sum[:]),
		Settings: map[string]any{"region_prefix": "1301"},
	}}}, host.Options{Logger: slog.New(slog.DiscardHandler), PluginLogLevel: slog.LevelWarn})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })

	resp, src, err := h.Fetch(t.Context(), &v1.FetchRequest{Dataset: dataset, Keys: opts.Key})
	if err != nil {
		t.Fatal(err)
	}
	if src.Department != department || src.Connector != "fire" || len(resp.GetRecords()) != 1 {
		t.Errorf("Fetch = %v from %+v", resp, src)
	}
	c, err := h.Connector("fire")
	if err != nil {
		t.Fatal(err)
	}
	connectortest.Run(t, c, opts)
}
