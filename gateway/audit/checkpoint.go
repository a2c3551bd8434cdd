package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/tongban/tongban/gateway/audit/merkle"
)

// ErrCheckpoint reports a checkpoint that is malformed, badly signed, or
// does not match the log.
var ErrCheckpoint = errors.New("audit checkpoint invalid")

// Checkpoint is a signed statement of the log's size and root hash, in the
// C2SP tlog-checkpoint format inside a C2SP signed note. Its body is
//
//	<origin>\n<size>\n<base64 root hash>\n
type Checkpoint struct {
	// Origin names the log; it equals the signing key's name.
	Origin string
	// Size is the number of entries the checkpoint covers.
	Size uint64
	// Root is the RFC 6962 root hash of the first Size entries.
	Root merkle.Hash
	// Note is the complete signed note text, verifiable with the log's
	// public key alone.
	Note string
}

// checkpointBody returns the tlog-checkpoint body.
func checkpointBody(origin string, size uint64, root merkle.Hash) string {
	return fmt.Sprintf("%s\n%d\n%s\n", origin, size, base64.StdEncoding.EncodeToString(root[:]))
}

// parseCheckpointBody parses a tlog-checkpoint body. Extension lines after
// the root hash are allowed and ignored.
func parseCheckpointBody(text string) (origin string, size uint64, root merkle.Hash, err error) {
	lines := strings.SplitAfterN(text, "\n", 4)
	if len(lines) < 3 {
		return "", 0, root, fmt.Errorf("%w: fewer than three lines", ErrCheckpoint)
	}
	for i := range 3 {
		if !strings.HasSuffix(lines[i], "\n") {
			return "", 0, root, fmt.Errorf("%w: line %d not terminated", ErrCheckpoint, i+1)
		}
		lines[i] = strings.TrimSuffix(lines[i], "\n")
	}
	origin = lines[0]
	if origin == "" {
		return "", 0, root, fmt.Errorf("%w: empty origin", ErrCheckpoint)
	}
	size, err = strconv.ParseUint(lines[1], 10, 64)
	if err != nil || (len(lines[1]) > 1 && lines[1][0] == '0') {
		return "", 0, root, fmt.Errorf("%w: bad tree size %q", ErrCheckpoint, lines[1])
	}
	h, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(h) != merkle.Size {
		return "", 0, root, fmt.Errorf("%w: bad root hash %q", ErrCheckpoint, lines[2])
	}
	copy(root[:], h)
	return origin, size, root, nil
}

// signCheckpoint signs a checkpoint for the given tree head.
func signCheckpoint(s note.Signer, origin string, size uint64, root merkle.Hash) (Checkpoint, error) {
	msg, err := note.Sign(&note.Note{Text: checkpointBody(origin, size, root)}, s)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("signing checkpoint of size %d: %w", size, err)
	}
	return Checkpoint{Origin: origin, Size: size, Root: root, Note: string(msg)}, nil
}

// OpenCheckpoint verifies a signed checkpoint note with the verifier key
// (signed-note public key text, as made by GenerateKey) and parses it. The
// checkpoint's origin must equal the key's name.
func OpenCheckpoint(signedNote, verifierKey string) (Checkpoint, error) {
	v, err := note.NewVerifier(verifierKey)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: verifier key: %v", ErrCheckpoint, err)
	}
	return openCheckpoint(signedNote, v)
}

func openCheckpoint(signedNote string, v note.Verifier) (Checkpoint, error) {
	n, err := note.Open([]byte(signedNote), note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: signature: %v", ErrCheckpoint, err)
	}
	origin, size, root, err := parseCheckpointBody(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	if origin != v.Name() {
		return Checkpoint{}, fmt.Errorf("%w: origin %q is not the key name %q", ErrCheckpoint, origin, v.Name())
	}
	return Checkpoint{Origin: origin, Size: size, Root: root, Note: signedNote}, nil
}

// GenerateKey makes a new Ed25519 key pair for a log named origin, in the
// signed-note text formats: skey for Config.SigningKey (keep it secret),
// vkey for verifiers.
func GenerateKey(origin string) (skey, vkey string, err error) {
	skey, vkey, err = note.GenerateKey(rand.Reader, origin)
	if err != nil {
		return "", "", fmt.Errorf("generating checkpoint key for %q: %w", origin, err)
	}
	return skey, vkey, nil
}

// VerifierKey derives the public verifier key text from a signing key.
func VerifierKey(skey string) (string, error) {
	s, err := note.NewSigner(skey)
	if err != nil {
		return "", fmt.Errorf("parsing signing key: %w", err)
	}
	// "PRIVATE+KEY+<name>+<hash>+<base64(alg || seed)>"
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 {
		return "", errors.New("parsing signing key: unexpected format")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", errors.New("parsing signing key: not an Ed25519 key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(s.Name(), pub)
	if err != nil {
		return "", fmt.Errorf("deriving verifier key: %w", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil || v.KeyHash() != s.KeyHash() {
		return "", errors.New("deriving verifier key: key hash mismatch")
	}
	return vkey, nil
}

// LoadKeyFile reads a signing or verifier key from a file, ignoring
// surrounding white space, and checks that it parses as one.
func LoadKeyFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading key file: %w", err)
	}
	k := strings.TrimSpace(string(b))
	if strings.HasPrefix(k, "PRIVATE+KEY+") {
		if _, err := note.NewSigner(k); err != nil {
			return "", fmt.Errorf("key file %s: %w", path, err)
		}
		return k, nil
	}
	if _, err := note.NewVerifier(k); err != nil {
		return "", fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// ResolveVerifierKey returns the verifier key text given either the key
// itself or the path of a file holding a verifier key or a signing key
// (whose public half is derived).
func ResolveVerifierKey(keyOrFile string) (string, error) {
	k := strings.TrimSpace(keyOrFile)
	if _, err := note.NewVerifier(k); err == nil {
		return k, nil
	}
	if strings.HasPrefix(k, "PRIVATE+KEY+") {
		return VerifierKey(k)
	}
	k, err := LoadKeyFile(keyOrFile)
	if err != nil {
		return "", fmt.Errorf("%q is neither a verifier key nor a readable key file: %w", keyOrFile, err)
	}
	if strings.HasPrefix(k, "PRIVATE+KEY+") {
		return VerifierKey(k)
	}
	return k, nil
}
