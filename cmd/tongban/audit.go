package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tongban/tongban/gateway/audit"
	"github.com/tongban/tongban/gateway/audit/merkle"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

const auditUsage = `Usage: tongban audit COMMAND [flags]

Commands (offline: they need only files and the log's public key):
  verify --dir DIR --key KEY            verify a whole log directory: framing, checksums,
                                        encodings, Merkle tree, every checkpoint's signature,
                                        root and consistency with the previous one
  verify --receipt FILE --key KEY       verify that an entry is in the log signed by a
                                        checkpoint (FILE: the JSON answer of
                                        GET /v1/audit/entries/{index}; "-" reads stdin)
  verify --consistency FILE --key KEY   verify that a newer checkpoint extends an older one
                                        (FILE: {"old_checkpoint", "new_checkpoint", "proof"})
  key --origin ORIGIN --out FILE        generate a checkpoint signing key; prints the
                                        verifier key

KEY is a verifier key ("<origin>+<hash>+<key>") or a file holding one (or the
signing key). Verification failures exit with status 1.
`

func cmdAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "--help" || args[0] == "-h" || args[0] == "help" {
		fmt.Fprint(stderr, auditUsage)
		if len(args) == 0 {
			return usagef("missing command")
		}
		return nil
	}
	switch args[0] {
	case "verify":
		return auditVerify(ctx, args[1:], stdout, stderr)
	case "key":
		return auditKey(args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, auditUsage)
	return usagef("unknown audit command %q", args[0])
}

func auditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit verify", "audit verify (--dir DIR | --receipt FILE | --consistency FILE) --key KEY", stderr)
	dir := fs.String("dir", "", "log directory to verify")
	receipt := fs.String("receipt", "", `receipt file (JSON of GET /v1/audit/entries/{index}), "-" for stdin`)
	consistency := fs.String("consistency", "", `consistency file (JSON with old_checkpoint, new_checkpoint, proof), "-" for stdin`)
	key := fs.String("key", "", "verifier key, or a file holding it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	n := 0
	for _, s := range []string{*dir, *receipt, *consistency} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return usagef("give exactly one of --dir, --receipt and --consistency")
	}
	if *key == "" {
		return usagef("--key is required: the log's verifier key or a file holding it")
	}
	vkey, err := audit.ResolveVerifierKey(*key)
	if err != nil {
		return usagef("--key: %v", err)
	}
	switch {
	case *dir != "":
		return verifyDir(ctx, *dir, vkey, stdout)
	case *receipt != "":
		return verifyReceipt(*receipt, vkey, stdout)
	default:
		return verifyConsistency(*consistency, vkey, stdout)
	}
}

func b64(h merkle.Hash) string { return base64.StdEncoding.EncodeToString(h[:]) }

func verifyDir(ctx context.Context, dir, vkey string, stdout io.Writer) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rep, err := audit.VerifyDir(dir, vkey)
	fmt.Fprintf(stdout, "log directory:  %s\n", dir)
	fmt.Fprintf(stdout, "segments:       %d\n", rep.Segments)
	if err != nil {
		var ce *audit.CorruptError
		if errors.As(err, &ce) {
			fmt.Fprintf(stdout, "damaged entry:  %d (file %s, offset %d): %s\n", ce.Index, ce.Segment, ce.Offset, ce.Reason)
		}
		fmt.Fprintf(stdout, "result:         FAILED\n")
		return fmt.Errorf("verifying %s: %w", dir, err)
	}
	fmt.Fprintf(stdout, "entries:        %d\n", rep.Entries)
	fmt.Fprintf(stdout, "root:           %s\n", b64(rep.Root))
	fmt.Fprintf(stdout, "checkpoints:    %d verified (signatures, roots, consistency)\n", rep.Checkpoints)
	if rep.Checkpoints > 0 {
		fmt.Fprintf(stdout, "latest:         %s size %d root %s\n", rep.Latest.Origin, rep.Latest.Size, b64(rep.Latest.Root))
	}
	fmt.Fprintf(stdout, "unsigned:       %d entries after the latest checkpoint\n", rep.Unsigned)
	if rep.TornTail != nil {
		fmt.Fprintf(stdout, "torn tail:      entry %d in %s at offset %d: %s (unsigned; the log truncates it when opened)\n",
			rep.TornTail.Index, rep.TornTail.Segment, rep.TornTail.Offset, rep.TornTail.Reason)
	}
	if rep.TornCheckpoint != nil {
		fmt.Fprintf(stdout, "torn checkpoint record at offset %d: %s\n", rep.TornCheckpoint.Offset, rep.TornCheckpoint.Reason)
	}
	fmt.Fprintf(stdout, "result:         OK\n")
	return nil
}

// readInput reads a file, or stdin for "-".
func readInput(path string) ([]byte, error) {
	if path == "-" {
		b, err := io.ReadAll(io.LimitReader(os.Stdin, 64<<20))
		if err != nil {
			return nil, fmt.Errorf("reading stdin: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return b, nil
}

// verifyReceipt checks a receipt file: the JSON form of v1.AuditEntry
// (index, data, leaf_hash, tree_size, inclusion_proof, checkpoint.note), as
// GET /v1/audit/entries/{index} answers it. The checkpoint note is what
// is trusted, after its signature is verified; leaf_hash and tree_size, if
// present, must agree with it.
func verifyReceipt(path, vkey string, stdout io.Writer) error {
	b, err := readInput(path)
	if err != nil {
		return err
	}
	var e v1.AuditEntry
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &e); err != nil {
		return fmt.Errorf("receipt %s is not the JSON of an audit entry: %w", path, err)
	}
	if len(e.GetData()) == 0 {
		return fmt.Errorf("receipt %s holds no entry data", path)
	}
	if e.GetCheckpoint().GetNote() == "" {
		return fmt.Errorf("receipt %s holds no checkpoint note: fetch the entry with tree_size 0 or the size of a signed checkpoint", path)
	}
	cp, err := audit.OpenCheckpoint(e.GetCheckpoint().GetNote(), vkey)
	if err != nil {
		return fmt.Errorf("receipt %s: %w", path, err)
	}
	leaf := merkle.HashLeaf(e.GetData())
	if lh := e.GetLeafHash(); len(lh) > 0 && !bytes.Equal(lh, leaf[:]) {
		return fmt.Errorf("receipt %s: leaf_hash does not match the entry data: the entry was altered", path)
	}
	if ts := e.GetTreeSize(); ts != 0 && ts != cp.Size {
		return fmt.Errorf("receipt %s: tree_size %d is not the checkpoint's size %d", path, ts, cp.Size)
	}
	if err := audit.VerifyReceipt(e.GetData(), e.GetIndex(), e.GetInclusionProof(), cp.Note, vkey); err != nil {
		return fmt.Errorf("receipt %s: %w", path, err)
	}
	fmt.Fprintf(stdout, "entry:          %d\n", e.GetIndex())
	fmt.Fprintf(stdout, "leaf hash:      %s\n", b64(leaf))
	fmt.Fprintf(stdout, "checkpoint:     %s size %d root %s\n", cp.Origin, cp.Size, b64(cp.Root))
	if entry, err := audit.Decode(e.GetData()); err == nil {
		fmt.Fprintf(stdout, "recorded:       %s %s by %s of %s: %s\n", entry.Time.Format("2006-01-02T15:04:05.999999999Z07:00"), entry.Kind,
			orDash(entry.Consumer), orDash(strings.Join(entry.Datasets, ",")), orDash(entry.Decision))
	} else {
		fmt.Fprintf(stdout, "recorded:       (not an entry encoding this tool knows: %v)\n", err)
	}
	fmt.Fprintf(stdout, "result:         OK (the entry is in the log the checkpoint signs)\n")
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// consistencyFile is the input of verify --consistency. The checkpoints are
// signed notes, given as text or as the JSON answer of
// GET /v1/audit/checkpoint (an object with "note"); proof is the "proof"
// of GET /v1/audit/consistency?from=OLD&to=NEW (base64 hashes). from and
// to, if given, must be the checkpoints' sizes.
type consistencyFile struct {
	Old   json.RawMessage `json:"old_checkpoint"`
	New   json.RawMessage `json:"new_checkpoint"`
	Proof [][]byte        `json:"proof"`
	From  json.RawMessage `json:"from"`
	To    json.RawMessage `json:"to"`
}

// noteOf accepts a JSON string (the note) or an object with a "note".
func noteOf(raw json.RawMessage, field string) (string, error) {
	if len(raw) == 0 {
		return "", fmt.Errorf("%s is missing", field)
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var obj struct {
		Note string `json:"note"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil || obj.Note == "" {
		return "", fmt.Errorf("%s is neither a signed note nor a checkpoint object with a note", field)
	}
	return obj.Note, nil
}

// sizeOf parses an optional size given as a JSON number or string.
func sizeOf(raw json.RawMessage) (uint64, bool, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, false, nil
	}
	s := strings.Trim(string(raw), `"`)
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil, err
}

func verifyConsistency(path, vkey string, stdout io.Writer) error {
	b, err := readInput(path)
	if err != nil {
		return err
	}
	var f consistencyFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("consistency file %s: %w", path, err)
	}
	oldNote, err := noteOf(f.Old, "old_checkpoint")
	if err != nil {
		return fmt.Errorf("consistency file %s: %w", path, err)
	}
	newNote, err := noteOf(f.New, "new_checkpoint")
	if err != nil {
		return fmt.Errorf("consistency file %s: %w", path, err)
	}
	oldCP, err := audit.OpenCheckpoint(oldNote, vkey)
	if err != nil {
		return fmt.Errorf("consistency file %s: old checkpoint: %w", path, err)
	}
	newCP, err := audit.OpenCheckpoint(newNote, vkey)
	if err != nil {
		return fmt.Errorf("consistency file %s: new checkpoint: %w", path, err)
	}
	for _, c := range []struct {
		name string
		raw  json.RawMessage
		want uint64
	}{{"from", f.From, oldCP.Size}, {"to", f.To, newCP.Size}} {
		n, ok, err := sizeOf(c.raw)
		if err != nil {
			return fmt.Errorf("consistency file %s: %s is not a size", path, c.name)
		}
		if ok && n != c.want {
			return fmt.Errorf("consistency file %s: %s is %d but the checkpoint's size is %d: the proof is for other checkpoints", path, c.name, n, c.want)
		}
	}
	if err := audit.VerifyConsistency(oldNote, newNote, f.Proof, vkey); err != nil {
		return fmt.Errorf("consistency file %s: %w", path, err)
	}
	fmt.Fprintf(stdout, "old checkpoint: %s size %d root %s\n", oldCP.Origin, oldCP.Size, b64(oldCP.Root))
	fmt.Fprintf(stdout, "new checkpoint: %s size %d root %s\n", newCP.Origin, newCP.Size, b64(newCP.Root))
	fmt.Fprintf(stdout, "result:         OK (the newer log extends the older one; nothing was changed or removed)\n")
	return nil
}

func auditKey(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit key", "audit key --origin ORIGIN --out FILE [--vkey-out FILE]", stderr)
	origin := fs.String("origin", "", `log origin, e.g. "tongban.gov/node-1" (the audit config's origin)`)
	out := fs.String("out", "", "file to create with the signing key (mode 0600; never overwritten)")
	vout := fs.String("vkey-out", "", "file to create with the verifier key (optional)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	if *origin == "" || *out == "" {
		return usagef("--origin and --out are required")
	}
	skey, vkey, err := audit.GenerateKey(*origin)
	if err != nil {
		return err
	}
	if err := createFile(*out, skey+"\n", 0o600); err != nil {
		return err
	}
	if *vout != "" {
		if err := createFile(*vout, vkey+"\n", 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintln(stdout, vkey)
	return nil
}

// createFile writes a new file, refusing to replace an existing one.
func createFile(path, content string, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	_, err = f.WriteString(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
