package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"gopkg.in/yaml.v3"

	"github.com/tongban/tongban/connectors/connectortest"
	"github.com/tongban/tongban/connectors/sdk"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

func TestConfigYAMLAndDefaults(t *testing.T) {
	const doc = `
health_interval: 10s
connectors:
  - name: market
    type: rest
    call_timeout: 2s
    settings:
      base_url: http://127.0.0.1:8081
      datasets:
        business_licences: {path: "/licences/{credit_code}"}
    breaker: {consecutive_failures: 3, timeout: 15s}
  - name: fire
    type: external
    path: /opt/fire/connector
    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
`
	var cfg Config
	if err := yaml.Unmarshal([]byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	m := cfg.Connectors[0]
	if cfg.HealthInterval != 10*time.Second || m.CallTimeout != 2*time.Second || m.Breaker.ConsecutiveFailures != 3 ||
		m.Breaker.Timeout != 15*time.Second || m.Breaker.HalfOpenMaxRequests != DefaultHalfOpenMaxRequests ||
		m.MaxConcurrent != DefaultMaxConcurrent || m.Retries.Attempts != DefaultAttempts || cfg.StatusWindow != DefaultStatusWindow {
		t.Errorf("decoded and defaulted config = %+v", cfg)
	}
	h := &Host{cfg: cfg, opts: quietOptions()}
	c := &connector{h: h, cfg: m}
	cmd, err := c.command()
	if err != nil {
		t.Fatal(err)
	}
	want := sdk.EnvConfig + `={"base_url":"http://127.0.0.1:8081","datasets":{"business_licences":{"path":"/licences/{credit_code}"}}}`
	if !slices.Contains(cmd.Env, want) || !slices.Contains(cmd.Env, sdk.EnvName+"=market") {
		t.Errorf("plugin environment lacks %s and the name", want)
	}
}

func TestConfigValidate(t *testing.T) {
	good := func() Config {
		return Config{Connectors: []ConnectorConfig{{Name: "market", Type: TypeREST}}}
	}
	tests := []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"good", func(*Config) {}, ""},
		{"no name", func(c *Config) { c.Connectors[0].Name = "" }, "connectors[0].name: is required"},
		{"bad name", func(c *Config) { c.Connectors[0].Name = "Market Bureau" }, "connectors[0].name:"},
		{"duplicate", func(c *Config) { c.Connectors = append(c.Connectors, c.Connectors[0]) }, "connectors[1].name: \"market\" is also the name of connectors[0]"},
		{"no type", func(c *Config) { c.Connectors[0].Type = "" }, "connectors[0].type: is required"},
		{"unknown type", func(c *Config) { c.Connectors[0].Type = "soap" }, `connectors[0].type: unknown type "soap"`},
		{"external without path", func(c *Config) {
			c.Connectors[0].Type = TypeExternal
			c.Connectors[0].SHA256 = strings.Repeat("ab", 32)
		}, "connectors[0].path: is required"},
		{"external bad digest", func(c *Config) {
			c.Connectors[0].Type = TypeExternal
			c.Connectors[0].Path = "/bin/x"
			c.Connectors[0].SHA256 = "abc"
		}, "connectors[0].sha256: must be the 64 hex digits"},
		{"builtin with path", func(c *Config) { c.Connectors[0].Path = "/bin/x" }, "connectors[0].path: only an external"},
		{"negative timeout", func(c *Config) { c.Connectors[0].CallTimeout = -time.Second }, "connectors[0].call_timeout: must be positive"},
		{"negative concurrency", func(c *Config) { c.Connectors[0].MaxConcurrent = -1 }, "connectors[0].max_concurrent: must be at least 1"},
		{"negative attempts", func(c *Config) { c.Connectors[0].Retries.Attempts = -2 }, "connectors[0].retries.attempts: must be at least 1"},
		{"backoff inverted", func(c *Config) {
			c.Connectors[0].RestartBackoff = Backoff{Min: time.Second, Max: time.Millisecond}
		}, "connectors[0].restart_backoff.max: must not be less than"},
		{"negative interval", func(c *Config) { c.Connectors[0].Breaker.Interval = -time.Second }, "connectors[0].breaker.interval: must not be negative"},
		{"negative health interval", func(c *Config) { c.HealthInterval = -time.Second }, "health_interval: must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good()
			tc.modify(&cfg)
			cfg.SetDefaults()
			err := cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestRoutingStatusAndConformance(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")) // see testLauncher
	ext := builtin("water", helperSettings{Department: "water"})
	ext.Type, ext.Path, ext.SHA256 = TypeExternal, exe, fileSHA256(t, exe)
	reg := prometheus.NewRegistry()
	opts := quietOptions()
	opts.Registerer = reg
	h, err := New(Config{Connectors: []ConnectorConfig{builtin("fire", helperSettings{Department: "fire"}), ext}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })

	var names []string
	for _, ds := range h.Datasets() {
		names = append(names, ds.GetName())
	}
	if !slices.Equal(names, []string{"fire.items", "water.items"}) {
		t.Errorf("Datasets = %v", names)
	}
	for _, tc := range []struct{ dataset, department, connector string }{
		{"fire.items", "fire", "fire"},
		{"water.items", "water", "water"},
	} {
		resp, src, err := h.Fetch(t.Context(), &v1.FetchRequest{Dataset: tc.dataset, Keys: map[string]string{"id": "ok"}})
		if err != nil {
			t.Fatalf("Fetch %s: %v", tc.dataset, err)
		}
		if src.Department != tc.department || src.Connector != tc.connector || src.DepartmentName == "" {
			t.Errorf("Fetch %s: source = %+v", tc.dataset, src)
		}
		if got := resp.GetRecords()[0].GetFields().GetFields()["id"].GetStringValue(); got != "ok" {
			t.Errorf("Fetch %s: id = %q", tc.dataset, got)
		}
	}
	_, _, err = h.Fetch(t.Context(), &v1.FetchRequest{Dataset: "nosuch.items"})
	wantErr(t, err, codes.NotFound, apierr.ReasonUnknownDataset, "")

	_, err = fetch(t, h, "fire.items", "missing")
	wantErr(t, err, codes.NotFound, apierr.ReasonNotFound, "fire")

	st := statusOf(h, "fire")
	if st.GetProcess() != StateRunning || st.GetHealth() != "ok" || st.GetBreaker() != "closed" ||
		st.GetDepartment() != "fire" || st.GetType() != TypeREST || st.GetCalls() != 2 || st.GetErrorRate() != 0 ||
		!slices.Equal(st.GetDatasets(), []string{"fire.items"}) || st.GetLatencyP99().AsDuration() <= 0 {
		t.Errorf("status = %v", st)
	}
	if got := testutil.ToFloat64(h.metrics.calls.WithLabelValues("fire", "fire.items", "not_found")); got != 1 {
		t.Errorf("not_found calls metric = %v, want 1", got)
	}
	if n, err := testutil.GatherAndCount(reg, "tongban_connector_calls_total", "tongban_connector_up"); err != nil || n != 5 {
		t.Errorf("gathered %d series (%v), want 3 call series and 2 up series", n, err)
	}

	for _, name := range []string{"fire", "water"} {
		t.Run("conformance "+name, func(t *testing.T) {
			c, err := h.Connector(name)
			if err != nil {
				t.Fatal(err)
			}
			connectortest.Run(t, c, connectortest.Options{Dataset: name + ".items", Key: map[string]string{"id": "ok"}})
		})
	}
}

func TestChecksumMismatchIsRefused(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	wrong := strings.Repeat("0", 64)
	cc := builtin("water", helperSettings{})
	cc.Type, cc.Path, cc.SHA256 = TypeExternal, exe, wrong
	h, err := New(Config{Connectors: []ConnectorConfig{cc}}, quietOptions())
	if err != nil {
		t.Fatal(err)
	}
	err = h.Start(t.Context())
	t.Cleanup(func() { _ = h.Close() })
	if !errors.Is(err, ErrChecksumMismatch) {
		t.Fatalf("Start = %v, want ErrChecksumMismatch", err)
	}
	for _, part := range []string{exe, "expected sha256 " + wrong, "actual sha256 " + fileSHA256(t, exe)} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not contain %q", err, part)
		}
	}
	if st := statusOf(h, "water"); st.GetProcess() != StateStopped || !strings.Contains(st.GetLastError(), "checksum") {
		t.Errorf("status after refusal = %v", st)
	}
}

func TestVersionMismatchIsRefused(t *testing.T) {
	h, err := New(Config{Connectors: []ConnectorConfig{builtin("future", helperSettings{Version: 2})}}, quietOptions())
	if err != nil {
		t.Fatal(err)
	}
	err = h.Start(t.Context())
	t.Cleanup(func() { _ = h.Close() })
	want := `connector "future" speaks connector protocol 2, this gateway speaks 1`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Start = %v, want an error containing %q", err, want)
	}
	if apierr.ReasonOf(err) != apierr.ReasonProtocolMismatch {
		t.Errorf("reason = %q, want %s", apierr.ReasonOf(err), apierr.ReasonProtocolMismatch)
	}
}

func TestCrashMidRequestRestarts(t *testing.T) {
	h := startHost(t, Config{Connectors: []ConnectorConfig{builtin("fire", helperSettings{Department: "fire"})}})
	before, err := fetch(t, h, "fire.items", "ok")
	if err != nil {
		t.Fatal(err)
	}
	_, err = fetch(t, h, "fire.items", "crash")
	wantErr(t, err, codes.Unavailable, apierr.ReasonDepartmentDown, "fire")

	eventually(t, "the plugin to restart", func() bool {
		return testutil.ToFloat64(h.metrics.restarts.WithLabelValues("fire")) == 1 && statusOf(h, "fire").GetProcess() == StateRunning
	})
	after, err := fetch(t, h, "fire.items", "ok")
	if err != nil {
		t.Fatalf("fetch after restart: %v", err)
	}
	if intField(t, before, "pid") == intField(t, after, "pid") {
		t.Error("the record after the restart came from the same process")
	}
}

func TestHangPastDeadline(t *testing.T) {
	cc := builtin("fire", helperSettings{Department: "fire"})
	cc.CallTimeout = 300 * time.Millisecond
	cc.MaxConcurrent = 1
	h := startHost(t, Config{Connectors: []ConnectorConfig{cc}})

	_, err := fetch(t, h, "fire.items", "hang")
	wantErr(t, err, codes.DeadlineExceeded, apierr.ReasonDeadlineExceeded, "fire")
	if got := testutil.ToFloat64(h.metrics.inFlight.WithLabelValues("fire")); got != 0 {
		t.Errorf("in-flight after the deadline = %v, want 0", got)
	}
	// The only bulkhead slot was released: the next call gets through.
	if _, err := fetch(t, h, "fire.items", "ok"); err != nil {
		t.Fatalf("fetch after a hung call: %v", err)
	}
	// A caller's earlier deadline wins over CallTimeout.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, _, err = h.Fetch(ctx, &v1.FetchRequest{Dataset: "fire.items", Keys: map[string]string{"id": "hang"}})
	wantErr(t, err, codes.DeadlineExceeded, apierr.ReasonDeadlineExceeded, "fire")
	if st := statusOf(h, "fire"); st.GetBreaker() != "closed" || st.GetCalls() != 3 {
		t.Errorf("status = %v", st)
	}
}

func TestBreakerOpensAndRecovers(t *testing.T) {
	control := filepath.Join(t.TempDir(), "control")
	setDown := func(down bool) {
		s := "up"
		if down {
			s = "down"
		}
		if err := os.WriteFile(control, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	setDown(false)
	cc := builtin("fire", helperSettings{Department: "fire", Control: control})
	cc.Breaker = BreakerConfig{ConsecutiveFailures: 3, Timeout: 300 * time.Millisecond, HalfOpenMaxRequests: 1}
	h := startHost(t, Config{Connectors: []ConnectorConfig{cc}})

	// Answers that are not department failures never open the breaker.
	for range 5 {
		_, err := fetch(t, h, "fire.items", "missing")
		wantErr(t, err, codes.NotFound, apierr.ReasonNotFound, "fire")
		_, err = fetch(t, h, "fire.items", "bad")
		wantErr(t, err, codes.InvalidArgument, apierr.ReasonInvalidArgument, "")
	}
	if st := statusOf(h, "fire"); st.GetBreaker() != "closed" || st.GetErrorRate() != 0 {
		t.Fatalf("status after NotFound/InvalidArgument = %v", st)
	}

	setDown(true)
	for range 3 {
		_, err := fetch(t, h, "fire.items", "ok")
		wantErr(t, err, codes.Unavailable, apierr.ReasonDepartmentDown, "fire")
	}
	if got := statusOf(h, "fire").GetBreaker(); got != "open" {
		t.Fatalf("breaker after 3 failures = %s, want open", got)
	}
	if got := testutil.ToFloat64(h.metrics.breaker.WithLabelValues("fire")); got != 2 {
		t.Errorf("breaker gauge = %v, want 2 (open)", got)
	}
	for range 5 {
		_, err := fetch(t, h, "fire.items", "ok")
		wantErr(t, err, codes.Unavailable, apierr.ReasonBreakerOpen, "fire")
	}

	setDown(false)
	eventually(t, "the breaker to half-open", func() bool { return statusOf(h, "fire").GetBreaker() == "half-open" })
	resp, err := fetch(t, h, "fire.items", "ok")
	if err != nil {
		t.Fatalf("probe through the half-open breaker: %v", err)
	}
	// 10 answers + 3 failures + this probe reached the plugin; the 5 calls
	// while open failed fast without reaching it.
	if got := intField(t, resp, "fetches"); got != 14 {
		t.Errorf("plugin saw %d fetches, want 14", got)
	}
	if got := statusOf(h, "fire").GetBreaker(); got != "closed" {
		t.Errorf("breaker after a successful probe = %s, want closed", got)
	}
}

// A query too broad for the connector's limits is the caller's to narrow: it
// neither opens the breaker nor counts in the error rate.
func TestTooBroadQueryIsNotADepartmentFailure(t *testing.T) {
	cc := builtin("fire", helperSettings{Department: "fire"})
	cc.Breaker = BreakerConfig{ConsecutiveFailures: 2, Timeout: time.Hour, HalfOpenMaxRequests: 1}
	h := startHost(t, Config{Connectors: []ConnectorConfig{cc}})
	for range 4 {
		_, err := fetch(t, h, "fire.items", "toomany")
		wantErr(t, err, codes.ResourceExhausted, apierr.ReasonResponseTooLarge, "fire")
	}
	if st := statusOf(h, "fire"); st.GetBreaker() != "closed" || st.GetErrorRate() != 0 {
		t.Fatalf("status after too-broad queries = %v", st)
	}
	if _, err := fetch(t, h, "fire.items", "ok"); err != nil {
		t.Fatalf("fetch after too-broad queries: %v", err)
	}
}

func TestBulkheadLimitsConcurrency(t *testing.T) {
	cc := builtin("fire", helperSettings{Department: "fire"})
	cc.MaxConcurrent = 2
	h := startHost(t, Config{Connectors: []ConnectorConfig{cc}})

	const calls = 6
	var wg sync.WaitGroup
	results := make([]int, calls)
	errs := make([]error, calls)
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _, err := h.Fetch(t.Context(), &v1.FetchRequest{Dataset: "fire.items", Keys: map[string]string{"id": "slow"}})
			errs[i] = err
			if err == nil {
				results[i] = int(resp.GetRecords()[0].GetFields().GetFields()["max_concurrent"].GetNumberValue())
			}
		}()
	}
	wg.Wait()
	for i := range calls {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if results[i] > cc.MaxConcurrent {
			t.Errorf("call %d: the plugin saw %d concurrent fetches, bulkhead allows %d", i, results[i], cc.MaxConcurrent)
		}
	}
}

func TestRetriesOnlyRetryableErrors(t *testing.T) {
	cc := builtin("fire", helperSettings{Department: "fire"})
	cc.Retries = RetryConfig{Attempts: 3, Backoff: Backoff{Min: time.Millisecond, Max: 5 * time.Millisecond}}
	h := startHost(t, Config{Connectors: []ConnectorConfig{cc}})

	tests := []struct {
		key      string
		code     codes.Code
		attempts int
	}{
		{"flaky-a-2", codes.OK, 3},
		{"flaky-b-5", codes.Unavailable, 3},
		{"missing", codes.NotFound, 1},
		{"bad", codes.InvalidArgument, 1},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			_, err := fetch(t, h, "fire.items", tc.key)
			if apierr.CodeOf(err) != tc.code {
				t.Fatalf("error = %v, want code %v", err, tc.code)
			}
			resp, err := fetch(t, h, "fire.items", "attempts-"+tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if got := intField(t, resp, "max_concurrent"); got != tc.attempts {
				t.Errorf("the plugin saw %d attempts, want %d", got, tc.attempts)
			}
		})
	}
}

func TestWatchResumesAfterRestart(t *testing.T) {
	h := startHost(t, Config{Connectors: []ConnectorConfig{
		builtin("fire", helperSettings{Department: "fire", Watch: true}),
		builtin("water", helperSettings{Department: "water"}),
	}})
	err := h.Watch(t.Context(), []string{"water.items"}, func(*v1.ChangeEvent) error { return nil })
	wantErr(t, err, codes.FailedPrecondition, apierr.ReasonFailedPrecondition, "")

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	done := errors.New("saw events from two processes")
	var pids []string
	crashed := false
	err = h.Watch(ctx, nil, func(ev *v1.ChangeEvent) error {
		pid, _, _ := strings.Cut(ev.GetRecordId(), "-")
		if !slices.Contains(pids, pid) {
			pids = append(pids, pid)
		}
		if len(pids) == 2 {
			return done
		}
		if !crashed {
			crashed = true
			go func() {
				_, _, _ = h.Fetch(ctx, &v1.FetchRequest{Dataset: "fire.items", Keys: map[string]string{"id": "crash"}})
			}()
		}
		return nil
	})
	if !errors.Is(err, done) {
		t.Fatalf("Watch = %v after events from processes %v, want events from a restarted process", err, pids)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	h := startHost(t, Config{Connectors: []ConnectorConfig{builtin("fire", helperSettings{Department: "fire"})}})
	inst, _ := h.conns[0].current()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if !inst.pc.Exited() {
		t.Error("plugin process still running after Close")
	}
	if st := statusOf(h, "fire"); st.GetProcess() != StateStopped {
		t.Errorf("process state after Close = %s", st.GetProcess())
	}
	_, err := fetch(t, h, "fire.items", "ok")
	wantErr(t, err, codes.Unavailable, apierr.ReasonDepartmentDown, "fire")
}

func TestHealthChecks(t *testing.T) {
	control := filepath.Join(t.TempDir(), "control")
	if err := os.WriteFile(control, []byte("down"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startHost(t, Config{
		HealthInterval: 20 * time.Millisecond,
		Connectors:     []ConnectorConfig{builtin("fire", helperSettings{Department: "fire", Control: control})},
	})
	if st := statusOf(h, "fire"); !strings.Contains(st.GetHealth(), `department "fire" is unavailable`) {
		t.Errorf("health at start = %q", st.GetHealth())
	}
	if err := os.WriteFile(control, []byte("up"), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a passing health check", func() bool { return statusOf(h, "fire").GetHealth() == "ok" })
	if got := testutil.ToFloat64(h.metrics.healthy.WithLabelValues("fire")); got != 1 {
		t.Errorf("healthy gauge = %v, want 1", got)
	}
}

// syncBuffer is a bytes.Buffer safe for the host's logging goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestPluginLogsReachHostLogger(t *testing.T) {
	var logs syncBuffer
	opts := quietOptions()
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	h, err := New(Config{Connectors: []ConnectorConfig{builtin("fire", helperSettings{Department: "fire"})}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	eventually(t, "the plugin's log line", func() bool {
		return strings.Contains(logs.String(), `level=WARN msg="helper connector serving"`)
	})
	if strings.Contains(logs.String(), "level=DEBUG") || strings.Contains(logs.String(), "level=INFO") {
		t.Errorf("logs below PluginLogLevel were relayed:\n%s", logs.String())
	}
}

func TestChecksumVerifiedBeforeRestart(t *testing.T) {
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")) // see testLauncher
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "connector")
	if err := os.WriteFile(bin, data, 0o700); err != nil {
		t.Fatal(err)
	}
	cc := builtin("water", helperSettings{Department: "water"})
	cc.Type, cc.Path, cc.SHA256 = TypeExternal, bin, fileSHA256(t, bin)
	h := startHost(t, Config{Connectors: []ConnectorConfig{cc}})

	// Someone replaces the binary; the running process crashes.
	if err := os.WriteFile(bin+".new", append(data, 0), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(bin+".new", bin); err != nil {
		t.Fatal(err)
	}
	_, err = fetch(t, h, "water.items", "crash")
	wantErr(t, err, codes.Unavailable, apierr.ReasonDepartmentDown, "water")
	eventually(t, "the restart to be refused", func() bool {
		st := statusOf(h, "water")
		return st.GetProcess() == StateRestarting && strings.Contains(st.GetLastError(), "checksum mismatch")
	})
	_, err = fetch(t, h, "water.items", "ok")
	wantErr(t, err, codes.Unavailable, apierr.ReasonDepartmentDown, "water")
}

// A plugin that crashes again soon after each restart is relaunched with a
// growing backoff, not every RestartBackoff.Min.
func TestCrashLoopBacksOff(t *testing.T) {
	var logs syncBuffer
	opts := quietOptions()
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	cc := builtin("fire", helperSettings{Department: "fire"})
	cc.RestartBackoff = Backoff{Min: 20 * time.Millisecond, Max: time.Hour}
	h, err := New(Config{Connectors: []ConnectorConfig{cc}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	for i := 1; i <= 4; i++ {
		_, err := fetch(t, h, "fire.items", "crash")
		wantErr(t, err, codes.Unavailable, apierr.ReasonDepartmentDown, "fire")
		eventually(t, fmt.Sprintf("restart %d", i), func() bool {
			return testutil.ToFloat64(h.metrics.restarts.WithLabelValues("fire")) == float64(i) && statusOf(h, "fire").GetProcess() == StateRunning
		})
	}
	var got []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "connector process exited; restarting") {
			_, b, _ := strings.Cut(line, "backoff=")
			got = append(got, strings.TrimSpace(strings.SplitN(b, " ", 2)[0]))
		}
	}
	want := []string{"20ms", "40ms", "80ms", "160ms"}
	if !slices.Equal(got, want) {
		t.Errorf("restart backoffs = %v, want %v", got, want)
	}
}

func TestOverloadIsNotRetried(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{apierr.Unavailable("fire", nil), true},
		{apierr.New(codes.Unavailable, apierr.ReasonBreakerOpen, "open"), false},
		{apierr.New(codes.Unavailable, apierr.ReasonBulkheadFull, "all call slots are busy"), false},
		{apierr.New(codes.Aborted, apierr.ReasonConflict, "try again"), true},
		{apierr.New(codes.NotFound, apierr.ReasonNotFound, "no item"), false},
	}
	for _, tc := range cases {
		if got := retryable(tc.err); got != tc.want {
			t.Errorf("retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
