package approval

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// ServeConfig configures [Serve].
type ServeConfig struct {
	Kafka   kafkaio.Config
	Topics  event.Topics
	Keys    *Keyring
	Listen  string
	TLSCert string // with TLSKey: serve TLS 1.3 only
	TLSKey  string
	// ClientCA is a PEM bundle of the CAs that issue operators' client certificates. Set, every
	// connection must present one (mTLS), which authenticates reads; votes are authenticated by
	// their signature either way. It needs TLSCert and TLSKey.
	ClientCA string
	Reg      prometheus.Registerer
	Log      *slog.Logger
}

// tlsConfig checks the TLS settings and loads the certificate and the client CA, so that a wrong
// file fails the start rather than the first connection. Nil: serve plain HTTP.
func (c ServeConfig) tlsConfig() (*tls.Config, error) {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return nil, errors.New("approvals API: give both a TLS certificate and key, or neither")
	}
	if c.ClientCA != "" && c.TLSCert == "" {
		return nil, errors.New("approvals API: a client CA needs a server certificate and key: client certificates are asked for only over TLS")
	}
	if c.TLSCert == "" {
		return nil, nil
	}
	tc, err := ServerTLSConfig(c.ClientCA)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("approvals API: TLS certificate %s with key %s: %w", c.TLSCert, c.TLSKey, err)
	}
	tc.Certificates = []tls.Certificate{cert}
	return tc, nil
}

// newHTTPServer returns the http.Server Serve runs h with: timeouts, and tc (nil: plain HTTP).
// Without client certificates it warns, once, that reads are open to whoever reaches the port.
func newHTTPServer(listen string, h http.Handler, tc *tls.Config, log *slog.Logger) *http.Server {
	if tc == nil || tc.ClientAuth != tls.RequireAndVerifyClientCert {
		log.Warn("approvals API: reads are unauthenticated: whoever reaches this address can list approval requests "+
			"(who asks to call which tool with which arguments' hash, for which principal); give a client CA to require operators' certificates (mTLS)",
			"listen", listen)
	}
	return &http.Server{Addr: listen, Handler: h, TLSConfig: tc, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelInfo)}
}

// Serve runs the approvals API until ctx ends: it follows the approvals topic, serves
// [Server.Handler] once caught up, writes accepted votes and records every vote and timeout as an
// action on the actions topic.
func Serve(ctx context.Context, c ServeConfig) error {
	if c.Log == nil {
		c.Log = slog.Default()
	}
	tc, err := c.tlsConfig()
	if err != nil {
		return err
	}
	store := NewStore(c.Keys)
	f, err := NewFollower(c.Kafka, c.Topics.Approvals, store, c.Reg, c.Log)
	if err != nil {
		return err
	}
	pc := c.Kafka
	pc.ClientID = "mcpwatch-approvals-api"
	cl, err := kafkaio.NewClient(pc)
	if err != nil {
		f.Close()
		return err
	}
	defer cl.Close()
	actions := func(ctx context.Context, a event.Action) {
		b, err := event.Encode(&a)
		if err != nil {
			c.Log.Error("encoding approval action", "err", err)
			return
		}
		cl.Produce(context.WithoutCancel(ctx), &kgo.Record{Topic: c.Topics.Actions, Key: []byte(a.Tenant + "/" + a.Subject), Value: b},
			func(_ *kgo.Record, err error) {
				if err != nil {
					c.Log.Error("recording approval action failed", "action", a.ID, "status", a.Status, "err", err)
				}
			})
	}
	srv := NewServer(store, c.Keys, KafkaProducer(cl, c.Topics.Approvals), actions, c.Log)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(ctx) }()
	defer func() { cancel(); <-done }()
	go srv.RecordExpiries(ctx, time.Second)
	if err := f.WaitReady(ctx); err != nil {
		return err
	}
	hs := newHTTPServer(c.Listen, srv.Handler(), tc, c.Log)
	go func() {
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = hs.Shutdown(sctx)
	}()
	c.Log.Info("approvals API serving", "listen", c.Listen, "tls", tc != nil, "client_certificates", c.ClientCA != "", "approvers", len(c.Keys.IDs()))
	if tc != nil {
		err = hs.ListenAndServeTLS("", "")
	} else {
		err = hs.ListenAndServe()
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("approvals API: %w", err)
}
