package notify

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/response/internal/outbound"
)

// Type is the kind of receiver a channel delivers to.
type Type string

const (
	// TypeWebhook is a Standard Webhook: the finding as JSON, signed with HMAC-SHA256.
	TypeWebhook Type = "webhook"
	// TypeSlack is a Slack incoming webhook, given a Block Kit message.
	TypeSlack Type = "slack"
	// TypePagerDuty is the PagerDuty Events API v2, given a trigger event.
	TypePagerDuty Type = "pagerduty"
	// TypeTeams is a Microsoft Teams Workflows webhook, given a message with an Adaptive Card.
	TypeTeams Type = "teams"
)

// DedupBy chooses what a PagerDuty dedup_key identifies.
type DedupBy string

const (
	// DedupPrincipal keys alerts by tenant, principal, detector and check: later findings of the
	// same kind about the same principal join the open incident instead of paging again.
	DedupPrincipal DedupBy = "principal"
	// DedupFinding keys alerts by finding id: every finding opens its own incident, and only a
	// redelivery of the same finding is folded into it.
	DedupFinding DedupBy = "finding"
)

// PagerDutyURL is the Events API v2 endpoint a pagerduty channel uses unless its url is set
// (to a regional endpoint such as https://events.eu.pagerduty.com/v2/enqueue).
const PagerDutyURL = "https://events.pagerduty.com/v2/enqueue"

// Defaults of a channel's optional settings.
const (
	DefaultTimeout     = 5 * time.Second
	DefaultMaxAttempts = 5
	maxAttempts        = 20
	maxNameLen         = 64
)

// Channel is one place notifications go, named by playbooks' `notify: <name>` actions. In YAML:
//
//   - name: soc
//     type: slack                     # webhook | slack | pagerduty | teams
//     secret: {env: SLACK_SOC_URL}    # the credential, never in the file
//     min_severity: 7                 # 0–10; findings below it are skipped (and recorded so)
//     timeout: 5s                     # one attempt
//     max_attempts: 5                 # the first included
//
// What secret holds depends on the type, since each vendor puts its credential elsewhere:
//
//   - webhook: the Standard Webhooks signing secret ("whsec_..."); url is required.
//   - slack: the incoming webhook URL itself (its path is the credential); url must be empty.
//   - teams: the Workflows webhook URL itself (its sig parameter is the credential); url must
//     be empty.
//   - pagerduty: the routing key (the Events API v2 integration key); url defaults to
//     [PagerDutyURL].
//
// A URL must be https, or http to a loopback address (a local relay, a test).
type Channel struct {
	Name        string           `yaml:"name"`
	Type        Type             `yaml:"type"`
	URL         string           `yaml:"url"`
	Secret      component.Secret `yaml:"secret"`
	MinSeverity int              `yaml:"min_severity"`
	// Timeout bounds one attempt; 0 means [DefaultTimeout].
	Timeout time.Duration `yaml:"timeout"`
	// MaxAttempts bounds the attempts of one notification; 0 means [DefaultMaxAttempts].
	MaxAttempts int `yaml:"max_attempts"`
	// DedupBy is what a pagerduty channel's dedup_key identifies; "" means [DedupPrincipal].
	// Other types refuse it.
	DedupBy DedupBy `yaml:"dedup_by"`
	// FindingURL, if set, links each notification to the finding in the operator's console:
	// "{id}" in it is replaced by the finding id (query-escaped).
	FindingURL string `yaml:"finding_url"`
}

// withDefaults fills in the optional settings left zero.
func (c Channel) withDefaults() Channel {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.Type == TypePagerDuty && c.URL == "" {
		c.URL = PagerDutyURL
	}
	if c.Type == TypePagerDuty && c.DedupBy == "" {
		c.DedupBy = DedupPrincipal
	}
	return c
}

// endpoint returns the URL to POST to and the credential, both resolved from the secret source
// where the type keeps them there.
func (c Channel) endpoint() (endpoint, credential string, err error) {
	sec, err := c.Secret.Resolve()
	if err != nil {
		return "", "", err
	}
	switch c.Type {
	case TypeSlack, TypeTeams:
		return strings.TrimSpace(sec), "", nil
	}
	return c.URL, sec, nil
}

// Validate reports a channel that cannot deliver, each problem under its field's name. It
// resolves the secret to check it, and never repeats it.
func (c Channel) Validate() error {
	c = c.withDefaults()
	var errs []error
	errs = append(errs, component.Field("name", validateName(c.Name)))
	switch c.Type {
	case TypeWebhook, TypeSlack, TypePagerDuty, TypeTeams:
	case "":
		errs = append(errs, component.Fieldf("type", "a channel needs a type: webhook, slack, pagerduty or teams"))
	default:
		errs = append(errs, component.Fieldf("type", "unknown channel type %q: want webhook, slack, pagerduty or teams", c.Type))
	}
	if c.MinSeverity < 0 || c.MinSeverity > 10 {
		errs = append(errs, component.Fieldf("min_severity", "must be in [0, 10] (the CEF severity of findings), got %d", c.MinSeverity))
	}
	if c.Timeout < 0 {
		errs = append(errs, component.Fieldf("timeout", "must be positive, got %s", c.Timeout))
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > maxAttempts {
		errs = append(errs, component.Fieldf("max_attempts", "must be in [1, %d], got %d", maxAttempts, c.MaxAttempts))
	}
	switch {
	case c.DedupBy != "" && c.Type != TypePagerDuty:
		errs = append(errs, component.Fieldf("dedup_by", "only pagerduty channels take dedup_by (the others deduplicate by finding id)"))
	case c.DedupBy != "" && c.DedupBy != DedupPrincipal && c.DedupBy != DedupFinding:
		errs = append(errs, component.Fieldf("dedup_by", "unknown %q: want principal or finding", c.DedupBy))
	}
	if c.FindingURL != "" {
		if !strings.Contains(c.FindingURL, "{id}") {
			errs = append(errs, component.Fieldf("finding_url", `must contain "{id}", where the finding id goes`))
		} else {
			errs = append(errs, component.Field("finding_url", outbound.ValidateURL(strings.ReplaceAll(c.FindingURL, "{id}", "x"), "finding URL")))
		}
	}
	if err := c.Secret.Validate(); err != nil {
		errs = append(errs, component.Field("secret", err))
		return errors.Join(errs...)
	}
	errs = append(errs, c.validateEndpoint()...)
	return errors.Join(errs...)
}

func (c Channel) validateEndpoint() []error {
	if (c.Type == TypeSlack || c.Type == TypeTeams) && c.URL != "" {
		return []error{component.Fieldf("url", "a %s webhook URL is a credential: give it as secret: {env: NAME} or {file: PATH}, not url", c.Type)}
	}
	endpoint, cred, err := c.endpoint()
	if err != nil {
		return []error{component.Field("secret", err)}
	}
	var errs []error
	switch c.Type {
	case TypeWebhook:
		if c.URL == "" {
			errs = append(errs, component.Fieldf("url", "a webhook channel needs the receiver's url"))
		} else {
			errs = append(errs, component.Field("url", outbound.ValidateURL(endpoint, "webhook URL")))
		}
		if cred == "" {
			errs = append(errs, component.Fieldf("secret", "a webhook channel needs its signing secret (%s is empty)", c.Secret))
		} else {
			errs = append(errs, component.Field("secret", outbound.ValidateWebhookSecret(cred)))
		}
	case TypeSlack, TypeTeams:
		if endpoint == "" {
			errs = append(errs, component.Fieldf("secret", "a %s channel needs its webhook URL as its secret (%s is empty)", c.Type, c.Secret))
		} else if err := outbound.ValidateURL(endpoint, string(c.Type)+" webhook URL"); err != nil {
			// The URL is the credential: name the host at most.
			errs = append(errs, component.Field("secret", redactErr(err, endpoint)))
		}
	case TypePagerDuty:
		errs = append(errs, component.Field("url", outbound.ValidateURL(endpoint, "PagerDuty events URL")))
		errs = append(errs, component.Field("secret", validateRoutingKey(cred, c.Secret)))
	}
	return errs
}

// redactErr keeps a URL credential out of a validation error: ValidateURL names the URL's path,
// which for Slack is the secret.
func redactErr(err error, endpoint string) error {
	msg := err.Error()
	if u, perr := url.Parse(endpoint); perr == nil {
		msg = strings.ReplaceAll(msg, outbound.Redact(u), outbound.RedactHost(u)+"/…")
	}
	return errors.New(msg)
}

// validateRoutingKey checks the shape of a PagerDuty routing key: 32 letters and digits.
func validateRoutingKey(k string, src component.Secret) error {
	if k == "" {
		return fmt.Errorf("a pagerduty channel needs its routing key (the integration key of an Events API v2 integration) as its secret (%s is empty)", src)
	}
	if len(k) != 32 {
		return fmt.Errorf("a PagerDuty routing key has 32 characters, this one has %d (%s): use the integration key of an Events API v2 integration", len(k), src)
	}
	for _, r := range k {
		if r > unicode.MaxASCII || !(unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return fmt.Errorf("a PagerDuty routing key has only letters and digits (%s)", src)
		}
	}
	return nil
}

func validateName(n string) error {
	if n == "" {
		return errors.New("a channel needs a name (what playbooks' notify actions give)")
	}
	if len(n) > maxNameLen {
		return fmt.Errorf("channel name has %d bytes, at most %d", len(n), maxNameLen)
	}
	for _, r := range n {
		if !(r == '-' || r == '_' || r == '.' || r <= unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r))) {
			return fmt.Errorf("channel name %q: use letters, digits, '-', '_' and '.'", n)
		}
	}
	return nil
}

// ValidateChannels validates each channel under its index ("[2].secret: ...") and reports
// names given twice.
func ValidateChannels(chs []Channel) error {
	var errs []error
	seen := map[string]int{}
	for i, c := range chs {
		errs = append(errs, component.Under(fmt.Sprintf("[%d]", i), c.Validate()))
		if j, dup := seen[c.Name]; dup && c.Name != "" {
			errs = append(errs, component.Fieldf(fmt.Sprintf("[%d].name", i), "channel %q is already defined at [%d]", c.Name, j))
		}
		seen[c.Name] = i
	}
	return errors.Join(errs...)
}
