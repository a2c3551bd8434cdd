package identity

import (
	"crypto/x509"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tongban/tongban/gateway/auth"
)

func newCA(t *testing.T) *CA {
	t.Helper()
	ca, err := IssueCA("Test CA", 24*time.Hour)
	if err != nil {
		t.Fatalf("IssueCA: %v", err)
	}
	return ca
}

func verify(ca *CA, c *x509.Certificate, usage x509.ExtKeyUsage, dns string) error {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	_, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}, DNSName: dns})
	return err
}

func TestIssueClient(t *testing.T) {
	ca := newCA(t)
	id := auth.Identity{SystemID: "approval-bureau", Department: "approval", Region: "130100", Roles: []string{"window"}}
	is, err := ca.IssueClient(id, time.Hour)
	if err != nil {
		t.Fatalf("IssueClient: %v", err)
	}
	if err := verify(ca, is.Cert, x509.ExtKeyUsageClientAuth, ""); err != nil {
		t.Fatalf("client certificate does not verify for client auth: %v", err)
	}
	if err := verify(ca, is.Cert, x509.ExtKeyUsageServerAuth, ""); err == nil {
		t.Fatal("client certificate verifies for server auth")
	}
	got, err := ParseIdentity(is.Cert)
	if err != nil {
		t.Fatalf("ParseIdentity: %v", err)
	}
	if !reflect.DeepEqual(got, id) {
		t.Fatalf("ParseIdentity = %+v, want %+v", got, id)
	}
	if other := newCA(t); verify(other, is.Cert, x509.ExtKeyUsageClientAuth, "") == nil {
		t.Fatal("client certificate verifies against another CA")
	}
	if _, err := ca.IssueClient(auth.Identity{SystemID: "x"}, time.Hour); err == nil {
		t.Fatal("issued a certificate for an identity without department and region")
	}
	if _, err := ca.IssueClient(id, 48*time.Hour); err == nil || !strings.Contains(err.Error(), "outlive the CA") {
		t.Fatalf("issuing past the CA's expiry: err = %v", err)
	}
}

func TestIssueServer(t *testing.T) {
	ca := newCA(t)
	is, err := ca.IssueServer([]string{"127.0.0.1", "localhost", "gw.tongban.internal"}, time.Hour)
	if err != nil {
		t.Fatalf("IssueServer: %v", err)
	}
	for _, host := range []string{"127.0.0.1", "localhost", "gw.tongban.internal"} {
		if err := verify(ca, is.Cert, x509.ExtKeyUsageServerAuth, host); err != nil {
			t.Errorf("server certificate does not verify for %s: %v", host, err)
		}
	}
	if err := verify(ca, is.Cert, x509.ExtKeyUsageServerAuth, "example.org"); err == nil {
		t.Error("server certificate verifies for example.org")
	}
	if _, err := ParseIdentity(is.Cert); err == nil {
		t.Error("a server certificate yields a client identity")
	}
	for _, hosts := range [][]string{nil, {"bad host"}, {"-x.example"}, {""}} {
		if _, err := ca.IssueServer(hosts, time.Hour); err == nil {
			t.Errorf("IssueServer(%q) succeeded", hosts)
		}
	}
}

func TestNameConstraint(t *testing.T) {
	// The CA may sign only URIs in the Tongban trust domain: a certificate
	// with another domain's URI, however it was made, does not verify.
	ca := newCA(t)
	u, _ := url.Parse("spiffe://example.org/region/130100/department/approval/system/a")
	is, err := ca.issue(&x509.Certificate{URIs: []*url.URL{u}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, time.Hour)
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	if err := verify(ca, is.Cert, x509.ExtKeyUsageClientAuth, ""); err == nil {
		t.Fatal("a certificate outside the trust domain verifies")
	}
}

func TestParseIdentityURICount(t *testing.T) {
	ca := newCA(t)
	a, _ := url.Parse("spiffe://tongban.gov/region/130100/department/approval/system/a")
	b, _ := url.Parse("spiffe://tongban.gov/region/130100/department/approval/system/b")
	other, _ := url.Parse("https://approval.example/about")
	cases := []struct {
		name string
		uris []*url.URL
		want string
		ok   bool
	}{
		{"none", nil, "no spiffe://tongban.gov/ identity URI", false},
		{"two", []*url.URL{a, b}, "carries 2", false},
		{"one and an unrelated URI", []*url.URL{other, a}, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			is, err := ca.issue(&x509.Certificate{URIs: tc.uris, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, time.Hour)
			if err != nil {
				t.Fatalf("issue: %v", err)
			}
			id, err := ParseIdentity(is.Cert)
			if tc.ok {
				if err != nil || id.SystemID != "a" {
					t.Fatalf("ParseIdentity = %+v, %v", id, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseIdentity err = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := ParseIdentity(nil); err == nil {
		t.Fatal("ParseIdentity(nil) succeeded")
	}
}

func TestWriteLoadCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca := newCA(t)
	if err := WriteCA(dir, ca); err != nil {
		t.Fatalf("WriteCA: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode = %v, want 0600", fi.Mode().Perm())
	}
	if err := WriteCA(dir, newCA(t)); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("second WriteCA: err = %v, want a refusal", err)
	}
	loaded, err := LoadCA(dir)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	if !loaded.Cert.Equal(ca.Cert) {
		t.Fatal("loaded a different CA certificate")
	}
	is, err := loaded.IssueClient(auth.Identity{SystemID: "s", Department: "d", Region: "130100"}, time.Hour)
	if err != nil {
		t.Fatalf("IssueClient with the loaded CA: %v", err)
	}
	if err := verify(ca, is.Cert, x509.ExtKeyUsageClientAuth, ""); err != nil {
		t.Fatalf("certificate from the loaded CA does not verify: %v", err)
	}

	certPath, keyPath, err := WriteIssued(filepath.Join(dir, "clients", "s"), is)
	if err != nil {
		t.Fatalf("WriteIssued: %v", err)
	}
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("client key %s: %v, mode %v", keyPath, err, fi.Mode().Perm())
	}
	if certs, err := ReadCertificates(certPath); err != nil || !certs[0].Equal(is.Cert) {
		t.Fatalf("ReadCertificates(%s) = %v, %v", certPath, certs, err)
	}
	if _, _, err := WriteIssued(filepath.Join(dir, "clients", "s"), is); err == nil {
		t.Fatal("WriteIssued overwrote an existing certificate")
	}

	if err := os.Chmod(filepath.Join(dir, CAKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(dir); err == nil || !strings.Contains(err.Error(), "accessible to others") {
		t.Fatalf("LoadCA with a world-readable key: err = %v", err)
	}
}

func TestLoadCAMismatch(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	if err := WriteCA(a, newCA(t)); err != nil {
		t.Fatal(err)
	}
	if err := WriteCA(b, newCA(t)); err != nil {
		t.Fatal(err)
	}
	// b's key with a's certificate.
	crt, err := os.ReadFile(filepath.Join(a, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b, CACertFile), crt, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(b); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("LoadCA with a mismatched key: err = %v", err)
	}
}
