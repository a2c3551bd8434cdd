package cache

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// sealVersion is the first byte of every sealed value.
const sealVersion = 1

// maxKeyIDLen bounds a key id, which is stored in every sealed value.
const maxKeyIDLen = 32

// Keyring holds the AES-256-GCM keys that seal cache values before they
// leave the process: one current key seals, and every key in the ring
// (the current one and retired ones still being rotated out) opens. Each
// sealed value names the id of its key, so keys rotate without flushing the
// cache: add the new key as current, keep the old one until the values it
// sealed have expired, then drop it. A Keyring is safe for concurrent use.
type Keyring struct {
	current string
	ids     []string // current first
	aeads   map[string]cipher.AEAD
	names   map[string][]byte // per key: HMAC key for Redis key names
}

// NewKeyring returns a keyring sealing with keys[current]. Every key must be
// 32 bytes (AES-256); ids are 1 to 32 characters of letters, digits, '.',
// '_' or '-'.
func NewKeyring(current string, keys map[string][]byte) (*Keyring, error) {
	if _, ok := keys[current]; !ok {
		return nil, fmt.Errorf("cache keyring: current key %q is not among the keys", current)
	}
	k := &Keyring{current: current, aeads: map[string]cipher.AEAD{}, names: map[string][]byte{}}
	ids := make([]string, 0, len(keys))
	for id := range keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	k.ids = append(k.ids, current)
	for _, id := range ids {
		if err := validKeyID(id); err != nil {
			return nil, err
		}
		secret := keys[id]
		if len(secret) != 32 {
			return nil, fmt.Errorf("cache keyring: key %q is %d bytes, want 32 (AES-256)", id, len(secret))
		}
		block, err := aes.NewCipher(secret)
		if err != nil {
			return nil, fmt.Errorf("cache keyring: key %q: %w", id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("cache keyring: key %q: %w", id, err)
		}
		names, err := hkdf.Key(sha256.New, secret, nil, "tongban cache key names v1", 32)
		if err != nil {
			return nil, fmt.Errorf("cache keyring: deriving name key of %q: %w", id, err)
		}
		k.aeads[id], k.names[id] = aead, names
		if id != current {
			k.ids = append(k.ids, id)
		}
	}
	return k, nil
}

func validKeyID(id string) error {
	if id == "" || len(id) > maxKeyIDLen {
		return fmt.Errorf("cache keyring: key id %q must be 1 to %d characters", id, maxKeyIDLen)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("cache keyring: key id %q may hold only letters, digits, '.', '_' and '-'", id)
		}
	}
	return nil
}

// ParseKeyring reads a keyring from its text form, as kept in config or the
// environment: comma-separated "id:base64key" pairs, the first being the
// current key, e.g. "k2:<44 base64 chars>,k1:<44 base64 chars>". Keys are
// standard base64 of 32 random bytes (`openssl rand -base64 32`).
func ParseKeyring(spec string) (*Keyring, error) {
	keys := map[string][]byte{}
	current := ""
	for i, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, b64, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("cache keyring: entry %d: want id:base64key", i+1)
		}
		secret, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
		if err != nil {
			return nil, fmt.Errorf("cache keyring: key %q is not standard base64", id)
		}
		if _, dup := keys[id]; dup {
			return nil, fmt.Errorf("cache keyring: key id %q appears twice", id)
		}
		keys[id] = secret
		if current == "" {
			current = id
		}
	}
	if current == "" {
		return nil, errors.New("cache keyring: no keys given")
	}
	return NewKeyring(current, keys)
}

// NewRandomKeyring returns a keyring with one fresh random key, for a single
// node or tests; several nodes sharing Redis must share their keys.
func NewRandomKeyring(id string) (*Keyring, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("cache keyring: %w", err)
	}
	return NewKeyring(id, map[string][]byte{id: secret})
}

// CurrentID returns the id of the key that seals.
func (k *Keyring) CurrentID() string { return k.current }

// Seal encrypts plaintext under the current key. aad is authenticated but not
// stored: Open must be given the same aad, so a value bound to one cache key
// does not open under another. The result is: version byte, key id length,
// key id, nonce, ciphertext with tag.
func (k *Keyring) Seal(plaintext, aad []byte) ([]byte, error) {
	aead := k.aeads[k.current]
	head := make([]byte, 0, 2+len(k.current)+aead.NonceSize())
	head = append(head, sealVersion, byte(len(k.current)))
	head = append(head, k.current...)
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("sealing: reading a nonce: %w", err)
	}
	out := append(head, nonce...)
	return aead.Seal(out, nonce, plaintext, sealedAAD(head, aad)), nil
}

// errUnsealable is wrapped by every Open failure.
var errUnsealable = errors.New("sealed value cannot be opened")

// Open decrypts a value made by Seal with a key of the ring. It fails when the
// value was altered, sealed under another aad, or under a key not in the ring.
func (k *Keyring) Open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < 2 || sealed[0] != sealVersion {
		return nil, fmt.Errorf("%w: unknown format", errUnsealable)
	}
	n := int(sealed[1])
	if len(sealed) < 2+n {
		return nil, fmt.Errorf("%w: truncated", errUnsealable)
	}
	id := string(sealed[2 : 2+n])
	aead, ok := k.aeads[id]
	if !ok {
		return nil, fmt.Errorf("%w: key id %q is not in the keyring", errUnsealable, id)
	}
	rest := sealed[2+n:]
	if len(rest) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("%w: truncated", errUnsealable)
	}
	head := sealed[:2+n]
	nonce, ct := rest[:aead.NonceSize()], rest[aead.NonceSize():]
	pt, err := aead.Open(nil, nonce, ct, sealedAAD(head, aad))
	if err != nil {
		return nil, fmt.Errorf("%w: key %q: authentication failed", errUnsealable, id)
	}
	return pt, nil
}

// sealedAAD binds the header (version and key id) and the caller's aad.
func sealedAAD(head, aad []byte) []byte {
	out := make([]byte, 0, len(head)+len(aad))
	return append(append(out, head...), aad...)
}

// names returns the keyed digest of s under every key of the ring, the
// current key's first. Redis key names are such digests, so they reveal
// neither the identifiers looked up nor a hash that could be brute-forced
// without the key.
func (k *Keyring) nameDigests(s string) []string {
	out := make([]string, 0, len(k.ids))
	for _, id := range k.ids {
		out = append(out, k.digest(id, s))
	}
	return out
}

func (k *Keyring) currentDigest(s string) string { return k.digest(k.current, s) }

func (k *Keyring) digest(id, s string) string {
	m := hmac.New(sha256.New, k.names[id])
	m.Write([]byte(s))
	return hex.EncodeToString(m.Sum(nil)[:20])
}
