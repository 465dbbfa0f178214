package approval

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// mtlsAPI is the approvals API served the way [Serve] serves it (its TLS settings and
// http.Server), over an in-memory store holding one pending request, on a real TCP listener.
type mtlsAPI struct {
	url     string
	ca      *testenv.CA // issues the server's and operators' certificates
	keys    *testKeys
	reqID   string
	reached atomic.Int32 // requests that got past the handshake to the API's handler
	logs    *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func startMTLSAPI(t *testing.T, clientCA bool) *mtlsAPI {
	t.Helper()
	dir := t.TempDir()
	a := &mtlsAPI{ca: testenv.NewCA(t, dir, "ops"), keys: newTestKeys(t, "ann", "ben", "cat"), logs: &syncBuffer{}}
	cert, key := a.ca.Server(t, "approvals")
	c := ServeConfig{TLSCert: cert, TLSKey: key}
	if clientCA {
		c.ClientCA = a.ca.CertFile
	}
	tc, err := c.tlsConfig()
	if err != nil {
		t.Fatal(err)
	}
	store := NewStore(a.keys.ring)
	apply := ProducerFunc(func(_ context.Context, key string, value []byte) error { return store.Apply([]byte(key), value) })
	now := time.Now()
	r := testRequest("r1", Deny)
	r.Time, r.Deadline = now, now.Add(10*time.Minute)
	if err := WriteRequest(context.Background(), apply, r); err != nil {
		t.Fatal(err)
	}
	a.reqID = r.ID
	api := NewServer(store, a.keys.ring, apply, nil, nil).Handler()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { a.reached.Add(1); api.ServeHTTP(w, r) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := newHTTPServer(ln.Addr().String(), h, tc, slog.New(slog.NewTextHandler(a.logs, nil)))
	done := make(chan error, 1)
	go func() { done <- hs.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		_ = hs.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	a.url = "https://" + ln.Addr().String()
	return a
}

// alert is how the API ends a TLS 1.3 connection that presents certFile (none if ""), whatever
// CA issued it: the error of the first read after the handshake, or "" if the API kept it open.
func (a *mtlsAPI) alert(t *testing.T, certFile, keyFile string) string {
	t.Helper()
	tc, err := ClientTLSFiles{CA: a.ca.CertFile}.Config()
	if err != nil {
		t.Fatal(err)
	}
	send := &tls.Certificate{}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		send = &pair
	}
	tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return send, nil }
	conn, err := tls.Dial("tcp", strings.TrimPrefix(a.url, "https://"), tc)
	if err != nil {
		return err.Error()
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return err.Error()
	}
	return ""
}

// client returns an approvals client trusting the API's CA, with the given client certificate.
func (a *mtlsAPI) client(t *testing.T, cert, key string) *Client {
	t.Helper()
	tc, err := ClientTLSFiles{CA: a.ca.CertFile, Cert: cert, Key: key}.Config()
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{BaseURL: a.url, TLS: tc}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// With a client CA the approvals API refuses, at the handshake, every connection without a
// certificate from that CA: none, one from another CA, an expired one, a server certificate
// presented as a client's, and TLS 1.2 even with the right certificate; none of them reaches the
// API's handler. An operator's certificate lists the pending request and votes. If this failed,
// whoever reaches the port could read who asks to call which tool for which principal.
func TestMTLSReads(t *testing.T) {
	a := startMTLSAPI(t, true)
	ctx := context.Background()
	other := testenv.NewCA(t, t.TempDir(), "other")
	otherCert, otherKey := other.Client(t, "ann")
	expCert, expKey := a.ca.ExpiredClient(t, "ann-old")
	srvCert, srvKey := a.ca.Server(t, "another-server")

	for _, tc := range []struct {
		name, cert, key, alert string
	}{
		{"no client certificate", "", "", "certificate required"},
		{"certificate from another CA", otherCert, otherKey, "unknown certificate authority"},
		{"expired certificate", expCert, expKey, "expired certificate"},
		{"server certificate as a client's", srvCert, srvKey, "bad certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The API's own answer, read straight off the connection.
			if got := a.alert(t, tc.cert, tc.key); !strings.Contains(got, tc.alert) {
				t.Fatalf("handshake: %q, want the API's %q alert", got, tc.alert)
			}
			// What an operator's client says: refused, and which setting to look at.
			_, err := a.client(t, tc.cert, tc.key).List(ctx, "all")
			if err == nil || !strings.Contains(err.Error(), "requires a client certificate") {
				t.Fatalf("list: %v, want refused with a hint about the client certificate", err)
			}
			if _, err = a.client(t, tc.cert, tc.key).Get(ctx, a.reqID); err == nil {
				t.Fatal("get: no error")
			}
		})
	}

	okCert, okKey := a.ca.Client(t, "ann")
	t.Run("TLS 1.2 with the right certificate", func(t *testing.T) {
		pair, err := tls.LoadX509KeyPair(okCert, okKey)
		if err != nil {
			t.Fatal(err)
		}
		tc, _ := ClientTLSFiles{CA: a.ca.CertFile}.Config()
		tc.MinVersion, tc.MaxVersion, tc.Certificates = tls.VersionTLS12, tls.VersionTLS12, []tls.Certificate{pair}
		conn, err := tls.Dial("tcp", strings.TrimPrefix(a.url, "https://"), tc)
		if err == nil {
			conn.Close()
			t.Fatal("a TLS 1.2 handshake succeeded")
		}
		if !strings.Contains(err.Error(), "protocol version") {
			t.Fatalf("TLS 1.2: %v, want a protocol version alert", err)
		}
	})
	if n := a.reached.Load(); n != 0 {
		t.Fatalf("%d refused requests reached the API's handler", n)
	}

	ann := a.client(t, okCert, okKey)
	list, err := ann.List(ctx, "")
	if err != nil || len(list) != 1 || list[0].Request.ID != a.reqID {
		t.Fatalf("list with an operator certificate: %v %+v", err, list)
	}
	for _, who := range []string{"ann", "ben"} {
		if _, err := ann.Vote(ctx, a.reqID, who, a.keys.priv[who], Approve, "confirmed with the desk"); err != nil {
			t.Fatalf("%s's vote: %v", who, err)
		}
	}
	v, err := ann.Get(ctx, a.reqID)
	if err != nil || v.State != Approved {
		t.Fatalf("after two votes: %v %s", err, v.State)
	}
	if strings.Contains(a.logs.String(), "reads are unauthenticated") {
		t.Fatalf("warned of unauthenticated reads with a client CA:\n%s", a.logs)
	}
}

// The client certificate authenticates the reader, not the vote: an operator with a valid
// certificate still cannot vote with a key that is not the approver's. If this failed, mTLS
// would have replaced the signature as the vote's authentication.
func TestMTLSVoteStillNeedsSignature(t *testing.T) {
	a := startMTLSAPI(t, true)
	cert, key := a.ca.Client(t, "ann")
	_, err := a.client(t, cert, key).Vote(context.Background(), a.reqID, "ann", a.keys.priv["ben"], Approve, "I am ann, honestly")
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("vote signed with another approver's key: %v, want 401", err)
	}
}

// Without a client CA the API keeps serving reads to anyone (as before), and says so once, at
// start, as a warning. If this failed, an operator would not learn that reads are open.
func TestNoClientCAWarns(t *testing.T) {
	a := startMTLSAPI(t, false)
	if _, err := a.client(t, "", "").List(context.Background(), ""); err != nil {
		t.Fatalf("list without client CA: %v", err)
	}
	if n := strings.Count(a.logs.String(), "reads are unauthenticated"); n != 1 {
		t.Fatalf("%d warnings of unauthenticated reads, want 1:\n%s", n, a.logs)
	}
}

// The client speaks TLS 1.3 at least, whatever its TLS config's MinVersion, so it never talks to
// an API (or something in its place) offering only TLS 1.2; and it refuses a server its CA did
// not issue, saying which setting to give. If this failed, operators' reads could travel over a
// weaker protocol or to an impostor.
func TestClientTLS13AndServerCA(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("[]")) }))
	srv.TLS = &tls.Config{MaxVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()
	base := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone() // trusts srv's certificate
	base.MinVersion = tls.VersionTLS10
	c := &Client{BaseURL: srv.URL, TLS: base}
	defer c.CloseIdleConnections()
	if _, err := c.List(context.Background(), ""); err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Fatalf("list from a TLS 1.2 server: %v, want refused", err)
	}
	// The same server with TLS 1.3 allowed answers: the refusal above was the version.
	srv13 := httptest.NewTLSServer(srv.Config.Handler)
	defer srv13.Close()
	c13 := &Client{BaseURL: srv13.URL, TLS: srv13.Client().Transport.(*http.Transport).TLSClientConfig}
	defer c13.CloseIdleConnections()
	if _, err := c13.List(context.Background(), ""); err != nil {
		t.Fatalf("list from a TLS 1.3 server: %v", err)
	}

	a := startMTLSAPI(t, false)
	stranger := &Client{BaseURL: a.url, TLS: &tls.Config{}} // system roots: do not know the test CA
	defer stranger.CloseIdleConnections()
	if _, err := stranger.List(context.Background(), ""); err == nil || !strings.Contains(err.Error(), "give the CA that issued") {
		t.Fatalf("list from a server of an unknown CA: %v, want refused with a hint", err)
	}
}

// Settings that cannot work fail at start with a reason: a client CA without a server
// certificate, a client CA file holding no certificate, half a key pair, a client key readable
// by others. If this failed, a misconfigured API could start without the authentication its
// operator asked for.
func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ca := testenv.NewCA(t, dir, "ops")
	cert, key := ca.Server(t, "approvals")
	ccert, ckey := ca.Client(t, "ann")
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(dir, "loose-key.pem")
	b, _ := os.ReadFile(ckey)
	if err := os.WriteFile(loose, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		err  func() error
		want string
	}{
		{"client CA without certificate", func() error { _, err := ServeConfig{ClientCA: ca.CertFile}.tlsConfig(); return err },
			"a client CA needs a server certificate"},
		{"certificate without key", func() error { _, err := ServeConfig{TLSCert: cert}.tlsConfig(); return err },
			"give both a TLS certificate and key"},
		{"client CA not PEM", func() error {
			_, err := ServeConfig{TLSCert: cert, TLSKey: key, ClientCA: notPEM}.tlsConfig()
			return err
		}, "holds no PEM certificate"},
		{"client CA missing", func() error {
			_, err := ServeConfig{TLSCert: cert, TLSKey: key, ClientCA: filepath.Join(dir, "nope.pem")}.tlsConfig()
			return err
		}, "no such file"},
		{"server key not matching", func() error {
			_, err := ServeConfig{TLSCert: cert, TLSKey: ckey}.tlsConfig()
			return err
		}, "TLS certificate"},
		{"client cert without key", func() error { _, err := ClientTLSFiles{Cert: ccert}.Config(); return err },
			"give both the certificate and its key"},
		{"client key readable by others", func() error { _, err := ClientTLSFiles{Cert: ccert, Key: loose}.Config(); return err },
			"chmod 600"},
		{"server CA not PEM", func() error { _, err := ClientTLSFiles{CA: notPEM}.Config(); return err },
			"holds no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.err(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
	if _, err := (ServeConfig{TLSCert: cert, TLSKey: key, ClientCA: ca.CertFile}).tlsConfig(); err != nil {
		t.Fatalf("valid settings: %v", err)
	}
}
