// Package testutil holds helpers shared by the tests of the built-in
// connector types: error assertions and a test certificate authority.
package testutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tongban/tongban/schemas/apierr"
)

// WantCode fails t unless err is an *apierr.Error with the given code and,
// when reason is not empty, reason.
func WantCode(t testing.TB, err error, code codes.Code, reason string) *apierr.Error {
	t.Helper()
	var e *apierr.Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v (%T), want *apierr.Error with code %v", err, err, code)
	}
	if e.Code != code || (reason != "" && e.Reason != reason) {
		t.Fatalf("error = %v (code %v, reason %s), want code %v reason %q", err, e.Code, e.Reason, code, reason)
	}
	return e
}

// Cert is a PEM certificate and key written to files.
type Cert struct {
	CertFile, KeyFile string
	Cert              *x509.Certificate
	DER               []byte
	Key               *ecdsa.PrivateKey
}

// CA is a throwaway certificate authority.
type CA struct {
	Cert
	Pool *x509.CertPool
}

// NewCA creates a CA whose files live in t.TempDir().
func NewCA(t testing.TB) *CA {
	t.Helper()
	ca := &CA{}
	ca.Cert = issue(t, "ca", &x509.Certificate{
		Subject:               pkix.Name{CommonName: "tongban test CA"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}, nil)
	ca.Pool = x509.NewCertPool()
	ca.Pool.AddCert(ca.Cert.Cert)
	return ca
}

// Server issues a server certificate for 127.0.0.1.
func (ca *CA) Server(t testing.TB) Cert {
	t.Helper()
	return issue(t, "server", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}, &ca.Cert)
}

// Client issues a client certificate.
func (ca *CA) Client(t testing.TB, name string) Cert {
	t.Helper()
	return issue(t, "client-"+name, &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}, &ca.Cert)
}

var serial atomic.Int64

func issue(t testing.TB, name string, tmpl *x509.Certificate, parent *Cert) Cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(serial.Add(1))
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := Cert{CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key"), Cert: cert, DER: der, Key: key}
	if err := os.WriteFile(c.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}
