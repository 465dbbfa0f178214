package syslog

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// Transports.
const (
	TransportTLS = "tls" // RFC 5425: TLS 1.3, the default
	TransportTCP = "tcp" // RFC 6587 plain TCP: only when configured explicitly
)

// Config says where and how to connect.
type Config struct {
	Address   string `yaml:"address"`   // host:port of the collector
	Transport string `yaml:"transport"` // TransportTLS (default) or TransportTCP
	// CAFile is a PEM bundle of the CAs that may sign the collector's certificate. Empty: the
	// system's roots.
	CAFile string `yaml:"ca_file"`
	// ServerName is the name the collector's certificate must carry. Default: Address's host.
	ServerName string `yaml:"server_name"`
	// CertFile and KeyFile, both or neither, are the client certificate for mutual TLS. They
	// are read again at every connection, so a rotated certificate is picked up.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`

	DialTimeout  time.Duration `yaml:"dial_timeout"`  // connect and TLS handshake; default 10s
	WriteTimeout time.Duration `yaml:"write_timeout"` // each write of up to 64 KiB; default 30s
	// RetryFor bounds how long one [Client.Send] keeps reconnecting; 0 means until its context
	// ends.
	RetryFor time.Duration `yaml:"retry_for"`
	// MinBackoff and MaxBackoff bound the exponential wait between connection attempts;
	// defaults 200ms and 30s.
	MinBackoff time.Duration `yaml:"min_backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
}

// Validate reports a config that cannot work or would weaken transport security silently.
func (c Config) Validate() error {
	if c.Address == "" {
		return errors.New("syslog: no collector address (host:port)")
	}
	if _, _, err := net.SplitHostPort(c.Address); err != nil {
		return fmt.Errorf("syslog: collector address %q: %w", c.Address, err)
	}
	switch c.Transport {
	case "", TransportTLS:
		if (c.CertFile == "") != (c.KeyFile == "") {
			return errors.New("syslog: a client certificate needs both the certificate and the key file")
		}
	case TransportTCP:
		if c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" || c.ServerName != "" {
			return errors.New("syslog: TLS settings given with plain TCP transport; use transport tls")
		}
	default:
		return fmt.Errorf("syslog: transport %q: want tls or tcp", c.Transport)
	}
	return nil
}

// Client is one connection to a collector, re-established as needed. Send is safe for one
// caller at a time; a stage has one.
type Client struct {
	cfg  Config
	log  *slog.Logger
	m    *metrics
	tlsc *tls.Config // without the client certificate, which is loaded per connection

	state func(error)

	mu   sync.Mutex
	conn net.Conn
	tlsS *tls.ConnectionState
}

// Option configures a [Client].
type Option func(*Client)

// WithLogger logs reconnects and errors to l.
func WithLogger(l *slog.Logger) Option { return func(c *Client) { c.log = l } }

// WithState calls fn after every connection attempt and write: nil once the collector took a
// batch, the error when it did not (for readiness checks).
func WithState(fn func(error)) Option { return func(c *Client) { c.state = fn } }

// WithRegisterer registers the client's metrics with reg.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(c *Client) { c.m = newMetrics(reg) }
}

// NewClient validates cfg and loads its TLS material (so a wrong path fails at start, not at
// the first event). It does not connect yet.
func NewClient(cfg Config, opts ...Option) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Transport == "" {
		cfg.Transport = TransportTLS
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 200 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	c := &Client{cfg: cfg}
	for _, o := range opts {
		o(c)
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.m == nil {
		c.m = newMetrics(nil)
	}
	if c.state == nil {
		c.state = func(error) {}
	}
	if cfg.Transport == TransportTLS {
		tc, err := tlsConfig(cfg)
		if err != nil {
			return nil, err
		}
		c.tlsc = tc
		if _, err := c.clientCert(nil); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func tlsConfig(cfg Config) (*tls.Config, error) {
	sn := cfg.ServerName
	if sn == "" {
		sn, _, _ = net.SplitHostPort(cfg.Address)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS13, ServerName: sn}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("syslog: CA bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("syslog: CA bundle %s holds no PEM certificate", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// clientCert loads the client certificate, if any, when the server asks for one.
func (c *Client) clientCert(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if c.cfg.CertFile == "" {
		return &tls.Certificate{}, nil // none: the server decides whether that is acceptable
	}
	cert, err := tls.LoadX509KeyPair(c.cfg.CertFile, c.cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("syslog: client certificate: %w", err)
	}
	return &cert, nil
}

// Send writes frames (octet-counted messages, see [AppendFrame]) to the collector and returns
// once all of them were handed to the socket of a connection that was alive when the write
// began. On any failure it drops the connection, waits with exponential backoff, reconnects and
// writes all of frames again, until it succeeds, ctx ends or RetryFor passes; the collector may
// therefore receive a prefix of frames more than once.
//
// Syslog over TCP has no acknowledgement. What Send guarantees is delivery to the collector's
// socket: bytes the collector's kernel accepted but the collector never read (it crashed) are
// lost to this client. Before each write Send checks that the collector has not closed the
// connection, so a collector that restarted between batches costs nothing.
func (c *Client) Send(ctx context.Context, frames []byte) error {
	if len(frames) == 0 {
		return nil
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = c.cfg.MinBackoff, c.cfg.MaxBackoff
	var last error
	attempt := 0
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		attempt++
		err := c.send(ctx, frames)
		if !errors.Is(err, errStale) {
			c.state(err)
		}
		if err != nil {
			last = err
			// The first failure and then every tenth: a collector down for an hour must not
			// flood the log.
			if (attempt == 1 && !errors.Is(err, errStale)) || attempt%10 == 2 {
				c.log.Warn("syslog send failed; reconnecting", "collector", c.cfg.Address, "attempt", attempt, "err", err)
			}
		}
		return struct{}{}, err
	}, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(c.cfg.RetryFor))
	if err != nil {
		if last != nil && !errors.Is(err, last) {
			return fmt.Errorf("syslog send to %s: %w (last error: %v)", c.cfg.Address, err, last)
		}
		return fmt.Errorf("syslog send to %s: %w", c.cfg.Address, err)
	}
	c.m.bytes.Add(float64(len(frames)))
	return nil
}

// errStale marks a connection the collector had closed before the write.
var errStale = errors.New("collector closed the connection")

// writeChunk bounds one write so that each has its own deadline: a slow but moving collector
// is not cut off by a deadline sized for a whole batch.
const writeChunk = 64 << 10

func (c *Client) send(ctx context.Context, frames []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		if err := probe(c.conn); err != nil {
			c.m.errors.WithLabelValues("stale").Inc()
			c.dropLocked()
			return fmt.Errorf("%w: %v", errStale, err)
		}
	}
	if c.conn == nil {
		if err := c.connectLocked(ctx); err != nil {
			return err
		}
	}
	for off := 0; off < len(frames); off += writeChunk {
		end := min(off+writeChunk, len(frames))
		if err := c.conn.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout)); err != nil {
			c.dropLocked()
			return fmt.Errorf("set write deadline: %w", err)
		}
		if _, err := c.conn.Write(frames[off:end]); err != nil {
			c.m.errors.WithLabelValues("write").Inc()
			c.dropLocked()
			return fmt.Errorf("write: %w", err)
		}
	}
	return nil
}

// probe reports whether the peer closed the connection. A syslog collector never sends
// application data, so a read that does not time out at once means EOF, a reset or a TLS
// close_notify. A read timeout leaves both net.TCPConn and tls.Conn usable.
func probe(conn net.Conn) error { return probeFor(conn, time.Millisecond) }

func probeFor(conn net.Conn, wait time.Duration) error {
	if err := conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return err
	}
	var buf [64]byte
	n, err := conn.Read(buf[:])
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return nil
	}
	if err == nil && n > 0 {
		return nil // the collector said something; it is alive
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func (c *Client) connectLocked(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(dctx, "tcp", c.cfg.Address)
	if err != nil {
		c.m.errors.WithLabelValues("dial").Inc()
		return fmt.Errorf("connect: %w", err)
	}
	if tcp, ok := raw.(*net.TCPConn); ok {
		_ = tcp.SetKeepAlive(true)
	}
	conn := raw
	var state *tls.ConnectionState
	if c.cfg.Transport == TransportTLS {
		tc := c.tlsc.Clone()
		tc.GetClientCertificate = c.clientCert
		tconn := tls.Client(raw, tc)
		start := time.Now()
		if err := tconn.HandshakeContext(dctx); err != nil {
			_ = raw.Close()
			c.m.errors.WithLabelValues("handshake").Inc()
			return fmt.Errorf("TLS handshake with %s: %w", c.cfg.Address, err)
		}
		// In TLS 1.3 the server checks the client certificate after the client's handshake
		// has completed and answers a refusal with an alert. Waiting a couple of round trips
		// for it keeps a refused forwarder from writing a batch into a connection the
		// collector is closing, and makes the refusal an error here, with its reason.
		settle := min(max(2*time.Since(start), 50*time.Millisecond), 2*time.Second)
		if err := probeFor(tconn, settle); err != nil {
			_ = raw.Close()
			c.m.errors.WithLabelValues("handshake").Inc()
			return fmt.Errorf("TLS handshake with %s: collector closed the connection (client certificate refused?): %w", c.cfg.Address, err)
		}
		s := tconn.ConnectionState()
		state = &s
		conn = tconn
	}
	c.conn, c.tlsS = conn, state
	c.m.connects.Inc()
	c.m.connected.Set(1)
	attrs := []any{"collector", c.cfg.Address, "transport", c.cfg.Transport}
	if state != nil {
		attrs = append(attrs, "tls", tls.VersionName(state.Version), "cipher", tls.CipherSuiteName(state.CipherSuite))
	}
	c.log.Info("syslog connected", attrs...)
	return nil
}

func (c *Client) dropLocked() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn, c.tlsS = nil, nil
		c.m.connected.Set(0)
	}
}

// TLSState returns the state of the current TLS connection, if there is one.
func (c *Client) TLSState() (tls.ConnectionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tlsS == nil {
		return tls.ConnectionState{}, false
	}
	return *c.tlsS, true
}

// Close closes the connection. The client may be used again; it reconnects.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked()
	return nil
}

type metrics struct {
	connects  prometheus.Counter
	connected prometheus.Gauge
	errors    *prometheus.CounterVec
	bytes     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connects: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_syslog_connects_total",
			Help: "Connections (and TLS handshakes) established to the syslog collector."}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mcpwatch_syslog_connected",
			Help: "1 while a connection to the syslog collector is open."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_syslog_errors_total",
			Help: "Connection failures by step: dial, handshake, write, stale (collector had closed)."}, []string{"step"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_syslog_sent_bytes_total",
			Help: "Framed bytes handed to the collector's socket (counted once per successful batch)."}),
	}
	if reg != nil {
		reg.MustRegister(m.connects, m.connected, m.errors, m.bytes)
	}
	return m
}
