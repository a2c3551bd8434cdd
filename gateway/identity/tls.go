package identity

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
)

// Client authentication modes of the gateway's listeners.
const (
	// ClientAuthRequire demands a client certificate signed by the client CA.
	ClientAuthRequire = "require"
	// ClientAuthRequest verifies a client certificate when one is sent and
	// lets callers without one fall back to a bearer token (development).
	ClientAuthRequest = "request"
	// ClientAuthNone asks for no client certificate: TLS for privacy only.
	ClientAuthNone = "none"
)

// ServerFiles names the files of a server TLS configuration.
type ServerFiles struct {
	// CertFile is the PEM certificate chain of the server, leaf first.
	CertFile string
	// KeyFile is the PEM private key of the server.
	KeyFile string
	// ClientCAFile holds the PEM certificates of the CAs that sign client
	// certificates; empty with ClientAuth "none".
	ClientCAFile string
	// ClientAuth is "require", "request" or "none".
	ClientAuth string
}

// ServerTLSConfig loads the files and returns the TLS configuration of the
// gateway's listeners (TLS 1.2 or later). With a client CA, client
// certificates are verified in the handshake: required ("require") or
// verified when given ("request").
func ServerTLSConfig(f ServerFiles) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the server certificate %s and key %s: %w", f.CertFile, f.KeyFile, err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.NoClientCert,
	}
	switch f.ClientAuth {
	case ClientAuthNone:
		return cfg, nil
	case ClientAuthRequire:
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	case ClientAuthRequest:
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	default:
		return nil, fmt.Errorf("client auth %q is not one of require, request, none", f.ClientAuth)
	}
	if f.ClientCAFile == "" {
		return nil, fmt.Errorf("client auth %q needs a client CA file", f.ClientAuth)
	}
	pool, err := certPool(f.ClientCAFile)
	if err != nil {
		return nil, err
	}
	cfg.ClientCAs = pool
	return cfg, nil
}

// ClientTLSConfig returns the TLS configuration of a member system calling
// the gateway: its certificate and key (both may be empty for a caller that
// uses a bearer token) and the CA that signed the gateway's server
// certificate.
func ClientTLSConfig(certFile, keyFile, serverCAFile string) (*tls.Config, error) {
	pool, err := certPool(serverCAFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("loading the client certificate %s and key %s: %w", certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func certPool(path string) (*x509.CertPool, error) {
	certs, err := ReadCertificates(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}
