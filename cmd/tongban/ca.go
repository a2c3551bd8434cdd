package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/tongban/tongban/gateway/auth"
	"github.com/tongban/tongban/gateway/identity"
)

const caUsage = `Usage: tongban ca COMMAND [flags]

Commands (offline; they read and write files in --dir):
  init    create the certificate authority of an exchange: an ECDSA P-256
          key (ca.key, mode 0600) and its certificate (ca.crt)
  issue   issue a member system's client certificate, whose URI carries the
          identity the policy engine sees:
            tongban ca issue --dir DIR --system ID --department D --region CODE [--role R ...]
          or, with --server, the gateway's server certificate:
            tongban ca issue --dir DIR --server --host 127.0.0.1 --host localhost

See docs/security.md for the identity URI format and the server.tls settings.
`

func cmdCA(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "--help" || args[0] == "-h" || args[0] == "help" {
		fmt.Fprint(stderr, caUsage)
		if len(args) == 0 {
			return usagef("missing command")
		}
		return nil
	}
	switch args[0] {
	case "init":
		return caInit(args[1:], stdout, stderr)
	case "issue":
		return caIssue(args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, caUsage)
	return usagef("unknown ca command %q", args[0])
}

func caInit(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ca init", "ca init --dir DIR [--name NAME] [--days N]", stderr)
	dir := fs.String("dir", "", "directory to create the CA in (ca.crt, ca.key)")
	name := fs.String("name", "Tongban exchange CA", "common name of the CA certificate")
	days := fs.Int("days", 3650, "validity in days")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	if *dir == "" {
		return usagef("--dir is required")
	}
	if *days <= 0 {
		return usagef("--days must be positive")
	}
	ca, err := identity.IssueCA(*name, time.Duration(*days)*24*time.Hour)
	if err != nil {
		return err
	}
	if err := identity.WriteCA(*dir, ca); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created CA %q, valid until %s\n", *name, ca.Cert.NotAfter.UTC().Format(time.DateOnly))
	fmt.Fprintf(stdout, "  certificate  %s   (give it to member systems and set server.tls.client_ca_file to it)\n", filepath.Join(*dir, identity.CACertFile))
	fmt.Fprintf(stdout, "  private key  %s   (mode 0600; keep it offline)\n", filepath.Join(*dir, identity.CAKeyFile))
	fmt.Fprintf(stdout, "  sha256       %s\n", identity.Fingerprint(ca.Cert))
	return nil
}

func caIssue(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ca issue", "ca issue --dir DIR (--system ID --department D --region CODE [--role R ...] | --server --host H ...) [--days N] [--out PREFIX]", stderr)
	dir := fs.String("dir", "", "CA directory (from ca init)")
	server := fs.Bool("server", false, "issue the gateway's server certificate instead of a client certificate")
	var hosts, roles listFlag
	fs.Var(&hosts, "host", "with --server: DNS name or IP address of the gateway (repeated or comma-separated)")
	system := fs.String("system", "", "member system id, e.g. approval-bureau")
	department := fs.String("department", "", "the system's department, e.g. approval")
	region := fs.String("region", "", "six-digit administrative division code of the system's jurisdiction, e.g. 130100")
	fs.Var(&roles, "role", "role held (repeated or comma-separated): admin, legal_reviewer, auditor, subject, or a department role named by grants")
	subject := fs.String("subject", "", "with --role subject: the credit code or resident ID whose access log the holder may read")
	days := fs.Int("days", 365, "validity in days")
	out := fs.String("out", "", "write PREFIX.crt and PREFIX.key (default DIR/clients/SYSTEM, or DIR/server with --server)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	if *dir == "" {
		return usagef("--dir is required")
	}
	if *days <= 0 {
		return usagef("--days must be positive")
	}
	validity := time.Duration(*days) * 24 * time.Hour

	var id auth.Identity
	if *server {
		if len(hosts) == 0 {
			return usagef("--server needs at least one --host")
		}
		if *system != "" || *department != "" || *region != "" || len(roles) > 0 || *subject != "" {
			return usagef("--server takes --host only, not --system, --department, --region, --role or --subject")
		}
	} else {
		if len(hosts) > 0 {
			return usagef("--host is for --server certificates")
		}
		id = auth.Identity{SystemID: *system, Department: *department, Region: *region, Roles: roles, Subject: *subject}
		if err := identity.Validate(id); err != nil {
			return usageError{fmt.Errorf("invalid identity: %w", err)}
		}
	}

	ca, err := identity.LoadCA(*dir)
	if err != nil {
		return err
	}
	var is *identity.Issued
	prefix := *out
	if *server {
		is, err = ca.IssueServer(hosts, validity)
		if prefix == "" {
			prefix = filepath.Join(*dir, "server")
		}
	} else {
		is, err = ca.IssueClient(id, validity)
		if prefix == "" {
			prefix = filepath.Join(*dir, "clients", id.SystemID)
		}
	}
	if err != nil {
		return err
	}
	certPath, keyPath, err := identity.WriteIssued(prefix, is)
	if err != nil {
		return err
	}
	if *server {
		fmt.Fprintf(stdout, "issued server certificate for %s, valid until %s\n", strings.Join(hosts, ", "), is.Cert.NotAfter.UTC().Format(time.DateOnly))
	} else {
		fmt.Fprintf(stdout, "issued client certificate for system %s, valid until %s\n", id.SystemID, is.Cert.NotAfter.UTC().Format(time.DateOnly))
		fmt.Fprintf(stdout, "  identity     %s\n", is.Cert.URIs[0])
	}
	fmt.Fprintf(stdout, "  certificate  %s\n", certPath)
	fmt.Fprintf(stdout, "  private key  %s   (mode 0600)\n", keyPath)
	fmt.Fprintf(stdout, "  sha256       %s\n", is.Fingerprint())
	return nil
}
