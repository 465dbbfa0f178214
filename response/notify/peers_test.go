package notify

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// peerTool returns the absolute path of an installed peer (scripts/peers.sh installs them):
// outside CI a missing one skips the test, under CI it fails it.
func peerTool(t *testing.T, rel, what string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", rel))
	if err == nil {
		_, err = os.Stat(p)
	}
	if err != nil {
		testenv.Missing(t, what, err.Error()+"; run scripts/peers.sh")
	}
	return p
}

// runCheck feeds one payload per line to a checker and returns its answer per payload.
func runCheck(t *testing.T, name string, args []string, payloads [][]byte) []struct {
	OK     bool     `json:"ok"`
	Errors []string `json:"errors"`
} {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(append(bytes.Join(payloads, []byte("\n")), '\n'))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr.String())
	}
	var res []struct {
		OK     bool     `json:"ok"`
		Errors []string `json:"errors"`
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var r struct {
			OK     bool     `json:"ok"`
			Errors []string `json:"errors"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("bad output line %q: %v", sc.Text(), err)
		}
		res = append(res, r)
	}
	if len(res) != len(payloads) {
		t.Fatalf("%d answers for %d payloads", len(res), len(payloads))
	}
	return res
}

// peerMessages are the payloads the independent checkers read: an ordinary and a hostile finding,
// with and without a playbook, link and actions.
func peerMessages() []Message {
	return []Message{
		{Finding: sampleFinding("f-1")},
		{Finding: sampleFinding("f-2"), Playbook: "exfil-high", DryRun: true, Actions: []Decided{{Kind: "revoke", Target: "alice", Status: "issued"}}},
		{Finding: hostileFinding("f-3"), Playbook: "<!channel>", Actions: []Decided{{Kind: "quarantine", Target: "[x](https://evil.example)"}}},
	}
}

// Slack's own SDK (slack_sdk's Block Kit models) parses every block of our messages, finds each
// within its limits, and keeps every key on a round trip. If this fails, Slack would answer
// invalid_blocks and the SOC would never see the finding.
func TestSlackBlocksPeer(t *testing.T) {
	py := peerTool(t, ".local/formats-venv/bin/python", "slack_sdk (formats venv)")
	script := peerTool(t, "test/peers/slack_blocks_check.py", "slack_blocks_check.py")
	var payloads [][]byte
	for _, m := range peerMessages() {
		v := newView(&m, "https://console.example/f/{id}")
		b, err := marshal(slackPayload(&v))
		if err != nil {
			t.Fatal(err)
		}
		payloads = append(payloads, b)
	}
	// The checker must refuse what Slack refuses, or its silence proves nothing.
	payloads = append(payloads, []byte(`{"text":"x","blocks":[{"type":"header","text":{"type":"plain_text","text":"`+strings.Repeat("h", 151)+`"}}]}`))
	res := runCheck(t, py, []string{script}, payloads)
	for i, r := range res[:len(res)-1] {
		if !r.OK {
			t.Errorf("message %d: slack_sdk: %v", i, r.Errors)
		}
	}
	if res[len(res)-1].OK {
		t.Error("slack_sdk accepted a 151-character header: the checker is not checking")
	}
}

// Microsoft's Adaptive Cards library parses our Teams cards without a warning (unknown element,
// invalid property value, unsupported version) and validates them. If this fails, Teams would
// drop or mis-render the card.
func TestAdaptiveCardPeer(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		testenv.Missing(t, "node", err.Error())
	}
	peerTool(t, "test/peers/node_modules/adaptivecards/dist/adaptivecards.js", "adaptivecards (npm)")
	script := peerTool(t, "test/peers/adaptive_card_check.cjs", "adaptive_card_check.cjs")
	var payloads [][]byte
	for _, m := range peerMessages() {
		v := newView(&m, "https://console.example/f/{id}")
		b, err := marshal(teamsPayload(&v, m.Finding.Severity))
		if err != nil {
			t.Fatal(err)
		}
		payloads = append(payloads, b)
	}
	payloads = append(payloads, []byte(`{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","content":{"type":"AdaptiveCard","version":"1.4","body":[{"type":"TextBlock","text":"x","size":"huge"}]}}]}`))
	res := runCheck(t, "node", []string{script}, payloads)
	for i, r := range res[:len(res)-1] {
		if !r.OK {
			t.Errorf("card %d: adaptivecards: %v", i, r.Errors)
		}
	}
	if res[len(res)-1].OK {
		t.Error(`adaptivecards accepted size "huge": the checker is not checking`)
	}
}
