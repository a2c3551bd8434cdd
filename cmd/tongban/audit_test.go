package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tongban/tongban/gateway/api"
	"github.com/tongban/tongban/gateway/audit"
	"github.com/tongban/tongban/gateway/auth"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

const auditCLIOrigin = "tongban.test/cli-node"

// auditCLILog is a small closed log in a temporary directory with the key
// files and the REST answers an auditor would have saved.
type auditCLILog struct {
	dir, skeyFile, vkey string
	receipt             []byte // JSON of GET /v1/audit/entries/3
	consistency         []byte // old_checkpoint, new_checkpoint, proof
	consistencyAnswer   []byte // GET /v1/audit/consistency as is
	entries             int
}

func restJSON(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newAuditCLILog(t *testing.T) *auditCLILog {
	t.Helper()
	base := t.TempDir()
	f := &auditCLILog{dir: filepath.Join(base, "log"), skeyFile: filepath.Join(base, "skey"), entries: 10}
	var stdout, stderr bytes.Buffer
	if err := cmdAudit(context.Background(), []string{"key", "--origin", auditCLIOrigin, "--out", f.skeyFile}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	f.vkey = strings.TrimSpace(stdout.String())
	ctx := context.Background()
	l, err := audit.Open(ctx, audit.Config{Dir: f.dir, Origin: auditCLIOrigin, SigningKeyFile: f.skeyFile, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.VerifierKey() != f.vkey {
		t.Fatalf("printed verifier key %q, log's %q", f.vkey, l.VerifierKey())
	}
	key := []byte("cli test subject key")
	svc := &api.Audit{
		Auth: auth.New([]auth.Entry{{TokenSHA256: auth.Digest("aud"), Identity: auth.Identity{SystemID: "auditor", Roles: []string{auth.RoleAuditor}}}}),
		Log:  l, SubjectKey: key, Node: "cli-node",
	}
	appendOne := func(i int) {
		_, err := l.AppendEntry(ctx, audit.Entry{
			Time: time.Date(2026, 3, 1, 9, 0, i, 0, time.UTC), RequestID: fmt.Sprintf("req-%d", i), Node: "cli-node",
			Kind: audit.KindExchange, Consumer: "sjz-approval", Datasets: []string{"market.enterprises"},
			Subjects: audit.SubjectHashes(key, []string{"91350100M000100Y43"}), Decision: audit.DecisionPermit,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 4 {
		appendOne(i)
	}
	oldCP, err := svc.GetCheckpoint(ctx, &v1.GetCheckpointRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 4; i < f.entries; i++ {
		appendOne(i)
	}
	// The log's timer would sign this checkpoint; the public API does not
	// sign on demand once a checkpoint exists.
	if _, err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	actx := metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer aud"))
	e, err := svc.GetEntry(actx, &v1.GetEntryRequest{Index: 3})
	if err != nil {
		t.Fatal(err)
	}
	f.receipt = restJSON(t, e)
	newCP, err := svc.GetCheckpoint(ctx, &v1.GetCheckpointRequest{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := svc.GetConsistency(ctx, &v1.GetConsistencyRequest{From: oldCP.GetSize(), To: newCP.GetSize()})
	if err != nil {
		t.Fatal(err)
	}
	f.consistencyAnswer = restJSON(t, p)
	// The file an auditor assembles: the old checkpoint as text, the new one
	// as the REST answer, and the REST answer of the consistency proof.
	var pj map[string]any
	if err := json.Unmarshal(restJSON(t, p), &pj); err != nil {
		t.Fatal(err)
	}
	pj["old_checkpoint"] = oldCP.GetNote()
	pj["new_checkpoint"] = json.RawMessage(restJSON(t, newCP))
	if f.consistency, err = json.Marshal(pj); err != nil {
		t.Fatal(err)
	}
	return f
}

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// entryOffset returns the offset of entry index's data in the single
// segment of dir.
func entryOffset(t *testing.T, dir string, index int) (string, int64) {
	t.Helper()
	seg := filepath.Join(dir, fmt.Sprintf("%020d.seg", 0))
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(16)
	for i := 0; i < index; i++ {
		off += 8 + int64(binary.BigEndian.Uint32(b[off:]))
	}
	return seg, off + 8
}

func TestAuditVerifyCommand(t *testing.T) {
	f := newAuditCLILog(t)
	receipt := writeTemp(t, "receipt.json", f.receipt)
	consistency := writeTemp(t, "consistency.json", f.consistency)
	answer := writeTemp(t, "answer.json", f.consistencyAnswer)
	vkeyFile := writeTemp(t, "vkey", []byte(f.vkey+"\n"))
	_, otherVkey, err := audit.GenerateKey(auditCLIOrigin)
	if err != nil {
		t.Fatal(err)
	}

	var rj map[string]any
	if err := json.Unmarshal(f.receipt, &rj); err != nil {
		t.Fatal(err)
	}
	rj["index"] = "2"
	wrongIndex := writeTemp(t, "wrong-index.json", mustMarshal(t, rj))
	var cj map[string]any
	if err := json.Unmarshal(f.consistency, &cj); err != nil {
		t.Fatal(err)
	}
	cj["old_checkpoint"], cj["new_checkpoint"] = cj["new_checkpoint"], cj["old_checkpoint"]
	swapped := writeTemp(t, "swapped.json", mustMarshal(t, cj))
	if err := json.Unmarshal(f.consistency, &cj); err != nil {
		t.Fatal(err)
	}
	cj["proof"] = cj["proof"].([]any)[1:]
	short := writeTemp(t, "short.json", mustMarshal(t, cj))

	cases := []struct {
		name     string
		args     []string
		exit     int
		contains []string
	}{
		{"dir", []string{"--dir", f.dir, "--key", f.vkey}, 0, []string{"entries:        10", "checkpoints:", "result:         OK"}},
		{"dir with key file", []string{"--dir", f.dir, "--key", vkeyFile}, 0, []string{"result:         OK"}},
		{"dir with signing key file", []string{"--dir", f.dir, "--key", f.skeyFile}, 0, []string{"result:         OK"}},
		{"dir with another key", []string{"--dir", f.dir, "--key", otherVkey}, 1, []string{"FAILED"}},
		{"receipt", []string{"--receipt", receipt, "--key", f.vkey}, 0, []string{"entry:          3", "size 10", "sjz-approval", "result:         OK"}},
		{"receipt with another key", []string{"--receipt", receipt, "--key", otherVkey}, 1, nil},
		{"receipt with wrong index", []string{"--receipt", wrongIndex, "--key", f.vkey}, 1, nil},
		{"consistency", []string{"--consistency", consistency, "--key", f.vkey}, 0, []string{"old checkpoint: " + auditCLIOrigin + " size 4", "size 10", "result:         OK"}},
		{"consistency answer as is", []string{"--consistency", answer, "--key", f.vkey}, 0, []string{"old checkpoint: " + auditCLIOrigin + " size 4", "size 10", "result:         OK"}},
		{"consistency swapped", []string{"--consistency", swapped, "--key", f.vkey}, 1, nil},
		{"consistency short proof", []string{"--consistency", short, "--key", f.vkey}, 1, nil},
		{"no key", []string{"--dir", f.dir}, 2, nil},
		{"two modes", []string{"--dir", f.dir, "--receipt", receipt, "--key", f.vkey}, 2, nil},
		{"bad key", []string{"--dir", f.dir, "--key", "not-a-key"}, 2, nil},
		{"missing file", []string{"--receipt", filepath.Join(t.TempDir(), "none"), "--key", f.vkey}, 1, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"audit", "verify"}, c.args...), &stdout, &stderr)
			if code != c.exit {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, c.exit, stdout.String(), stderr.String())
			}
			for _, s := range c.contains {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("output lacks %q:\n%s", s, stdout.String())
				}
			}
		})
	}

	t.Run("tampered receipt data", func(t *testing.T) {
		var e v1.AuditEntry
		if err := protojson.Unmarshal(f.receipt, &e); err != nil {
			t.Fatal(err)
		}
		e.Data = bytes.Replace(e.Data, []byte("sjz-approval"), []byte("sjz-approvaL"), 1)
		e.LeafHash = nil // an attacker would drop the hash that gives it away
		p := writeTemp(t, "tampered.json", restJSON(t, &e))
		err := cmdAudit(context.Background(), []string{"verify", "--receipt", p, "--key", f.vkey}, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "entry 3") {
			t.Fatalf("tampered receipt: %v", err)
		}
	})
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAuditVerifyFlippedByte flips one byte in each entry in turn and checks
// that verify reports exactly that entry.
func TestAuditVerifyFlippedByte(t *testing.T) {
	f := newAuditCLILog(t)
	for _, idx := range []int{0, 3, 7, 9} {
		t.Run(fmt.Sprint(idx), func(t *testing.T) {
			seg, off := entryOffset(t, f.dir, idx)
			b, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			orig := b[off+5]
			b[off+5] ^= 0x01
			if err := os.WriteFile(seg, b, 0o600); err != nil {
				t.Fatal(err)
			}
			defer func() {
				b[off+5] = orig
				if err := os.WriteFile(seg, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}()
			var stdout, stderr bytes.Buffer
			code := run([]string{"audit", "verify", "--dir", f.dir, "--key", f.vkey}, &stdout, &stderr)
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s", code, stdout.String())
			}
			want := fmt.Sprintf("damaged entry:  %d ", idx)
			if !strings.Contains(stdout.String(), want) || !strings.Contains(stderr.String(), fmt.Sprintf("entry %d ", idx)) {
				t.Errorf("report does not name entry %d:\nstdout:\n%s\nstderr:\n%s", idx, stdout.String(), stderr.String())
			}
		})
	}
	// Restored, the log verifies again.
	if err := cmdAudit(context.Background(), []string{"verify", "--dir", f.dir, "--key", f.vkey}, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
}

func TestAuditKeyCommand(t *testing.T) {
	dir := t.TempDir()
	out, vout := filepath.Join(dir, "skey"), filepath.Join(dir, "vkey")
	var stdout bytes.Buffer
	if err := cmdAudit(context.Background(), []string{"key", "--origin", "tongban.gov/n1", "--out", out, "--vkey-out", vout}, &stdout, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	skey, err := audit.LoadKeyFile(out)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := audit.VerifierKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(stdout.String()) != vkey || !strings.HasPrefix(vkey, "tongban.gov/n1+") {
		t.Errorf("printed %q, want %q", stdout.String(), vkey)
	}
	if b, _ := os.ReadFile(vout); strings.TrimSpace(string(b)) != vkey {
		t.Errorf("vkey file holds %q", b)
	}
	if st, _ := os.Stat(out); st.Mode().Perm() != 0o600 {
		t.Errorf("signing key file mode %v", st.Mode().Perm())
	}
	// Never overwritten.
	err = cmdAudit(context.Background(), []string{"key", "--origin", "tongban.gov/n1", "--out", out}, &bytes.Buffer{}, &bytes.Buffer{})
	if !errors.Is(err, os.ErrExist) {
		t.Errorf("second key over the first: %v", err)
	}
	var ue usageError
	if err := cmdAudit(context.Background(), []string{"key", "--out", filepath.Join(dir, "x")}, &bytes.Buffer{}, &bytes.Buffer{}); !errors.As(err, &ue) {
		t.Errorf("missing origin: %v", err)
	}
	if err := cmdAudit(context.Background(), []string{"frobnicate"}, &bytes.Buffer{}, &bytes.Buffer{}); !errors.As(err, &ue) {
		t.Errorf("unknown command: %v", err)
	}
}
