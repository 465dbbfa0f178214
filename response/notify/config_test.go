package notify

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

type channelsFile struct {
	Channels []Channel `yaml:"channels"`
}

func decode(t *testing.T, src string) ([]Channel, error) {
	t.Helper()
	var f channelsFile
	err := yaml.UnmarshalWithOptions([]byte(src), &f, yaml.Strict())
	return f.Channels, err
}

// The example channels file decodes strictly and validates, with defaults filled in. If this
// fails, the documented example is wrong.
func TestExampleChannels(t *testing.T) {
	t.Setenv("TEST_SLACK_URL", "https://hooks.slack.com"+slackPath)
	t.Setenv("TEST_PD_KEY", routingKey)
	t.Setenv("TEST_TEAMS_URL", "https://prod-00.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig=x")
	t.Setenv("TEST_WH_SECRET", whSecret)
	b, err := os.ReadFile("testdata/channels.yaml")
	if err != nil {
		t.Fatal(err)
	}
	chs, err := decode(t, string(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidateChannels(chs); err != nil {
		t.Fatal(err)
	}
	s, err := New(chs)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := strings.Join(s.Names(), ","); got != "oncall,secops-teams,soar,soc" {
		t.Fatalf("names %s", got)
	}
	pd := s.chans["oncall"]
	if pd.endpoint != PagerDutyURL || pd.cfg.Timeout != DefaultTimeout || pd.cfg.MaxAttempts != DefaultMaxAttempts {
		t.Fatalf("pagerduty defaults %+v", pd.cfg)
	}
	if s.chans["soc"].target != "soc https://hooks.slack.com" || s.chans["secops-teams"].cfg.Timeout != 3*time.Second {
		t.Fatalf("slack target %q", s.chans["soc"].target)
	}
}

// Broken channels are refused with the field and a reason a person can act on, and without the
// secret. If this fails, a typo'd channel starts and silently never notifies.
func TestChannelErrors(t *testing.T) {
	t.Setenv("TEST_PD_KEY", routingKey)
	t.Setenv("TEST_SLACK_URL", "https://hooks.slack.com"+slackPath)
	cases := map[string]struct {
		yaml string
		want string
	}{
		"unknown key":       {"- {name: a, type: slack, secret: {env: TEST_SLACK_URL}, colour: red}", `unknown field "colour"`},
		"literal secret":    {"- {name: a, type: slack, secret: https://hooks.slack.com/services/x}", "a secret is never written in the config file"},
		"no type":           {"- {name: a, secret: {env: TEST_PD_KEY}}", "[0].type: a channel needs a type"},
		"bad type":          {"- {name: a, type: email, secret: {env: TEST_PD_KEY}}", `[0].type: unknown channel type "email"`},
		"no name":           {"- {type: pagerduty, secret: {env: TEST_PD_KEY}}", "[0].name: a channel needs a name"},
		"bad name":          {"- {name: 'a b', type: pagerduty, secret: {env: TEST_PD_KEY}}", `[0].name: channel name "a b"`},
		"duplicate":         {"- {name: a, type: pagerduty, secret: {env: TEST_PD_KEY}}\n- {name: a, type: pagerduty, secret: {env: TEST_PD_KEY}}", `[1].name: channel "a" is already defined at [0]`},
		"slack url literal": {"- {name: a, type: slack, url: 'https://hooks.slack.com/services/T/B/S', secret: {env: TEST_SLACK_URL}}", "[0].url: a slack webhook URL is a credential"},
		"slack unset":       {"- {name: a, type: slack, secret: {env: TEST_UNSET_VAR}}", "[0].secret: a slack channel needs its webhook URL as its secret (env:TEST_UNSET_VAR is empty)"},
		"pd short key":      {"- {name: a, type: pagerduty, secret: {env: TEST_SLACK_URL}}", "[0].secret: a PagerDuty routing key has 32 characters"},
		"pd plain http":     {"- {name: a, type: pagerduty, url: 'http://events.example.com/v2/enqueue', secret: {env: TEST_PD_KEY}}", "[0].url: PagerDuty events URL http://events.example.com/v2/enqueue is plain http"},
		"severity":          {"- {name: a, type: pagerduty, min_severity: 11, secret: {env: TEST_PD_KEY}}", "[0].min_severity: must be in [0, 10]"},
		"attempts":          {"- {name: a, type: pagerduty, max_attempts: 99, secret: {env: TEST_PD_KEY}}", "[0].max_attempts: must be in [1, 20]"},
		"dedup on slack":    {"- {name: a, type: slack, dedup_by: finding, secret: {env: TEST_SLACK_URL}}", "[0].dedup_by: only pagerduty channels"},
		"dedup value":       {"- {name: a, type: pagerduty, dedup_by: everything, secret: {env: TEST_PD_KEY}}", `[0].dedup_by: unknown "everything"`},
		"finding url":       {"- {name: a, type: pagerduty, finding_url: 'https://x.example/f', secret: {env: TEST_PD_KEY}}", `[0].finding_url: must contain "{id}"`},
		"webhook no url":    {"- {name: a, type: webhook, secret: {env: TEST_PD_KEY}}", "[0].url: a webhook channel needs the receiver's url"},
		"webhook secret":    {"- {name: a, type: webhook, url: 'https://x.example', secret: {env: TEST_PD_KEY}}", `[0].secret: webhook secret must start with "whsec_"`},
		"timeout type":      {"- {name: a, type: pagerduty, timeout: soon, secret: {env: TEST_PD_KEY}}", "soon"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			chs, err := decode(t, "channels:\n"+indent(c.yaml))
			if err == nil {
				err = ValidateChannels(chs)
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
			if strings.Contains(err.Error(), routingKey) || strings.Contains(err.Error(), "XXXXXXXX") {
				t.Fatalf("error repeats a secret: %v", err)
			}
		})
	}
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
