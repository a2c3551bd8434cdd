package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tongban/tongban/connectors/connectortest"
	"github.com/tongban/tongban/connectors/sdk"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// helperEnv steers the test binary into serving a connector plugin: when set,
// TestMain serves and exits instead of running tests.
const helperEnv = "SDK_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "v1":
		sdk.Serve(newRegistry())
	case "v2":
		sdk.ServeProtocol(newRegistry(), 2)
	}
	os.Exit(0)
}

// registry is a tiny connector: department "fire", dataset "fire.checks" with
// one record "A1". Its behaviour for special keys drives the tests.
type registry struct {
	dept    string
	entered chan struct{} // closed when a "block" fetch started
	blocked chan struct{} // closed when a "block" fetch saw its context end
}

type settings struct {
	Department string `json:"department"`
}

func newRegistry() *registry {
	r := &registry{dept: "fire", entered: make(chan struct{}), blocked: make(chan struct{})}
	var s settings
	if err := sdk.LoadSettings(&s); err != nil {
		panic(err)
	}
	if s.Department != "" {
		r.dept = s.Department
	}
	return r
}

func (r *registry) Describe(context.Context) (*v1.Descriptor, error) {
	return &v1.Descriptor{
		Department: r.dept,
		Datasets: []*v1.DatasetDescriptor{{
			Name:      r.dept + ".checks",
			Title:     "checks",
			KeyFields: []string{"no"},
			Fields: []*v1.FieldDescriptor{
				{Name: "no", Title: "number", Type: v1.FieldType_FIELD_TYPE_STRING, Classification: v1.Classification_CLASSIFICATION_PUBLIC},
				{Name: "result", Title: "result", Type: v1.FieldType_FIELD_TYPE_STRING, Classification: v1.Classification_CLASSIFICATION_INTERNAL},
			},
		}},
	}, nil
}

func (r *registry) Fetch(ctx context.Context, req *v1.FetchRequest) (*v1.FetchResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if req.GetDataset() != r.dept+".checks" {
		return nil, apierr.Newf(codes.NotFound, apierr.ReasonUnknownDataset, "no dataset %q", req.GetDataset())
	}
	switch key := req.GetKeys()["no"]; key {
	case "A1":
		fields, _ := structpb.NewStruct(map[string]any{"no": "A1", "result": "pass"})
		return &v1.FetchResponse{Records: []*v1.SourceRecord{{Id: "A1", Fields: fields}}}, nil
	case "bad":
		return nil, apierr.Invalid("no", "malformed number %q", key)
	case "secret-failure":
		return nil, errors.New("dial tcp 10.0.0.7:5432: password authentication failed for secret-user")
	case "nil":
		return nil, nil
	case "block":
		close(r.entered)
		<-ctx.Done()
		close(r.blocked)
		return nil, fmt.Errorf("waiting for department: %w", ctx.Err())
	default:
		return nil, (&apierr.Error{Code: codes.NotFound, Reason: apierr.ReasonNotFound, Msg: "no check " + key}).With("dataset", req.GetDataset())
	}
}

func (r *registry) Health(context.Context) error { return nil }

// watchingRegistry adds the watch capability.
type watchingRegistry struct{ *registry }

func (w watchingRegistry) Watch(ctx context.Context, req *v1.WatchRequest, send func(*v1.ChangeEvent) error) error {
	for i := range 3 {
		if err := send(&v1.ChangeEvent{Dataset: "fire.checks", RecordId: fmt.Sprint(i), Op: "upsert"}); err != nil {
			return err
		}
	}
	return nil
}

func TestErrorsCrossTheBoundary(t *testing.T) {
	c := connectortest.InProcess(t, newRegistry())
	tests := []struct {
		key        string
		code       codes.Code
		reason     string
		meta       map[string]string
		notInError string
	}{
		{key: "missing", code: codes.NotFound, reason: apierr.ReasonNotFound, meta: map[string]string{"dataset": "fire.checks"}},
		{key: "bad", code: codes.InvalidArgument, reason: apierr.ReasonInvalidArgument, meta: map[string]string{"field": "no"}},
		{key: "secret-failure", code: codes.Internal, reason: apierr.ReasonInternal, notInError: "secret-user"},
		{key: "nil", code: codes.Internal, reason: apierr.ReasonInternal},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			_, err := c.Fetch(t.Context(), &v1.FetchRequest{Dataset: "fire.checks", Keys: map[string]string{"no": tc.key}})
			var e *apierr.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T) is not an *apierr.Error", err, err)
			}
			if !errors.Is(err, apierr.New(tc.code, tc.reason, "")) {
				t.Errorf("errors.Is(%v, %v/%s) = false", err, tc.code, tc.reason)
			}
			for k, v := range tc.meta {
				if e.Meta[k] != v {
					t.Errorf("meta[%q] = %q, want %q", k, e.Meta[k], v)
				}
			}
			if tc.notInError != "" && strings.Contains(e.Msg, tc.notInError) {
				t.Errorf("message %q leaks the cause", e.Msg)
			}
		})
	}
}

func TestCancelledContextIsHonoured(t *testing.T) {
	r := newRegistry()
	c := connectortest.InProcess(t, r)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Fetch(ctx, &v1.FetchRequest{Dataset: "fire.checks", Keys: map[string]string{"no": "block"}})
		errc <- err
	}()
	select {
	case <-r.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the fetch did not reach the connector")
	}
	cancel()
	select {
	case err := <-errc:
		if apierr.CodeOf(err) != codes.Canceled {
			t.Fatalf("error = %v, want Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("fetch did not return after cancel")
	}
	// The plugin side saw the cancellation: gRPC carried it across.
	select {
	case <-r.blocked:
	case <-time.After(10 * time.Second):
		t.Fatal("the connector's context was not cancelled")
	}
}

func TestDeadlinePropagates(t *testing.T) {
	r := newRegistry()
	c := connectortest.InProcess(t, r)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Fetch(ctx, &v1.FetchRequest{Dataset: "fire.checks", Keys: map[string]string{"no": "block"}})
	if apierr.CodeOf(err) != codes.DeadlineExceeded {
		t.Fatalf("error = %v, want DeadlineExceeded", err)
	}
	select {
	case <-r.blocked:
	case <-time.After(10 * time.Second):
		t.Fatal("the connector's context did not end at the deadline")
	}
}

func TestWatch(t *testing.T) {
	t.Run("without capability is Unimplemented", func(t *testing.T) {
		c := connectortest.InProcess(t, newRegistry())
		err := c.Watch(t.Context(), &v1.WatchRequest{}, func(*v1.ChangeEvent) error { return nil })
		if apierr.CodeOf(err) != codes.Unimplemented {
			t.Fatalf("Watch error = %v, want Unimplemented", err)
		}
	})
	t.Run("streams events", func(t *testing.T) {
		c := connectortest.InProcess(t, watchingRegistry{newRegistry()})
		var got []string
		err := c.Watch(t.Context(), &v1.WatchRequest{}, func(ev *v1.ChangeEvent) error {
			got = append(got, ev.GetRecordId())
			return nil
		})
		if err != nil {
			t.Fatalf("Watch: %v", err)
		}
		if strings.Join(got, ",") != "0,1,2" {
			t.Fatalf("events = %v, want 0,1,2", got)
		}
	})
	t.Run("send error stops the stream", func(t *testing.T) {
		c := connectortest.InProcess(t, watchingRegistry{newRegistry()})
		stop := errors.New("enough")
		n := 0
		err := c.Watch(t.Context(), &v1.WatchRequest{}, func(*v1.ChangeEvent) error {
			n++
			return stop
		})
		if !errors.Is(err, stop) || n != 1 {
			t.Fatalf("Watch = %v after %d events, want %v after 1", err, n, stop)
		}
	})
}

func TestConformanceInProcess(t *testing.T) {
	connectortest.Run(t, connectortest.InProcess(t, newRegistry()), connectortest.Options{
		Dataset: "fire.checks",
		Key:     map[string]string{"no": "A1"},
	})
}

// launch starts the test binary as a plugin process in the given helper mode.
func launch(t *testing.T, mode string, env ...string) *plugin.Client {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	// Under the race detector a process sleeps a second at exit unless told otherwise.
	gorace := "GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + mode, gorace}, env...)...)
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          sdk.PluginSet(nil),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           hclog.New(&hclog.LoggerOptions{Level: hclog.Off, Output: io.Discard}),
	})
	t.Cleanup(pc.Kill)
	return pc
}

func TestPluginProcess(t *testing.T) {
	pc := launch(t, "v1", sdk.EnvConfig+`={"department":"firex"}`)
	c, err := sdk.Dispense("firex", pc)
	if err != nil {
		t.Fatalf("Dispense: %v", err)
	}
	if pc.NegotiatedVersion() != sdk.ProtocolVersion {
		t.Errorf("negotiated version %d, want %d", pc.NegotiatedVersion(), sdk.ProtocolVersion)
	}
	d, err := c.Describe(t.Context())
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	if d.GetDepartment() != "firex" {
		t.Errorf("department = %q, want the one from $%s", d.GetDepartment(), sdk.EnvConfig)
	}
	_, err = c.Fetch(t.Context(), &v1.FetchRequest{Dataset: "firex.checks", Keys: map[string]string{"no": "missing"}})
	if !errors.Is(err, apierr.New(codes.NotFound, apierr.ReasonNotFound, "")) {
		t.Errorf("Fetch(missing) = %v, want NotFound", err)
	}
	connectortest.Run(t, c, connectortest.Options{Dataset: "firex.checks", Key: map[string]string{"no": "A1"}})
}

func TestVersionMismatchIsRefused(t *testing.T) {
	pc := launch(t, "v2")
	_, err := sdk.Dispense("fire", pc)
	if err == nil {
		t.Fatal("Dispense of a protocol 2 plugin succeeded")
	}
	want := `connector "fire" speaks connector protocol 2, this gateway speaks 1`
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	if apierr.ReasonOf(err) != apierr.ReasonProtocolMismatch || apierr.CodeOf(err) != codes.FailedPrecondition {
		t.Errorf("error %v: reason %q code %v, want %s FailedPrecondition", err, apierr.ReasonOf(err), apierr.CodeOf(err), apierr.ReasonProtocolMismatch)
	}
	if !pc.Exited() {
		// Kill waits for the process; after it Exited must be true.
		pc.Kill()
		if !pc.Exited() {
			t.Error("the refused plugin process is still running")
		}
	}
}

func TestDecodeSettings(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "", want: "keep"},
		{in: `{"department":"fire"}`, want: "fire"},
		{in: `{"departmnet":"fire"}`, wantErr: `unknown field "departmnet"`},
		{in: `department: fire`, wantErr: "TONGBAN_CONNECTOR_CONFIG"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			s := settings{Department: "keep"}
			err := sdk.DecodeSettings([]byte(tc.in), &s)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || s.Department != tc.want {
				t.Fatalf("got %q, %v; want %q", s.Department, err, tc.want)
			}
		})
	}
}
