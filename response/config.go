package response

import (
	"errors"
	"math"
	"net/url"
	"time"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/response/internal/outbound"
	"github.com/mcpwatch/mcpwatch/response/notify"
)

// Config configures the responder. Start from [DefaultConfig]. It is the respond section of
// the config file, read by both responder stages (enforce and notify), so that a webhook always
// describes the revocation the enforcing stage issues.
type Config struct {
	// Threshold is the lowest finding score (0–100) that is acted on.
	Threshold float64 `yaml:"threshold"`
	// RevokeFor is how long a revocation lasts from the finding's time; 0 means until an
	// operator lifts it.
	RevokeFor time.Duration `yaml:"revoke_for"`
	// MaxAge skips findings older than this when they reach the responder (a replay, a reset
	// consumer group, a long outage): re-revoking a principal an operator has since reinstated,
	// or paging someone about last week, does more harm than good. The skip is recorded as an
	// action. 0 acts on findings of any age.
	MaxAge time.Duration `yaml:"max_age"`
	// WebhookURL receives a signed POST for every finding acted on. Empty disables webhooks.
	WebhookURL string `yaml:"webhook_url"`
	// WebhookSecret is the Standard Webhooks signing secret, "whsec_" and base64 of 24–64 random
	// bytes. Required with WebhookURL. Never logged, never in a config file: when empty it is
	// read from WebhookSecretFrom (default: $MCPWATCH_WEBHOOK_SECRET).
	WebhookSecret     string           `yaml:"-"`
	WebhookSecretFrom component.Secret `yaml:"webhook_secret"`
	// WebhookTimeout bounds one delivery attempt.
	WebhookTimeout time.Duration `yaml:"webhook_timeout"`
	// MaxAttempts bounds the delivery attempts of one webhook, the first included.
	MaxAttempts int `yaml:"webhook_max_attempts"`
	// WebhookConcurrency is how many webhooks are delivered at once.
	WebhookConcurrency int `yaml:"webhook_concurrency"`
	// Playbooks is a playbook file (see docs/response.md). When set, the respond stage decides
	// under its playbooks instead of revoking every finding over Threshold, and reloads the file
	// when it changes.
	Playbooks string `yaml:"playbooks"`
	// PlaybookReload is how often the playbook file is checked for changes.
	PlaybookReload time.Duration `yaml:"playbook_reload"`
	// Approvers is the keyring of the approvers' Ed25519 public keys (the file `mcpwatch response
	// approver-key` entries go in), required when the playbooks have an `approval:` section: only
	// votes signed by these keys count.
	Approvers string `yaml:"approvers"`
	// Channels are where playbooks' `notify: <name>` actions deliver (Slack, PagerDuty, Teams,
	// Standard Webhooks). The notify stage runs when Playbooks and Channels are both set.
	Channels []notify.Channel `yaml:"channels"`
}

// DefaultConfig returns the defaults: act on scores from 80, revoke until lifted, webhook
// attempts of 5s, at most 5 of them, 8 at once, findings older than an hour skipped.
func DefaultConfig() Config {
	return Config{
		Threshold:          80,
		WebhookTimeout:     5 * time.Second,
		MaxAttempts:        5,
		WebhookConcurrency: 8,
		MaxAge:             time.Hour,
		WebhookSecretFrom:  component.SecretFromEnv("MCPWATCH_WEBHOOK_SECRET"),
		PlaybookReload:     2 * time.Second,
	}
}

// secret is the signing secret: WebhookSecret, or else read from WebhookSecretFrom.
func (c Config) secret() (string, error) {
	if c.WebhookSecret != "" {
		return c.WebhookSecret, nil
	}
	return c.WebhookSecretFrom.Resolve()
}

const maxAttempts = 20

// Validate reports a config the responder cannot work with.
//
// A webhook URL must be https unless its host is a loopback address. The body carries who did
// what (principals, summaries, event ids), and the Standard Webhooks signature protects only its
// integrity and origin: over plain HTTP anyone on the path reads the findings and learns which
// principals are being watched, and can drop alerts selectively. Loopback traffic never leaves
// the host, which is what a local receiver, a sidecar relay or a test uses.
func (c Config) Validate() error {
	var errs []error
	if math.IsNaN(c.Threshold) || c.Threshold < 0 || c.Threshold > 100 {
		errs = append(errs, component.Fieldf("threshold", "must be in [0, 100], got %v", c.Threshold))
	}
	if c.RevokeFor < 0 {
		errs = append(errs, component.Fieldf("revoke_for", "revoke duration must not be negative, got %s", c.RevokeFor))
	}
	if c.MaxAge < 0 {
		errs = append(errs, component.Fieldf("max_age", "max age must not be negative, got %s", c.MaxAge))
	}
	if c.Playbooks != "" && c.WebhookURL != "" {
		errs = append(errs, component.Fieldf("webhook_url", "with playbooks, declare the webhook as a channel (type: webhook) and notify it from a playbook"))
	}
	if len(c.Channels) > 0 {
		errs = append(errs, component.Field("channels", notify.ValidateChannels(c.Channels)))
	}
	if c.Playbooks != "" && c.PlaybookReload <= 0 {
		errs = append(errs, component.Fieldf("playbook_reload", "playbook reload interval must be positive, got %s", c.PlaybookReload))
	}
	if c.WebhookURL != "" {
		errs = append(errs, component.Field("webhook_url", validateWebhookURL(c.WebhookURL)))
		if err := c.WebhookSecretFrom.Validate(); err != nil {
			errs = append(errs, component.Field("webhook_secret", err))
		} else if sec, err := c.secret(); err != nil {
			errs = append(errs, component.Field("webhook_secret", err))
		} else {
			errs = append(errs, component.Field("webhook_secret", validateSecret(sec)))
		}
		if c.WebhookTimeout <= 0 {
			errs = append(errs, component.Fieldf("webhook_timeout", "webhook timeout must be positive, got %s", c.WebhookTimeout))
		}
		if c.MaxAttempts < 1 || c.MaxAttempts > maxAttempts {
			errs = append(errs, component.Fieldf("webhook_max_attempts", "webhook attempts must be in [1, %d], got %d", maxAttempts, c.MaxAttempts))
		}
		if c.WebhookConcurrency < 1 {
			errs = append(errs, component.Fieldf("webhook_concurrency", "webhook concurrency must be at least 1, got %d", c.WebhookConcurrency))
		}
	}
	return errors.Join(errs...)
}

func validateWebhookURL(raw string) error { return outbound.ValidateURL(raw, "webhook URL") }

func validateSecret(s string) error {
	if s == "" {
		return errors.New("a webhook secret is required with a webhook URL (from the environment or a file: webhook_secret: {env: NAME} or {file: PATH}; default $MCPWATCH_WEBHOOK_SECRET)")
	}
	return outbound.ValidateWebhookSecret(s)
}

// redactURL is the URL without credentials, query or fragment, which may hold tokens: fit for
// logs and action records.
func redactURL(u *url.URL) string { return outbound.Redact(u) }
