package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tongban/tongban/gateway/demo"
)

// gateway is a running demo gateway node: three simulated departments,
// connector plugin processes and the gateway, as `tongban demo` runs them.
type gateway struct {
	URL string
	// PID is the process holding the gateway (and the simulators): the
	// `tongban demo` process, or this harness when in process.
	PID int
	// Children are the connector plugin processes.
	Children []int
	stop     func() error
}

// buildTongban builds the tongban binary into dir and returns its path.
func buildTongban(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "tongban")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/tongban/tongban/cmd/tongban")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/tongban (run from inside the module, or pass --tongban): %w\n%s", err, out)
	}
	return bin, nil
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// startDemoProcess runs `BIN demo` with its state in dir and waits until it
// is ready. Its log goes to dir/demo.log.
func startDemoProcess(ctx context.Context, bin, dir string) (*gateway, error) {
	rest, err := freeAddr()
	if err != nil {
		return nil, err
	}
	grpcAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "demo.log"))
	if err != nil {
		return nil, fmt.Errorf("creating the demo log: %w", err)
	}
	out := &lockedBuffer{}
	cmd := exec.Command(bin, "demo", "--dir", filepath.Join(dir, "demo"), "--rest", rest, "--grpc", grpcAddr, "--log-level", "warn")
	cmd.Stdout = out
	cmd.Stderr = logf
	setPdeathsig(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s demo: %w", bin, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); logf.Close() }()
	g := &gateway{URL: "http://" + rest, PID: cmd.Process.Pid}
	g.stop = func() error {
		select {
		case err := <-done:
			done <- err
			return nil
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			done <- err
			if err != nil {
				return fmt.Errorf("demo exited with %v after SIGTERM (log: %s)", err, logf.Name())
			}
			return nil
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			done <- <-done
			return fmt.Errorf("demo did not stop within 30s of SIGTERM; killed")
		}
	}
	ready := func() error {
		select {
		case err := <-done:
			done <- err
			return fmt.Errorf("demo exited early: %v; see %s", err, logf.Name())
		default:
		}
		if !strings.Contains(out.String(), "Try it") {
			return errors.New("no try-it block yet")
		}
		return nil
	}
	if err := waitReady(ctx, g.URL, ready); err != nil {
		_ = g.stop()
		return nil, err
	}
	return g, nil
}

// startDemoInProcess runs the demo inside this process (so that a CPU
// profile of this process covers the gateway); the connector plugins are
// still processes, `BIN connector TYPE`.
func startDemoInProcess(ctx context.Context, bin, dir string) (*gateway, error) {
	logf, err := os.Create(filepath.Join(dir, "demo.log"))
	if err != nil {
		return nil, fmt.Errorf("creating the demo log: %w", err)
	}
	log := slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := demo.Start(ctx, demo.Options{
		Dir:      filepath.Join(dir, "demo"),
		RESTAddr: "127.0.0.1:0",
		GRPCAddr: "127.0.0.1:0",
		Logger:   log,
		Out:      io.Discard,
		Launcher: func(typ string) (*exec.Cmd, error) { return exec.Command(bin, "connector", typ), nil },
	})
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting the demo in process: %w", err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- d.App.Serve(sctx) }()
	g := &gateway{URL: d.RESTURL, PID: os.Getpid()}
	g.stop = func() error {
		cancel()
		err := <-served
		d.Close()
		logf.Close()
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("serving the demo: %w", err)
		}
		return nil
	}
	if err := waitReady(ctx, g.URL, func() error { return nil }); err != nil {
		_ = g.stop()
		return nil, err
	}
	return g, nil
}

// waitReady polls GET /readyz until it answers 200 and extra agrees, for
// at most 90 seconds.
func waitReady(ctx context.Context, base string, extra func() error) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		if err := extra(); err != nil && strings.Contains(err.Error(), "exited") {
			return err
		} else if err == nil {
			last = readyz(ctx, client, base)
			if last == nil {
				return nil
			}
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gateway at %s not ready after 90s: %v", base, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func readyz(ctx context.Context, client *http.Client, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: HTTP %d", resp.StatusCode)
	}
	return nil
}

// apiCall sends a JSON request to the gateway's REST API and decodes the
// answer into out (when not nil).
func apiCall(ctx context.Context, client *http.Client, method, url, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding %s %s: %w", method, url, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("reading the answer of %s %s: %w", method, url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, url, resp.StatusCode, truncate(string(b), 500))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decoding the answer of %s %s: %w", method, url, err)
		}
	}
	return nil
}

// loadQuota is the quota of the grants the harness re-issues: far above
// what a run can use, so that the quota check stays in the request path
// without refusing the load.
var loadQuota = map[string]int64{"per_minute": 1_000_000_000, "per_day": 2_000_000_000}

// quotaGrants are the demo's grants to the approval bureau that carry a
// quota (600 or 300 per minute) that a load test would exhaust in a
// fraction of a second.
var quotaGrants = []string{"demo-approval-licences", "demo-approval-parcels", "demo-approval-certificates"}

// reissueGrants replaces each of quotaGrants, through the real grant
// workflow, with an identical grant whose quota is loadQuota: demo-admin
// proposes it, demo-admin-2 (or the legal reviewer demo-reviewer, for a
// grant that needs legal review) approves it, and demo-admin revokes the
// original. It returns the ids of the new grants by old id.
func reissueGrants(ctx context.Context, client *http.Client, base string) (map[string]string, error) {
	ids := map[string]string{}
	for _, id := range quotaGrants {
		var g map[string]any
		if err := apiCall(ctx, client, http.MethodGet, base+"/v1/grants/"+id, "demo-admin", nil, &g); err != nil {
			return nil, fmt.Errorf("reading grant %s: %w", id, err)
		}
		major, _ := g["needs_legal_review"].(bool)
		for _, k := range []string{"id", "state", "history", "proposed_by", "needs_legal_review", "valid_from", "valid_until"} {
			delete(g, k)
		}
		now := time.Now().UTC()
		g["valid_from"] = now.Add(-time.Minute).Format(time.RFC3339Nano)
		g["valid_until"] = now.Add(24 * time.Hour).Format(time.RFC3339Nano)
		g["quota"] = loadQuota
		var proposed struct {
			ID string `json:"id"`
		}
		if err := apiCall(ctx, client, http.MethodPost, base+"/v1/grants", "demo-admin", g, &proposed); err != nil {
			return nil, fmt.Errorf("proposing the replacement of %s: %w", id, err)
		}
		reviewer, opinion := "demo-admin-2", "同意（负载测试）"
		if major {
			reviewer, opinion = "demo-reviewer", "经审核，负载测试复用演示授权的字段、用途与法律依据，仅调整配额，同意。"
		}
		review := map[string]string{"id": proposed.ID, "decision": "REVIEW_DECISION_APPROVE", "opinion": opinion}
		var reviewed struct {
			State string `json:"state"`
		}
		if err := apiCall(ctx, client, http.MethodPost, base+"/v1/grants/"+proposed.ID+":review", reviewer, review, &reviewed); err != nil {
			return nil, fmt.Errorf("approving grant %s: %w", proposed.ID, err)
		}
		if reviewed.State != "GRANT_STATE_ACTIVE" {
			return nil, fmt.Errorf("grant %s is %s after approval", proposed.ID, reviewed.State)
		}
		revoke := map[string]string{"id": id, "reason": "replaced by " + proposed.ID + " for a load test"}
		if err := apiCall(ctx, client, http.MethodPost, base+"/v1/grants/"+id+":revoke", "demo-admin", revoke, nil); err != nil {
			return nil, fmt.Errorf("revoking grant %s: %w", id, err)
		}
		ids[id] = proposed.ID
	}
	return ids, nil
}

// pluginPIDs returns the connector plugin processes of the gateway: the
// children of its process whose command line runs a connector.
func pluginPIDs(gw int) ([]int, error) {
	kids, err := childrenOf(gw)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, k := range kids {
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", k))
		if err != nil {
			continue
		}
		if bytes.Contains(cmd, []byte("\x00connector\x00")) {
			out = append(out, k)
		}
	}
	return out, nil
}

// auditCommits reads the audit log's group-commit counters from the
// gateway's /metrics.
func auditCommits(ctx context.Context, client *http.Client, base string) (commits, entries float64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("/metrics: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, 0, fmt.Errorf("reading /metrics: %w", err)
	}
	return parseAuditCommits(string(b))
}

// parseAuditCommits finds tongban_audit_commits_total and
// tongban_audit_appended_entries_total in Prometheus text exposition.
func parseAuditCommits(text string) (commits, entries float64, err error) {
	found := 0
	for line := range strings.Lines(text) {
		name, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		var dst *float64
		switch name {
		case "tongban_audit_commits_total":
			dst = &commits
		case "tongban_audit_appended_entries_total":
			dst = &entries
		default:
			continue
		}
		if *dst, err = strconv.ParseFloat(value, 64); err != nil {
			return 0, 0, fmt.Errorf("/metrics: %s: %w", name, err)
		}
		found++
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("/metrics has no audit commit counters")
	}
	return commits, entries, nil
}
