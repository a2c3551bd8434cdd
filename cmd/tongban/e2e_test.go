package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/tongban/tongban/connectors/simulate"
	"github.com/tongban/tongban/schemas/testenv"
)

// TestDemoEndToEnd builds the real binary, runs `tongban demo` (gateway,
// simulated departments, connector plugin processes) and exercises it over
// REST, gRPC and the CLI, as a user following the README would.
func TestDemoEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs the demo")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	rest := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	base := "http://" + rest

	demo := startProcess(t, bin, "demo", "--dir", filepath.Join(dir, "demo"), "--rest", rest, "--grpc", grpcAddr)
	waitReady(t, base, demo)

	data := simulate.Generate(simulate.DefaultSeed)
	ent, person := data.SampleEnterprise(), data.SamplePerson()
	if !strings.Contains(demo.stdout(), ent.CreditCode) || !strings.Contains(demo.stdout(), person.ResidentID) {
		t.Fatalf("try-it block lacks the sample identifiers:\n%s", demo.stdout())
	}

	t.Run("licence query", func(t *testing.T) {
		code, body := post(t, base, "demo-approval-bureau", "/v1/datasets/market.business_licences:query",
			`{"keys": {"credit_code": "`+ent.CreditCode+`"}, "purpose": "approval"}`)
		if code != 200 {
			t.Fatalf("HTTP %d: %s", code, body)
		}
		var resp struct {
			Records []struct {
				Fields     map[string]any `json:"fields"`
				Provenance struct {
					Department string `json:"department"`
					RecordID   string `json:"record_id"`
					Delivery   string `json:"delivery"`
				} `json:"provenance"`
			} `json:"records"`
			Receipt struct {
				LeafHash string `json:"leaf_hash"`
			} `json:"receipt"`
		}
		mustJSON(t, body, &resp)
		if len(resp.Records) != 1 || resp.Records[0].Fields["name"] != ent.Name {
			t.Fatalf("records = %+v", resp.Records)
		}
		if p := resp.Records[0].Provenance; p.Department != "market" || p.RecordID == "" || p.Delivery == "" {
			t.Errorf("provenance = %+v", p)
		}
		if id, _ := resp.Records[0].Fields["legal_representative_id"].(string); !strings.Contains(id, "****") {
			t.Errorf("legal_representative_id %q not masked", id)
		}
		if resp.Receipt.LeafHash == "" {
			t.Error("no audit receipt")
		}
	})

	t.Run("errors", func(t *testing.T) {
		bad := ent.CreditCode[:17] + map[bool]string{true: "1", false: "0"}[ent.CreditCode[17] == '0']
		cases := []struct {
			name, token, path, body string
			status                  int
			reason                  string
		}{
			{"bad credit code", "demo-approval-bureau", "/v1/datasets/market.business_licences:query", `{"keys": {"credit_code": "` + bad + `"}, "purpose": "approval"}`, 400, "INVALID_IDENTIFIER"},
			{"unknown dataset", "demo-approval-bureau", "/v1/datasets/market.unicorns:query", `{"keys": {"credit_code": "` + ent.CreditCode + `"}, "purpose": "approval"}`, 404, "UNKNOWN_DATASET"},
			{"missing token", "", "/v1/datasets/market.business_licences:query", `{"keys": {"credit_code": "` + ent.CreditCode + `"}, "purpose": "approval"}`, 401, "UNAUTHENTICATED"},
			{"unknown field", "demo-approval-bureau", "/v1/datasets/market.business_licences:query", `{"keys": {"credit_code": "` + ent.CreditCode + `"}, "purpose": "approval", "fields": ["shoe_size"]}`, 400, "UNKNOWN_FIELD"},
			{"no grant", "demo-approval-bureau", "/v1/datasets/market.enterprises:query", `{"keys": {"credit_code": "` + ent.CreditCode + `"}, "purpose": "approval"}`, 403, ""},
			{"malformed JSON", "demo-approval-bureau", "/v1/datasets/market.business_licences:query", `{"keys": `, 400, ""},
		}
		for _, tc := range cases {
			code, body := post(t, base, tc.token, tc.path, tc.body)
			if code != tc.status {
				t.Errorf("%s: HTTP %d, want %d: %s", tc.name, code, tc.status, body)
				continue
			}
			var e struct {
				Error struct {
					Reason  string `json:"reason"`
					Message string `json:"message"`
				} `json:"error"`
			}
			mustJSON(t, body, &e)
			if e.Error.Message == "" || (tc.reason != "" && e.Error.Reason != tc.reason) {
				t.Errorf("%s: error = %+v, want reason %s", tc.name, e.Error, tc.reason)
			}
		}
	})

	t.Run("public documents", func(t *testing.T) {
		code, body := get(t, base, "", "/v1/catalogue")
		if code != 200 || !strings.Contains(body, "market.business_licences") || !strings.Contains(body, "legal_basis") {
			t.Fatalf("catalogue: HTTP %d: %.300s", code, body)
		}
		code, body = get(t, base, "", "/openapi.json")
		if code != 200 {
			t.Fatalf("openapi: HTTP %d", code)
		}
		for _, route := range []string{"/v1/datasets/{dataset}:query", "/v1/catalogue", "/v1/forms/{form}:autofill", "/v1/grants",
			"/v1/grants/{id}:review", "/v1/grants/{id}:revoke", "/v1/audit/checkpoint", "/v1/audit/entries/{index}",
			"/v1/audit/consistency", "/v1/subjects/{subject_id}/accesses", "/v1/connectors"} {
			if !strings.Contains(body, `"`+route+`"`) {
				t.Errorf("openapi.json lacks %s", route)
			}
		}
		for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
			if code, _ := get(t, base, "", p); code != 200 {
				t.Errorf("%s: HTTP %d", p, code)
			}
		}
	})

	t.Run("grpc reflection", func(t *testing.T) {
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		if !strings.Contains(strings.Join(names, " "), "tongban.v1.Gateway") {
			t.Fatalf("services = %v", names)
		}
	})

	t.Run("grant with legal review through the CLI", func(t *testing.T) {
		query := func() int {
			code, _ := post(t, base, "demo-approval-bureau", "/v1/datasets/market.enterprises:query",
				`{"keys": {"credit_code": "`+ent.CreditCode+`"}, "purpose": "approval", "fields": ["credit_code", "name", "industry_name"]}`)
			return code
		}
		out := runCLI(t, bin, 0, "grants", "propose", "--url", base, "--token", "demo-admin",
			"--dataset", "market.enterprises", "--system", "approval-bureau",
			"--fields", "credit_code,name,industry_name", "--purpose", "approval",
			"--legal-basis", "《优化营商环境条例》第三十五条", "--jurisdiction", "1301")
		m := regexp.MustCompile(`grant (\S+)\s+\[proposed\]`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("propose output:\n%s", out)
		}
		id := m[1]
		if code := query(); code != 403 {
			t.Fatalf("proposed grant already in force: HTTP %d", code)
		}
		runCLI(t, bin, 1, "grants", "review", id, "--url", base, "--token", "demo-admin-2", "--approve", "--opinion", "同意")
		runCLI(t, bin, 1, "grants", "review", id, "--url", base, "--token", "demo-reviewer", "--approve")
		out = runCLI(t, bin, 0, "grants", "review", id, "--url", base, "--token", "demo-reviewer", "--approve", "--opinion", "符合最小必要原则，同意共享")
		if !strings.Contains(out, "[active]") {
			t.Fatalf("review output:\n%s", out)
		}
		if code := query(); code != 200 {
			t.Fatalf("approved grant not honoured: HTTP %d", code)
		}
		// A change subscription on the grant's dataset, open before the
		// revocation, ends with the revocation (the stream's periodic
		// authority check runs every 5 s; the wait is bounded at 60 s).
		sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		sreq, err := http.NewRequestWithContext(sctx, http.MethodGet, base+"/v1/changes/events?datasets=market.enterprises&purpose=approval", nil)
		if err != nil {
			t.Fatal(err)
		}
		sreq.Header.Set("Authorization", "Bearer demo-approval-bureau")
		stream, err := http.DefaultClient.Do(sreq)
		if err != nil || stream.StatusCode != 200 {
			t.Fatalf("subscribing: %v, %v", stream, err)
		}
		defer stream.Body.Close()
		runCLI(t, bin, 0, "grants", "revoke", id, "--url", base, "--token", "demo-admin", "--reason", "项目结束")
		if code := query(); code != 403 {
			t.Fatalf("revoked grant still honoured: HTTP %d", code)
		}
		events, err := io.ReadAll(stream.Body)
		if err != nil || !strings.Contains(string(events), "event: error") || !strings.Contains(string(events), "PERMISSION_DENIED") {
			t.Fatalf("the subscription did not end with the revocation: %v\n%s", err, events)
		}
		out = runCLI(t, bin, 0, "grants", "show", id, "--url", base, "--token", "demo-auditor")
		for _, want := range []string{"revoked", "reviewer-chen", "符合最小必要原则"} {
			if !strings.Contains(out, want) {
				t.Errorf("show output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("subject access log", func(t *testing.T) {
		post(t, base, "demo-enforcement", "/v1/datasets/approval.permits:query",
			`{"keys": {"applicant_id": "`+person.ResidentID+`"}, "purpose": "inspection"}`)
		code, body := get(t, base, "demo-subject", "/v1/subjects/"+person.ResidentID+"/accesses")
		if code != 200 || !strings.Contains(body, "enforcement-platform") {
			t.Fatalf("accesses: HTTP %d: %s", code, body)
		}
		if code, _ := get(t, base, "demo-approval-bureau", "/v1/subjects/"+person.ResidentID+"/accesses"); code != 403 {
			t.Errorf("a member system read a subject's access log: HTTP %d", code)
		}
		// Reading the log is itself recorded: an auditor's listing shows
		// the subject's read.
		code, body = get(t, base, "demo-auditor", "/v1/subjects/"+person.ResidentID+"/accesses")
		if code != 200 || !strings.Contains(body, `"kind":"access_log_read"`) || !strings.Contains(body, `"role":"subject"`) {
			t.Fatalf("the subject's read of its access log is not listed: HTTP %d: %s", code, body)
		}
	})

	t.Run("record ids follow the request's own decision", func(t *testing.T) {
		id := func(fields string) string {
			t.Helper()
			code, body := post(t, base, "demo-enforcement", "/v1/datasets/approval.permits:query",
				`{"keys": {"applicant_id": "`+person.ResidentID+`"}, "purpose": "inspection"`+fields+`}`)
			var resp struct {
				Records []struct {
					Provenance struct {
						RecordID string `json:"record_id"`
					} `json:"provenance"`
				} `json:"records"`
			}
			mustJSON(t, body, &resp)
			if code != 200 || len(resp.Records) == 0 {
				t.Fatalf("permits%s: HTTP %d: %s", fields, code, body)
			}
			return resp.Records[0].Provenance.RecordID
		}
		if all := id(""); all == "" || strings.HasPrefix(all, "ref:") {
			t.Errorf("all fields: record id %q, want the permit number", all)
		}
		if some := id(`, "fields": ["status"]`); !strings.HasPrefix(some, "ref:") {
			t.Errorf("fields without the key: record id %q, want a reference", some)
		}
	})

	t.Run("readiness and consistency", func(t *testing.T) {
		code, body := get(t, base, "", "/readyz")
		if code != 200 || !strings.Contains(body, `"status":"ok"`) || strings.Contains(body, "error") {
			t.Errorf("/readyz: HTTP %d: %s", code, body)
		}
		code, body = get(t, base, "", "/v1/audit/checkpoint")
		var cp struct {
			Size string `json:"size"`
		}
		mustJSON(t, body, &cp)
		if code != 200 || cp.Size == "" {
			t.Fatalf("checkpoint: HTTP %d: %s", code, body)
		}
		code, answer := get(t, base, "", "/v1/audit/consistency?from="+cp.Size)
		if code != 200 || !strings.Contains(answer, "old_checkpoint") || !strings.Contains(answer, "new_checkpoint") {
			t.Fatalf("consistency: HTTP %d: %s", code, answer)
		}
		key := regexp.MustCompile(`Audit verifier key: (\S+)`).FindStringSubmatch(demo.stdout())
		if key == nil {
			t.Fatal("no verifier key in the demo output")
		}
		// The answer, as it is, on standard input.
		verify := exec.Command(bin, "audit", "verify", "--consistency", "-", "--key", key[1])
		verify.Stdin = strings.NewReader(answer)
		out, err := verify.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "OK") {
			t.Fatalf("audit verify --consistency -: %v\n%s", err, out)
		}
	})

	// Graceful shutdown on SIGTERM, then verify the audit log offline.
	demo.stop(t)
	key := regexp.MustCompile(`Audit verifier key: (\S+)`).FindStringSubmatch(demo.stdout())
	if key == nil {
		t.Fatalf("no verifier key in the demo output")
	}
	out := runCLI(t, bin, 0, "audit", "verify", "--dir", filepath.Join(dir, "demo", "audit"), "--key", key[1])
	t.Logf("audit verify:\n%s", out)
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tongban-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "tongban")
		cmd := exec.Command("go", "build", "-o", builtBin, ".")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

type process struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	errb bytes.Buffer
	done chan error
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func startProcess(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	p := &process{done: make(chan error, 1)}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout = lockedWriter{&p.mu, &p.out}
	p.cmd.Stderr = lockedWriter{&p.mu, &p.errb}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *process) stdout() string { p.mu.Lock(); defer p.mu.Unlock(); return p.out.String() }
func (p *process) stderr() string { p.mu.Lock(); defer p.mu.Unlock(); return p.errb.String() }

// stop sends SIGTERM and expects a clean exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("demo exited with %v after SIGTERM\n%s", err, p.stderr())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("demo did not stop within 30s of SIGTERM")
	}
}

func waitReady(t *testing.T, base string, p *process) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("demo exited early: %v\nstdout:\n%s\nstderr:\n%s", err, p.stdout(), p.stderr())
		default:
		}
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Contains(p.stdout(), "Try it") {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("demo not ready after 90s\nstderr:\n%s", p.stderr())
}

func request(t *testing.T, method, base, token, path, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func post(t *testing.T, base, token, path, body string) (int, string) {
	return request(t, "POST", base, token, path, body)
}

func get(t *testing.T, base, token, path string) (int, string) {
	return request(t, "GET", base, token, path, "")
}

func mustJSON(t *testing.T, body string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
}

// runCLI runs the binary and checks its exit code.
func runCLI(t *testing.T, bin string, wantExit int, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("tongban %s: %v", strings.Join(args, " "), err)
	}
	if code != wantExit {
		t.Fatalf("tongban %s: exit %d, want %d\n%s", strings.Join(args, " "), code, wantExit, out)
	}
	return string(out)
}
