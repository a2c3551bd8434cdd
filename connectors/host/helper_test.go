package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	builtinconn "github.com/tongban/tongban/connectors/builtin"
	"github.com/tongban/tongban/connectors/sdk"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// The test binary doubles as a connector plugin: when a host starts it (with
// $TONGBAN_CONNECTOR_NAME set), TestMain serves helperConnector instead of
// running tests. Its behaviour is steered by its settings and by the key of
// each fetch, so every test gets a real go-plugin process without building a
// binary.
func TestMain(m *testing.M) {
	if os.Getenv(sdk.EnvName) != "" {
		if typ := os.Getenv(envServeBuiltin); typ != "" {
			serveBuiltin(typ)
		} else {
			serveHelper()
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// envServeBuiltin, set by builtinLauncher, makes the test binary serve the
// real built-in connector of the type it names instead of the helper.
const envServeBuiltin = "TONGBAN_TEST_SERVE_BUILTIN"

func serveBuiltin(typ string) {
	c, err := builtinconn.New(context.Background(), typ, []byte(os.Getenv(sdk.EnvConfig)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	sdk.Serve(c)
}

// builtinLauncher runs the test binary as the real built-in connector type.
func builtinLauncher(typ string) (*exec.Cmd, error) {
	cmd, err := testLauncher(typ)
	if err != nil {
		return nil, err
	}
	cmd.Env = append(cmd.Env, envServeBuiltin+"="+typ)
	return cmd, nil
}

// helperSettings are the settings of the helper connector.
type helperSettings struct {
	// Department is the department identifier; default "testdept".
	Department string `json:"department,omitempty"`
	// Version is the protocol version to announce; default sdk.ProtocolVersion.
	Version int `json:"version,omitempty"`
	// Control is a file; while it contains "down", every fetch fails with
	// UNAVAILABLE as a department that cannot be reached.
	Control string `json:"control,omitempty"`
	// Watch adds the watch capability: an event every 20ms.
	Watch bool `json:"watch,omitempty"`
}

func serveHelper() {
	var s helperSettings
	if err := sdk.LoadSettings(&s); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if s.Department == "" {
		s.Department = "testdept"
	}
	if s.Version == 0 {
		s.Version = sdk.ProtocolVersion
	}
	c := &helperConnector{s: s, attempts: map[string]int{}}
	if s.Watch {
		sdk.ServeProtocol(watchingHelper{c}, s.Version)
		return
	}
	sdk.ServeProtocol(c, s.Version)
}

type helperConnector struct {
	s        helperSettings
	fetches  atomic.Int64
	inFlight atomic.Int64
	maxSeen  atomic.Int64

	mu       sync.Mutex
	attempts map[string]int
}

func (c *helperConnector) dataset() string { return c.s.Department + ".items" }

func (c *helperConnector) Describe(context.Context) (*v1.Descriptor, error) {
	slog.Warn("helper connector serving", "department", c.s.Department)
	slog.Info("helper connector describing")
	field := func(name string, typ v1.FieldType) *v1.FieldDescriptor {
		return &v1.FieldDescriptor{Name: name, Title: name, Type: typ, Classification: v1.Classification_CLASSIFICATION_INTERNAL}
	}
	d := &v1.Descriptor{
		Department:     c.s.Department,
		DepartmentName: "Test department " + c.s.Department,
		Datasets: []*v1.DatasetDescriptor{{
			Name:      c.dataset(),
			Title:     "items",
			KeyFields: []string{"id"},
			Fields: []*v1.FieldDescriptor{
				field("id", v1.FieldType_FIELD_TYPE_STRING),
				field("pid", v1.FieldType_FIELD_TYPE_INTEGER),
				field("fetches", v1.FieldType_FIELD_TYPE_INTEGER),
				field("attempts", v1.FieldType_FIELD_TYPE_INTEGER),
				field("max_concurrent", v1.FieldType_FIELD_TYPE_INTEGER),
			},
		}},
	}
	if c.s.Watch {
		d.Capabilities = []string{"watch"}
	}
	return d, nil
}

func (c *helperConnector) Fetch(ctx context.Context, req *v1.FetchRequest) (*v1.FetchResponse, error) {
	n := c.fetches.Add(1)
	cur := c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	for {
		m := c.maxSeen.Load()
		if cur <= m || c.maxSeen.CompareAndSwap(m, cur) {
			break
		}
	}
	if req.GetDataset() != c.dataset() {
		return nil, apierr.Newf(codes.NotFound, apierr.ReasonUnknownDataset, "no dataset %q", req.GetDataset())
	}
	key := req.GetKeys()["id"]
	c.mu.Lock()
	c.attempts[key]++
	attempts := c.attempts[key]
	c.mu.Unlock()

	if c.down() {
		return nil, apierr.Unavailable(c.s.Department, fmt.Errorf("control file says down"))
	}
	record := func(fields map[string]any) (*v1.FetchResponse, error) {
		fields["id"] = key
		fields["pid"] = os.Getpid()
		fields["fetches"] = n
		fields["attempts"] = attempts
		st, err := structpb.NewStruct(fields)
		if err != nil {
			return nil, err
		}
		return &v1.FetchResponse{Records: []*v1.SourceRecord{{Id: key, Fields: st}}}, nil
	}
	switch {
	case key == "crash":
		os.Exit(3)
	case key == "hang":
		time.Sleep(time.Hour) // ignores ctx: the host's deadline must still hold
	case key == "slow":
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		return record(map[string]any{"max_concurrent": c.maxSeen.Load()})
	case key == "missing" || key == "TONGBAN-CONFORMANCE-UNKNOWN":
		return nil, apierr.New(codes.NotFound, apierr.ReasonNotFound, "no item "+key)
	case key == "bad":
		return nil, apierr.Invalid("id", "malformed")
	case key == "toomany":
		// What a built-in connector answers to a query matching more records
		// than it may collect.
		return nil, apierr.Newf(codes.ResourceExhausted, apierr.ReasonResponseTooLarge,
			"department %q has more than 10 matching records; narrow the query", c.s.Department)
	case strings.HasPrefix(key, "attempts-"):
		c.mu.Lock()
		a := c.attempts[strings.TrimPrefix(key, "attempts-")]
		c.mu.Unlock()
		return record(map[string]any{"max_concurrent": a})
	case strings.HasPrefix(key, "flaky-"):
		// flaky-<tag>-<n>: the first n attempts fail as unavailable.
		var tag string
		var failures int
		if _, err := fmt.Sscanf(strings.ReplaceAll(key, "-", " "), "flaky %s %d", &tag, &failures); err != nil {
			return nil, apierr.Invalid("id", "bad flaky key")
		}
		if attempts <= failures {
			return nil, apierr.Unavailable(c.s.Department, fmt.Errorf("flaky attempt %d", attempts))
		}
	}
	return record(map[string]any{})
}

func (c *helperConnector) Health(context.Context) error {
	if c.down() {
		return apierr.Unavailable(c.s.Department, fmt.Errorf("control file says down"))
	}
	return nil
}

func (c *helperConnector) down() bool {
	if c.s.Control == "" {
		return false
	}
	b, _ := os.ReadFile(c.s.Control)
	return strings.TrimSpace(string(b)) == "down"
}

type watchingHelper struct{ *helperConnector }

func (w watchingHelper) Watch(ctx context.Context, _ *v1.WatchRequest, send func(*v1.ChangeEvent) error) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		if err := send(&v1.ChangeEvent{Dataset: w.dataset(), RecordId: fmt.Sprintf("%d-%d", os.Getpid(), seq), Op: "upsert"}); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// --- host-side helpers ---

// testLauncher runs the test binary itself as the built-in type. Under the
// race detector a process sleeps a second at exit unless told otherwise.
func testLauncher(string) (*exec.Cmd, error) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	return cmd, nil
}

// builtin returns a connector config of a built-in type served by the test
// binary with settings s.
func builtin(name string, s helperSettings) ConnectorConfig {
	return ConnectorConfig{
		Name:           name,
		Type:           TypeREST,
		Settings:       settingsMap(s),
		CallTimeout:    5 * time.Second,
		RestartBackoff: Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond},
		Retries:        RetryConfig{Attempts: 1},
		Breaker:        BreakerConfig{ConsecutiveFailures: 100},
	}
}

func settingsMap(s helperSettings) map[string]any {
	m := map[string]any{}
	if s.Department != "" {
		m["department"] = s.Department
	}
	if s.Version != 0 {
		m["version"] = s.Version
	}
	if s.Control != "" {
		m["control"] = s.Control
	}
	if s.Watch {
		m["watch"] = true
	}
	return m
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func quietOptions() Options {
	return Options{
		Launcher:       testLauncher,
		Logger:         slog.New(slog.DiscardHandler),
		PluginLogLevel: slog.LevelWarn,
	}
}

// startHost starts a host for cfg and closes it when the test ends.
func startHost(t *testing.T, cfg Config) *Host {
	t.Helper()
	h, err := New(cfg, quietOptions())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := h.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func fetch(t *testing.T, h *Host, dataset, key string) (*v1.FetchResponse, error) {
	t.Helper()
	resp, _, err := h.Fetch(t.Context(), &v1.FetchRequest{Dataset: dataset, Keys: map[string]string{"id": key}})
	return resp, err
}

func intField(t *testing.T, resp *v1.FetchResponse, name string) int {
	t.Helper()
	if len(resp.GetRecords()) != 1 {
		t.Fatalf("got %d records, want 1", len(resp.GetRecords()))
	}
	return int(resp.GetRecords()[0].GetFields().GetFields()[name].GetNumberValue())
}

// eventually polls cond every 20ms for at most 20s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < 1000 && time.Now().Before(deadline); i++ {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func statusOf(h *Host, name string) *v1.ConnectorStatus {
	for _, s := range h.Status() {
		if s.GetName() == name {
			return s
		}
	}
	return nil
}

// wantErr checks err's code and reason and that it names the department (in
// its metadata, and in its message when the department is at fault).
func wantErr(t *testing.T, err error, code codes.Code, reason, department string) {
	t.Helper()
	e := apierr.From(err)
	if err == nil || e.Code != code || e.Reason != reason {
		t.Fatalf("error = %v, want code %v reason %s", err, code, reason)
	}
	if department == "" {
		return
	}
	namesInMsg := code == codes.Unavailable || code == codes.DeadlineExceeded
	if e.Meta["department"] != department || (namesInMsg && !strings.Contains(e.Msg, department)) {
		t.Fatalf("error %q (meta %v) does not name department %q", e.Msg, e.Meta, department)
	}
}
