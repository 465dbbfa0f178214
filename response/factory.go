package response

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/internal/approval"
	"github.com/mcpwatch/mcpwatch/internal/control"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/response/notify"
	"github.com/mcpwatch/mcpwatch/response/playbook"
)

// Component types of the two responder stages.
const (
	TypeRespond component.Type = StageRespond
	TypeNotify  component.Type = StageNotify
)

func defaultConfig() *Config {
	c := DefaultConfig()
	return &c
}

// NewRespondFactory returns the factory of the enforcing stage: findings over the threshold →
// revocation on the control topic and the revoke action record. See the package comment for why
// enforcing and notifying are two consumer groups.
func NewRespondFactory() component.Factory {
	return component.NewFactory(TypeRespond, defaultConfig, func(_ context.Context, set component.Settings, cfg *Config) (component.Component, error) {
		if cfg.Playbooks != "" {
			return playbookStage(set, cfg, nil)
		}
		r, err := New(set.Topics, *cfg, set.Registerer, set.Logger)
		if err != nil {
			return nil, err
		}
		return stage(set, r, kafkaio.StageConfig{Name: StageRespond, Group: set.Group(StageRespond),
			Topics: []string{set.Topics.Findings}, DeadLetterTopic: set.Topics.DeadLetter}, r.EnforceHandler())
	})
}

// playbookStage is the enforcing stage deciding under a playbook file: the file is reloaded when
// it changes, the control topic is followed so no decision shortens a control in force, and the
// playbooks' memory follows the findings partitions ([Responder.Rebuild]).
// tune, if not nil, adjusts the stage config (tests make the consumer a static member).
func playbookStage(set component.Settings, cfg *Config, tune func(*kafkaio.StageConfig)) (component.Component, error) {
	m := newPlaybookMetrics(set.Registerer)
	store, err := playbook.NewStore(cfg.Playbooks, set.Logger.With("part", "playbooks"), m.reloaded)
	if err != nil {
		return nil, fmt.Errorf("respond: %w", err)
	}
	m.playbooks.Set(float64(len(store.Set().Playbooks)))
	set.Logger.Info("playbooks loaded", "path", cfg.Playbooks, "playbooks", len(store.Set().Playbooks))
	controls := control.NewStore()
	// The followers here register no metrics: the gateway's followers of the same topics own
	// those names when components share a process (`mcpwatch run`).
	fol, err := control.NewFollower(set.KafkaClient("control"), set.Topics.Control, controls, nil, set.Logger)
	if err != nil {
		return nil, err
	}
	r, err := New(set.Topics, *cfg, set.Registerer, set.Logger, WithPlaybooks(store, controls))
	if err != nil {
		fol.Close()
		return nil, err
	}
	var approvals *approval.Store
	var afol *approval.Follower
	if store.Set().Approval() != nil || cfg.Approvers != "" {
		if cfg.Approvers == "" {
			fol.Close()
			return nil, component.Fieldf("approvers", "the playbooks have an approval section: set the approvers' keyring")
		}
		keys, err := approval.LoadKeyring(cfg.Approvers)
		if err != nil {
			fol.Close()
			return nil, component.Field("approvers", err)
		}
		approvals = approval.NewStore(keys)
		if afol, err = approval.NewFollower(set.KafkaClient("approvals"), set.Topics.Approvals, approvals, nil, set.Logger); err != nil {
			fol.Close()
			return nil, err
		}
	}
	group := set.Group(StageRespond)
	assigned, revoked := r.Rebuild(set.KafkaClient("rebuild"), group)
	sc := kafkaio.StageConfig{Name: StageRespond, Group: group,
		Topics: []string{set.Topics.Findings, set.Topics.Scores}, DeadLetterTopic: set.Topics.DeadLetter,
		OnAssigned: assigned, OnRevoked: revoked}
	if tune != nil {
		tune(&sc)
	}
	st, err := kafkaio.NewStage(set.KafkaClient(""), sc, r.EnforceHandler(), set.Registerer, set.Logger)
	if err != nil {
		r.Close()
		fol.Close()
		return nil, fmt.Errorf("%s stage: %w", StageRespond, err)
	}
	p := &component.Parts{}
	p.Go(fol.Run)
	p.Go(func(ctx context.Context) error { return store.Run(ctx, cfg.PlaybookReload) })
	if approvals != nil {
		cl := st.Client()
		p.Go(afol.Run)
		p.Go(func(ctx context.Context) error {
			if err := afol.WaitReady(ctx); err != nil {
				return nil // shutting down
			}
			return r.RunApprovals(ctx, approvals, approval.KafkaProducer(cl, set.Topics.Approvals),
				func(ctx context.Context, recs ...*kgo.Record) error { return cl.ProduceSync(ctx, recs...).FirstErr() })
		})
		p.OnClose(func() error { afol.Close(); return nil })
	}
	p.Go(func(ctx context.Context) error {
		// Decide only once the controls in force are known, or a decision could shorten one.
		if err := fol.WaitReady(ctx); err != nil {
			return nil // shutting down
		}
		return st.Run(ctx)
	})
	p.OnClose(func() error { r.Close(); return nil })
	p.OnClose(st.Close)
	p.OnClose(func() error { fol.Close(); return nil })
	return p, nil
}

// NewNotifyFactory returns the factory of the notifying stage. Without playbooks: findings over
// the threshold → signed webhooks and their action records, describing exactly the revocations
// the enforcing stage issues (it reads the same respond section); enabled when a webhook URL is
// set. With playbooks: their `notify` decisions → the configured channels; enabled when channels
// are configured.
func NewNotifyFactory() component.Factory {
	return component.NewFactory(TypeNotify, defaultConfig, func(_ context.Context, set component.Settings, cfg *Config) (component.Component, error) {
		if cfg.Playbooks != "" {
			return notifyPlaybookStage(set, cfg, nil)
		}
		if cfg.WebhookURL == "" {
			return nil, component.Fieldf("webhook_url", "the notify stage needs a webhook URL, or playbooks and channels")
		}
		r, err := New(set.Topics, *cfg, set.Registerer, set.Logger)
		if err != nil {
			return nil, err
		}
		return stage(set, r, kafkaio.StageConfig{Name: StageNotify, Group: set.Group(StageNotify),
			Topics: []string{set.Topics.Findings}, DeadLetterTopic: set.Topics.DeadLetter,
			// Small batches: a batch is committed only when its slowest webhook is done.
			MaxPoll: 4 * cfg.WebhookConcurrency}, r.NotifyHandler())
	}, component.WithSection(string(TypeRespond)),
		component.WithEnabled(func(c *Config) bool {
			return c.WebhookURL != "" || c.Playbooks != "" && len(c.Channels) > 0
		}))
}

// notifyPlaybookStage is the notifying stage under a playbook file: the playbooks' notify
// decisions go to the configured channels. Its memory of dedup windows follows its own
// partitions like the enforcing stage's ([Responder.Rebuild]).
// tune, if not nil, adjusts the stage config (tests make the consumer a static member).
func notifyPlaybookStage(set component.Settings, cfg *Config, tune func(*kafkaio.StageConfig)) (component.Component, error) {
	if len(cfg.Channels) == 0 {
		return nil, component.Fieldf("channels", "the notify stage needs channels for the playbooks' notify actions")
	}
	store, err := playbook.NewStore(cfg.Playbooks, set.Logger.With("part", "playbooks"), nil)
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	chans, err := notify.New(cfg.Channels, notify.WithLogger(set.Logger), notify.WithRegisterer(set.Registerer))
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	if missing := missingChannels(store.Set(), chans); len(missing) > 0 {
		chans.Close()
		return nil, component.Fieldf("channels", "playbooks notify channels that are not configured: %v", missing)
	}
	// The control topic is followed here too, so that a lift ends deduplication for this stage's
	// decisions as it does for the enforcing stage's, and a message shows what that stage does.
	controls := control.NewStore()
	fol, err := control.NewFollower(set.KafkaClient("control"), set.Topics.Control, controls, nil, set.Logger)
	if err != nil {
		chans.Close()
		return nil, err
	}
	r, err := New(set.Topics, *cfg, set.Registerer, set.Logger, WithPlaybooks(store, controls), WithChannels(chans))
	if err != nil {
		chans.Close()
		fol.Close()
		return nil, err
	}
	group := set.Group(StageNotify)
	assigned, revoked := r.Rebuild(set.KafkaClient("rebuild"), group)
	sc := kafkaio.StageConfig{Name: StageNotify, Group: group,
		Topics: []string{set.Topics.Findings, set.Topics.Scores}, DeadLetterTopic: set.Topics.DeadLetter,
		MaxPoll: 4 * cfg.WebhookConcurrency, OnAssigned: assigned, OnRevoked: revoked}
	if tune != nil {
		tune(&sc)
	}
	st, err := kafkaio.NewStage(set.KafkaClient(""), sc, r.NotifyHandler(), set.Registerer, set.Logger)
	if err != nil {
		r.Close()
		fol.Close()
		return nil, fmt.Errorf("%s stage: %w", StageNotify, err)
	}
	p := &component.Parts{}
	p.Go(fol.Run)
	p.Go(func(ctx context.Context) error { return store.Run(ctx, cfg.PlaybookReload) })
	p.Go(func(ctx context.Context) error {
		if err := fol.WaitReady(ctx); err != nil {
			return nil // shutting down
		}
		return st.Run(ctx)
	})
	p.OnClose(func() error { r.Close(); return nil })
	p.OnClose(st.Close)
	p.OnClose(func() error { fol.Close(); return nil })
	return p, nil
}

func stage(set component.Settings, r *Responder, sc kafkaio.StageConfig, h kafkaio.Handler) (component.Component, error) {
	st, err := kafkaio.NewStage(set.KafkaClient(""), sc, h, set.Registerer, set.Logger)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("%s stage: %w", sc.Name, err)
	}
	p := &component.Parts{}
	p.Go(st.Run)
	p.OnClose(func() error { r.Close(); return nil })
	p.OnClose(st.Close)
	return p, nil
}
