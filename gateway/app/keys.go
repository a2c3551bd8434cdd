package app

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tongban/tongban/gateway/audit"
)

// signingKey loads the node's checkpoint signing key from path, creating a
// new key for origin when the file does not exist.
func signingKey(path, origin string) (skey, vkey string, err error) {
	skey, err = audit.LoadKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		skey, vkey, err = audit.GenerateKey(origin)
		if err != nil {
			return "", "", fmt.Errorf("generating the audit signing key: %w", err)
		}
		if err := writeSecret(path, skey+"\n"); err != nil {
			return "", "", err
		}
		return skey, vkey, nil
	}
	if err != nil {
		return "", "", fmt.Errorf("reading the audit signing key: %w", err)
	}
	vkey, err = audit.VerifierKey(skey)
	if err != nil {
		return "", "", fmt.Errorf("audit signing key %s: %w", path, err)
	}
	return skey, vkey, nil
}

// subjectKey loads the HMAC key that hashes subject identifiers (64 hex
// digits), creating one when the file does not exist.
func subjectKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		return key, writeSecret(path, hex.EncodeToString(key)+"\n")
	}
	if err != nil {
		return nil, fmt.Errorf("reading the subject key: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) < 32 {
		return nil, fmt.Errorf("subject key %s: want at least 64 hex digits", path)
	}
	return key, nil
}

func writeSecret(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}
