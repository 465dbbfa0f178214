package approval

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ServerTLSConfig returns the approvals API's TLS settings: TLS 1.3 only and, when clientCA (a
// PEM bundle file) is given, client-certificate authentication: every connection must present a
// certificate that chains to one of clientCA's certificates and is valid for client
// authentication, or the handshake is refused (mTLS). The server's own certificate is loaded by
// the caller (http.Server.ServeTLS).
func ServerTLSConfig(clientCA string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS13}
	if clientCA == "" {
		return tc, nil
	}
	pool, err := loadCAs(clientCA)
	if err != nil {
		return nil, fmt.Errorf("approvals API client CA: %w", err)
	}
	tc.ClientCAs = pool
	tc.ClientAuth = tls.RequireAndVerifyClientCert
	return tc, nil
}

// ClientTLSFiles names the PEM files an operator's tools use to reach an approvals API that
// serves TLS: CA verifies the server (empty: the system's roots), Cert and Key are the
// operator's client certificate for an API that requires one (both or neither).
type ClientTLSFiles struct {
	CA   string
	Cert string
	Key  string
}

// IsZero reports whether no file is named.
func (f ClientTLSFiles) IsZero() bool { return f == ClientTLSFiles{} }

// Config loads the files into a TLS 1.3 client configuration. The key must not be readable by
// group or others (it stands for the operator, like the approver key).
func (f ClientTLSFiles) Config() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS13}
	if f.CA != "" {
		pool, err := loadCAs(f.CA)
		if err != nil {
			return nil, fmt.Errorf("approvals API server CA: %w", err)
		}
		tc.RootCAs = pool
	}
	if (f.Cert == "") != (f.Key == "") {
		return nil, errors.New("approvals API client certificate: give both the certificate and its key, or neither")
	}
	if f.Cert != "" {
		st, err := os.Stat(f.Key)
		if err != nil {
			return nil, fmt.Errorf("approvals API client key: %w", err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("approvals API client key %s: readable by group or others (mode %v); chmod 600 it", f.Key, st.Mode().Perm())
		}
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("approvals API client certificate %s with key %s: %w", f.Cert, f.Key, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// loadCAs reads a PEM bundle into a pool; a file without a certificate is an error, so a wrong
// path or a key file given by mistake does not leave verification with an empty pool.
func loadCAs(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate (want a bundle of \"CERTIFICATE\" blocks)", path)
	}
	return pool, nil
}

// tlsHint adds what an operator can do to a TLS failure: the alert alone ("remote error: tls:
// certificate required") does not say which setting is missing, and with TLS 1.3 the API's
// refusal of a client certificate often arrives as a reset connection rather than an alert
// (asked: the API asked for a certificate in the handshake).
func tlsHint(err error, asked bool) error {
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		return fmt.Errorf("%w (give the CA that issued the approvals API's certificate)", err)
	}
	s := err.Error()
	switch {
	case strings.Contains(s, "protocol version"):
		return fmt.Errorf("%w (the approvals API speaks TLS 1.3 only)", err)
	case strings.Contains(s, "certificate required"):
		return fmt.Errorf("%w (the approvals API requires a client certificate issued by its client CA: give yours and its key)", err)
	case strings.Contains(s, "unknown certificate authority"), strings.Contains(s, "bad certificate"),
		strings.Contains(s, "expired certificate"), strings.Contains(s, "unsupported certificate"), asked:
		return fmt.Errorf("%w (the approvals API requires a client certificate and may have refused yours: "+
			"it must be issued by the API's client CA, current, and for client authentication)", err)
	}
	return err
}
