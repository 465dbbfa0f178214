package outbound

import (
	"net/url"
	"strings"
	"testing"
)

// Receiver URLs are refused unless https or loopback http, and neither a refusal nor a redacted
// URL repeats credentials, query or a Slack-style secret path. If this fails, findings travel in
// clear text or a credential reaches the logs. (Retries and their classification are tested
// through response/webhook_test.go and response/notify.)
func TestURLs(t *testing.T) {
	for raw, want := range map[string]string{
		"https://hooks.example.com/x":         "",
		"http://127.0.0.1:9/x":                "",
		"http://localhost/x":                  "",
		"http://[::1]:8/x":                    "",
		"http://user:pw@soar.example.com/h?t": "plain http to a non-loopback host",
		"ftp://soar.example.com/":             `scheme "ftp"`,
		"https:///nohost":                     "has no host",
	} {
		err := ValidateURL(raw, "webhook URL")
		if (want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", raw, err, want)
		}
		if err != nil && (strings.Contains(err.Error(), "pw") || strings.Contains(err.Error(), "?t")) {
			t.Errorf("%s: error repeats credentials: %v", raw, err)
		}
	}
	u, _ := url.Parse("https://u:p@hooks.slack.com/services/T0/B0/SECRET?x=1#f")
	if got := Redact(u); got != "https://hooks.slack.com/services/T0/B0/SECRET" {
		t.Errorf("Redact %s", got)
	}
	if got := RedactHost(u); got != "https://hooks.slack.com" {
		t.Errorf("RedactHost %s", got)
	}
}
