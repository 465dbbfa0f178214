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
	Reg     prometheus.Registerer
	Log     *slog.Logger
}

// Serve runs the approvals API until ctx ends: it follows the approvals topic, serves
// [Server.Handler] once caught up, writes accepted votes and records every vote and timeout as an
// action on the actions topic.
func Serve(ctx context.Context, c ServeConfig) error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("approvals API: give both a TLS certificate and key, or neither")
	}
	if c.Log == nil {
		c.Log = slog.Default()
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
	hs := &http.Server{Addr: c.Listen, Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10}
	if c.TLSCert != "" {
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS13}
	}
	go func() {
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = hs.Shutdown(sctx)
	}()
	c.Log.Info("approvals API serving", "listen", c.Listen, "tls", c.TLSCert != "", "approvers", len(c.Keys.IDs()))
	if c.TLSCert != "" {
		err = hs.ListenAndServeTLS(c.TLSCert, c.TLSKey)
	} else {
		err = hs.ListenAndServe()
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("approvals API: %w", err)
}
