package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tongban/tongban/connectors/simulate"
	"github.com/tongban/tongban/gateway/config"
)

// TestSimulateCommand runs `tongban simulate` in process, checks the files it
// writes (the KEY=VALUE lines and a connectors fragment that a gateway
// configuration accepts), calls each department, and stops it by cancelling
// its context as SIGTERM would.
func TestSimulateCommand(t *testing.T) {
	dir := t.TempDir()
	envFile := filepath.Join(dir, "sim.env")
	connFile := filepath.Join(dir, "connectors.yaml")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- cmdSimulate(ctx, []string{"--env-file", envFile, "--connectors-file", connFile}, &stdout, &stderr)
	}()

	var env []byte
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		b, err := os.ReadFile(envFile)
		if err == nil {
			env = b
			break
		}
		select {
		case err := <-done:
			t.Fatalf("simulate ended early: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) || i > 3000 {
			t.Fatalf("no env file after 30s: %v\n%s", err, stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(env))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			t.Fatalf("env line %q is not KEY=VALUE", sc.Text())
		}
		vars[k] = v
	}
	data := simulate.Generate(simulate.DefaultSeed)
	tests := []struct {
		key, want string
	}{
		{"SAMPLE_CREDIT_CODE", data.SampleEnterprise().CreditCode},
		{"SAMPLE_RESIDENT_ID", data.SamplePerson().ResidentID},
		{"OTHER_CREDIT_CODE", data.SampleEnterprises(2)[1].CreditCode},
	}
	for _, tc := range tests {
		if vars[tc.key] != tc.want {
			t.Errorf("%s = %q, want %q", tc.key, vars[tc.key], tc.want)
		}
	}

	health := []struct {
		name, url string
	}{
		{"market", vars["MARKET_URL"] + "/api/v1/health"},
		{"approval", vars["APPROVAL_URL"] + "/api/health"},
		{"resources", vars["RESOURCES_URL"] + "/"},
	}
	for _, h := range health {
		t.Run(h.name, func(t *testing.T) {
			if !strings.HasPrefix(h.url, "http://127.0.0.1:") {
				t.Fatalf("URL %q is not on loopback", h.url)
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: HTTP %d", h.url, resp.StatusCode)
			}
		})
	}

	// The fragment completes a gateway configuration.
	frag, err := os.ReadFile(connFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	if err := config.Decode(frag, &cfg); err != nil {
		t.Fatalf("connectors fragment: %v\n%s", err, frag)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("configuration with the fragment: %v", err)
	}
	names := map[string]string{}
	for _, c := range cfg.Departments.Connectors {
		names[c.Name] = c.Type
		if u, _ := c.Settings["base_url"].(string); !strings.HasPrefix(u, "http://127.0.0.1:") {
			t.Errorf("connector %s base_url %q", c.Name, u)
		}
	}
	if names["market"] != "rest" || names["approval"] != "rest" || names["resources"] != "ogcfeatures" {
		t.Errorf("connectors = %v", names)
	}
	if !bytes.Equal(stdout.Bytes(), env) {
		t.Errorf("stdout %q differs from the env file %q", stdout.String(), env)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("simulate: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("simulate did not stop within 30s of cancellation")
	}
}

func TestSimulateCommandUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"positional argument", []string{"extra"}},
		{"bad port", []string{"--market-port", "70000"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr lockedBuffer
			err := cmdSimulate(context.Background(), tc.args, &stdout, &stderr)
			if err == nil {
				t.Fatal("no error")
			}
			var ue usageError
			if tc.name == "positional argument" && !errors.As(err, &ue) {
				t.Errorf("err = %v, want a usage error", err)
			}
		})
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Bytes returns a copy of what was written.
func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func (b *lockedBuffer) String() string { return string(b.Bytes()) }
