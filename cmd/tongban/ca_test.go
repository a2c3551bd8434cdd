package main

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tongban/tongban/gateway/auth"
	"github.com/tongban/tongban/gateway/identity"
)

func runCA(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"ca"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestCACommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")

	code, out, errs := runCA(t, "init", "--dir", dir, "--name", "Hebei exchange CA")
	if code != 0 {
		t.Fatalf("ca init: exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "sha256") || !strings.Contains(out, "Hebei exchange CA") {
		t.Errorf("ca init output lacks the name or fingerprint:\n%s", out)
	}
	fi, err := os.Stat(filepath.Join(dir, "ca.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key: %v, mode %v", err, fi.Mode().Perm())
	}
	roots := x509.NewCertPool()
	caCerts, err := identity.ReadCertificates(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if caCerts[0].Subject.CommonName != "Hebei exchange CA" || !caCerts[0].IsCA {
		t.Fatalf("CA certificate = %v", caCerts[0].Subject)
	}
	roots.AddCert(caCerts[0])

	if code, _, errs := runCA(t, "init", "--dir", dir); code != 1 || !strings.Contains(errs, "refusing to overwrite") {
		t.Fatalf("second ca init: exit %d: %s", code, errs)
	}

	t.Run("client", func(t *testing.T) {
		code, out, errs := runCA(t, "issue", "--dir", dir, "--system", "field-terminals", "--department", "enforcement",
			"--region", "130102", "--role", "inspector", "--role", "auditor")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		const uri = "spiffe://tongban.gov/region/130102/department/enforcement/system/field-terminals/role/auditor/role/inspector"
		if !strings.Contains(out, uri) {
			t.Errorf("output lacks the identity URI:\n%s", out)
		}
		certs, err := identity.ReadCertificates(filepath.Join(dir, "clients", "field-terminals.crt"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Fatalf("client certificate does not verify: %v", err)
		}
		id, err := identity.ParseIdentity(certs[0])
		if err != nil {
			t.Fatal(err)
		}
		want := auth.Identity{SystemID: "field-terminals", Department: "enforcement", Region: "130102", Roles: []string{"auditor", "inspector"}}
		if !reflect.DeepEqual(id, want) {
			t.Fatalf("identity = %+v, want %+v", id, want)
		}
		if fi, err := os.Stat(filepath.Join(dir, "clients", "field-terminals.key")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("client key: %v", err)
		}
	})

	t.Run("subject with --out", func(t *testing.T) {
		prefix := filepath.Join(t.TempDir(), "citizen")
		code, _, errs := runCA(t, "issue", "--dir", dir, "--system", "citizen-portal", "--department", "service_hall",
			"--region", "130100", "--role", "subject", "--subject", "11010519491231002X", "--days", "30", "--out", prefix)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		certs, err := identity.ReadCertificates(prefix + ".crt")
		if err != nil {
			t.Fatal(err)
		}
		id, err := identity.ParseIdentity(certs[0])
		if err != nil || id.Subject != "11010519491231002X" {
			t.Fatalf("identity = %+v, %v", id, err)
		}
		if d := certs[0].NotAfter.Sub(certs[0].NotBefore).Hours() / 24; d < 30 || d > 31 {
			t.Errorf("validity = %.1f days, want 30", d)
		}
	})

	t.Run("server", func(t *testing.T) {
		code, out, errs := runCA(t, "issue", "--dir", dir, "--server", "--host", "127.0.0.1", "--host", "localhost")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		if !strings.Contains(out, "127.0.0.1, localhost") {
			t.Errorf("output lacks the hosts:\n%s", out)
		}
		certs, err := identity.ReadCertificates(filepath.Join(dir, "server.crt"))
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range []string{"127.0.0.1", "localhost"} {
			if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, DNSName: h}); err != nil {
				t.Errorf("server certificate does not verify for %s: %v", h, err)
			}
		}
		// The pair loads as the gateway's TLS configuration.
		if _, err := identity.ServerTLSConfig(identity.ServerFiles{
			CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key"),
			ClientCAFile: filepath.Join(dir, "ca.crt"), ClientAuth: identity.ClientAuthRequire,
		}); err != nil {
			t.Fatalf("ServerTLSConfig: %v", err)
		}
	})

	errCases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, 2, "missing command"},
		{"unknown command", []string{"revoke"}, 2, "unknown ca command"},
		{"init without dir", []string{"init"}, 2, "--dir is required"},
		{"issue without dir", []string{"issue", "--system", "s"}, 2, "--dir is required"},
		{"bad region", []string{"issue", "--dir", dir, "--system", "s", "--department", "d", "--region", "13010"}, 2, "region"},
		{"missing department", []string{"issue", "--dir", dir, "--system", "s", "--region", "130100"}, 2, "department"},
		{"bad system", []string{"issue", "--dir", dir, "--system", "a/b", "--department", "d", "--region", "130100"}, 2, "system"},
		{"subject without role", []string{"issue", "--dir", dir, "--system", "s", "--department", "d", "--region", "130100", "--subject", "11010519491231002X"}, 2, "subject"},
		{"server without host", []string{"issue", "--dir", dir, "--server"}, 2, "--host"},
		{"server with system", []string{"issue", "--dir", dir, "--server", "--host", "h", "--system", "s"}, 2, "--host only"},
		{"host without server", []string{"issue", "--dir", dir, "--host", "h", "--system", "s", "--department", "d", "--region", "130100"}, 2, "--host is for"},
		{"zero days", []string{"issue", "--dir", dir, "--system", "s", "--department", "d", "--region", "130100", "--days", "0"}, 2, "--days"},
		{"past the CA", []string{"issue", "--dir", dir, "--system", "s", "--department", "d", "--region", "130100", "--days", "5000"}, 1, "outlive the CA"},
		{"no CA", []string{"issue", "--dir", t.TempDir(), "--system", "s", "--department", "d", "--region", "130100"}, 1, "CA key"},
		{"existing certificate", []string{"issue", "--dir", dir, "--system", "field-terminals", "--department", "enforcement", "--region", "130102"}, 1, "exists"},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runCA(t, tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d mentioning %q", code, errs, tc.code, tc.want)
			}
		})
	}
}
