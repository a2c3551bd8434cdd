package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tongban/tongban/gateway/auth"
)

// Default validity periods.
const (
	DefaultCAValidity     = 10 * 365 * 24 * time.Hour
	DefaultClientValidity = 365 * 24 * time.Hour
	DefaultServerValidity = 365 * 24 * time.Hour
)

// File names inside a CA directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// backdate is how far before "now" certificates start, to tolerate clock
// skew between the CA and the parties.
const backdate = 5 * time.Minute

// CA is a certificate authority: an ECDSA P-256 key and its self-signed
// certificate.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Issued is a key pair issued by a CA, with both halves PEM-encoded.
type Issued struct {
	Cert    *x509.Certificate
	CertPEM []byte
	// KeyPEM is the PKCS #8 private key.
	KeyPEM []byte
}

// Fingerprint returns the hex SHA-256 of the certificate's DER encoding.
func (is *Issued) Fingerprint() string { return Fingerprint(is.Cert) }

// Fingerprint returns the hex SHA-256 of a certificate's DER encoding.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// IssueCA creates a new CA named name, valid for validity from now.
func IssueCA(name string, validity time.Duration) (*CA, error) {
	if strings.TrimSpace(name) == "" {
		return nil, errors.New("issuing a CA: the name must not be empty")
	}
	if validity <= 0 {
		return nil, errors.New("issuing a CA: validity must be positive")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Tongban"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		// Only Tongban identities may be issued under this CA.
		PermittedURIDomains: []string{TrustDomain},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("signing the CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// CertPEM returns the CA certificate, PEM-encoded.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// KeyPEM returns the CA's PKCS #8 private key, PEM-encoded.
func (ca *CA) KeyPEM() ([]byte, error) { return keyPEM(ca.Key) }

// IssueClient issues a client certificate carrying id as its identity URI.
func (ca *CA) IssueClient(id auth.Identity, validity time.Duration) (*Issued, error) {
	u, err := URI(id)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject: pkix.Name{
			CommonName:         id.SystemID,
			Organization:       []string{"Tongban"},
			OrganizationalUnit: []string{id.Department},
		},
		URIs:        []*url.URL{u},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return ca.issue(tmpl, validity)
}

// IssueServer issues a server certificate for hosts (DNS names or IP
// addresses), for the gateway's listeners.
func (ca *CA) IssueServer(hosts []string, validity time.Duration) (*Issued, error) {
	if len(hosts) == 0 {
		return nil, errors.New("issuing a server certificate: name at least one host")
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0], Organization: []string{"Tongban"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			continue
		}
		if !validHostname(h) {
			return nil, fmt.Errorf("issuing a server certificate: %q is neither an IP address nor a DNS name", h)
		}
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	return ca.issue(tmpl, validity)
}

func (ca *CA) issue(tmpl *x509.Certificate, validity time.Duration) (*Issued, error) {
	if validity <= 0 {
		return nil, errors.New("issuing a certificate: validity must be positive")
	}
	now := time.Now()
	if ca.Now != nil {
		now = ca.Now()
	}
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("issuing a certificate: it would outlive the CA, which expires %s", ca.Cert.NotAfter.UTC().Format(time.DateOnly))
	}
	if now.After(ca.Cert.NotAfter) {
		return nil, errors.New("issuing a certificate: the CA has expired")
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.BasicConstraintsValid = true
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating a key: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("signing the certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the issued certificate: %w", err)
	}
	kp, err := keyPEM(key)
	if err != nil {
		return nil, err
	}
	return &Issued{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  kp,
	}, nil
}

// ParseIdentity returns the identity a client certificate carries: its one
// URI subject alternative name in the Tongban trust domain. The certificate
// must already have been verified against the client CA (the TLS handshake
// does that); ParseIdentity only reads it.
func ParseIdentity(cert *x509.Certificate) (auth.Identity, error) {
	if cert == nil {
		return auth.Identity{}, errors.New("no certificate")
	}
	var found []string
	for _, u := range cert.URIs {
		if s := u.String(); IsTongbanURI(s) {
			found = append(found, s)
		}
	}
	switch len(found) {
	case 0:
		return auth.Identity{}, fmt.Errorf("the certificate carries no %s identity URI", prefix)
	case 1:
	default:
		return auth.Identity{}, fmt.Errorf("the certificate carries %d %s identity URIs; it must carry one", len(found), prefix)
	}
	return ParseURI(found[0])
}

// WriteCA writes the CA's certificate (0644) and key (0600) into dir, which
// is created if needed. Existing files are never overwritten.
func WriteCA(dir string, ca *CA) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	kp, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	if err := writeNew(filepath.Join(dir, CAKeyFile), kp, 0o600); err != nil {
		return err
	}
	return writeNew(filepath.Join(dir, CACertFile), ca.CertPEM(), 0o644)
}

// LoadCA reads a CA written by WriteCA. It refuses a key file readable by
// others than its owner.
func LoadCA(dir string) (*CA, error) {
	keyPath := filepath.Join(dir, CAKeyFile)
	fi, err := os.Stat(keyPath)
	if err != nil {
		return nil, fmt.Errorf("reading the CA key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("the CA key %s is accessible to others (mode %v): chmod 600 it", keyPath, fi.Mode().Perm())
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("reading the CA key: %w", err)
	}
	key, err := parseKeyPEM(kb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	certs, err := ReadCertificates(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, err
	}
	cert := certs[0]
	if !cert.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate", filepath.Join(dir, CACertFile))
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("the CA key in %s does not match the CA certificate", dir)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// WriteIssued writes prefix.crt (0644) and prefix.key (0600), never
// overwriting existing files.
func WriteIssued(prefix string, is *Issued) (certPath, keyPath string, err error) {
	certPath, keyPath = prefix+".crt", prefix+".key"
	if d := filepath.Dir(prefix); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", "", fmt.Errorf("creating %s: %w", d, err)
		}
	}
	if _, err := os.Stat(certPath); err == nil {
		return "", "", fmt.Errorf("%s exists; remove it or choose another --out", certPath)
	}
	if err := writeNew(keyPath, is.KeyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := writeNew(certPath, is.CertPEM, 0o644); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

// ReadCertificates reads the PEM certificates of a file, in order.
func ReadCertificates(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading certificates: %w", err)
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return out, nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists; refusing to overwrite it", path)
		}
		return fmt.Errorf("creating %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func keyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding a private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseKeyPEM(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM PKCS #8 private key")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing the private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("the private key cannot sign")
	}
	return s, nil
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating a serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimPrefix(h, "*."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
