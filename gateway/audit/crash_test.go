package audit

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	crashDirEnv = "TONGBAN_AUDIT_CRASH_DIR"
	crashKeyEnv = "TONGBAN_AUDIT_CRASH_KEY"
)

// TestCrashHelper is the child process of TestCrashLosesNoAcknowledgedEntry.
// It appends concurrently and prints "ack <index> <leaf hash>" for every
// acknowledged append until it is killed (or, as a bound, after 60 s or
// 200,000 entries).
func TestCrashHelper(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process for TestCrashLosesNoAcknowledgedEntry")
	}
	cfg := testConfig(t, dir)
	cfg.SigningKey = os.Getenv(crashKeyEnv)
	cfg.CheckpointEvery = 500
	cfg.SegmentBytes = 256 << 10
	l, err := Open(context.Background(), cfg)
	if err != nil {
		fmt.Fprintf(os.Stdout, "open failed: %v\n", err)
		os.Exit(3)
	}
	start := l.Size()
	var next atomic.Int64
	var out sync.Mutex
	deadline := time.Now().Add(60 * time.Second)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				i := next.Add(1)
				if i > 200000 {
					return
				}
				e := testEntry(int(start)+int(i), SubjectHash(subjectKey, strconv.Itoa(int(i%7))))
				r, err := l.AppendEntry(context.Background(), e)
				if err != nil {
					fmt.Fprintf(os.Stdout, "append failed: %v\n", err)
					os.Exit(4)
				}
				line := fmt.Sprintf("ack %d %x\n", r.Index, r.LeafHash)
				out.Lock()
				os.Stdout.WriteString(line) // one write per line
				out.Unlock()
			}
		})
	}
	wg.Wait()
	l.Close()
	os.Exit(0)
}

// TestCrashLosesNoAcknowledgedEntry kills a child process that is appending
// concurrently (SIGKILL, in the middle of group commits), three times over
// the same directory, and checks that every entry the child saw
// acknowledged is present and intact after reopening and that the whole
// log verifies.
func TestCrashLosesNoAcknowledgedEntry(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("in helper process")
	}
	dir := t.TempDir()
	acked := map[uint64]string{}
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
		skey, _ := testKeys(t)
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashKeyEnv+"="+skey)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Safety bound: never wait for the child for more than two minutes.
		guard := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
		sc := bufio.NewScanner(stdout)
		killAt := 2000 + 1500*round
		seen, killed := 0, false
		for sc.Scan() {
			line := sc.Text()
			f := strings.Fields(line)
			if len(f) != 3 || f[0] != "ack" {
				if strings.Contains(line, "failed") {
					t.Errorf("child: %s", line)
				}
				continue
			}
			idx, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatalf("bad line %q", line)
			}
			if prev, dup := acked[idx]; dup && prev != f[2] {
				t.Fatalf("index %d acknowledged twice with different hashes", idx)
			}
			acked[idx] = f[2]
			seen++
			if seen == killAt && !killed {
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed = true
			}
		}
		err = cmd.Wait()
		guard.Stop()
		if !killed {
			t.Fatalf("round %d: child exited before the kill after %d acks: %v", round, seen, err)
		}
		t.Logf("round %d: killed after %d acknowledgements (%d read in total)", round, killAt, seen)
	}

	cfg := testConfig(t, dir)
	l := openTest(t, cfg)
	size := l.Size()
	for idx, h := range acked {
		if idx >= size {
			t.Fatalf("acknowledged entry %d missing: log size %d", idx, size)
		}
		got, err := l.LeafHash(idx)
		if err != nil || hex.EncodeToString(got[:]) != h {
			t.Fatalf("entry %d: leaf hash %x, acknowledged %s", idx, got, h)
		}
		data, err := l.Entry(context.Background(), idx)
		if err != nil {
			t.Fatalf("entry %d: %v", idx, err)
		}
		if _, err := Decode(data); err != nil {
			t.Fatalf("entry %d: %v", idx, err)
		}
	}
	t.Logf("%d acknowledged entries all present in a log of %d", len(acked), size)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyDir(dir, testVKey(t))
	if err != nil {
		t.Fatalf("VerifyDir after crashes: %v", err)
	}
	if rep.Entries != size || rep.Unsigned != 0 {
		t.Fatalf("report %+v", rep)
	}
}
