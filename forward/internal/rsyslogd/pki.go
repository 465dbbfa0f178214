package rsyslogd

import (
	"testing"

	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// PKI is a throw-away certificate authority with a server certificate for localhost/127.0.0.1
// and a client certificate, written as PEM files.
type PKI struct {
	CAFile                string
	ServerCert, ServerKey string
	ClientCert, ClientKey string
}

// NewPKI writes a fresh CA, server and client certificate into dir/name-*.pem.
func NewPKI(t testing.TB, dir, name string) PKI {
	t.Helper()
	ca := testenv.NewCA(t, dir, name)
	p := PKI{CAFile: ca.CertFile}
	p.ServerCert, p.ServerKey = ca.Server(t, "localhost")
	p.ClientCert, p.ClientKey = ca.Client(t, "mcpwatch-forwarder")
	return p
}
