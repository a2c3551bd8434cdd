package deploy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMultinodeScript runs `make multinode`'s script end to end: real
// redis-server, PostgreSQL, the development Kafka-protocol broker, the
// simulators and two gateway nodes, all on loopback. The script itself
// checks every step (grant workflow across nodes, live then shared-cache
// delivery, revocation honoured by the other node, readiness) and exits
// non-zero when one fails.
func TestMultinodeScript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and starts two gateway nodes with real Redis, Kafka-protocol broker and PostgreSQL")
	}
	for _, tool := range []string{"bash", "redis-server", "curl", "setsid"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing(t, tool)
		}
	}
	if _, err := exec.LookPath("initdb"); err != nil {
		if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(m) == 0 {
			missing(t, "PostgreSQL (initdb)")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "multinode/run.sh")
	cmd.Env = append(os.Environ(),
		"MULTINODE_BIN="+t.TempDir(),
		"MULTINODE_DIR="+filepath.Join(t.TempDir(), "work"),
		// A loaded test machine: the revocation must still arrive, but the
		// one-second demonstration belongs to make multinode.
		"MULTINODE_REVOKE_WITHIN_MS=10000",
	)
	// On timeout, TERM lets the script's trap stop what it started.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("deploy/multinode/run.sh: %v\n%s", err, out)
	}
	for _, want := range []string{"DELIVERY_LIVE", "DELIVERY_CACHE", "HTTP 403", `"kafka":"ok"`, `"redis":"ok"`, "All multinode checks passed."} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// missing fails the test for a missing tool, or skips it when
// TONGBAN_TEST_SKIP_MISSING is set (as schemas/testenv does).
func missing(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("TONGBAN_TEST_SKIP_MISSING") != "" {
		t.Skipf("%s not installed", what)
	}
	t.Fatalf("%s not installed (apt-get install redis-server postgresql curl), or set TONGBAN_TEST_SKIP_MISSING=1", what)
}
