package main

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/internal/approval"
)

// The built module.js signs votes that the Go verifier accepts, byte for byte: test/vote.mjs
// loads dist/module.js, signs with WebCrypto Ed25519 using an approver key written by Go
// (approval.GenerateKey, PKCS #8 PEM) through DataSource.vote and through signVote at fixed times
// (fractions .12, none, .1, .007, .999), with a reason in Korean with an emoji; every vote decodes
// strictly (approval.DecodeVote), verifies with approval.Keyring.Verify, has the signing bytes Go
// computes and its time exactly as Go's time.RFC3339Nano writes it. vote.mjs also checks that a
// view with a wrong hash, another request's record, a public key, a blank reason, a lone surrogate
// and an approver the request does not name are refused before posting. If this failed, votes
// signed in Grafana would be refused by the approvals API, or the browser could sign something
// other than what the approver was shown.
func TestFrontendSignsVotes(t *testing.T) {
	bin := node(t)
	dir := t.TempDir()
	privPEM, pubB64, err := approval.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := approval.ParsePublicKey(pubB64)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := approval.NewKeyring(map[string]ed25519.PublicKey{"ann": pub})
	if err != nil {
		t.Fatal(err)
	}
	store := approval.NewStore(ring)
	req := approval.NewActionRequest("acme", "playbook:exfil", "exfil-high", "revoke mallory",
		approval.PlaybookAction{Kind: "revoke", Scope: "subject", Value: "mallory"}, []string{"ann", "ben"}, 2, time.Now(), time.Hour, "")
	key, value, err := approval.EncodeRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Apply([]byte(key), value); err != nil {
		t.Fatal(err)
	}
	st, _ := store.Get(req.ID)
	view, _ := json.Marshal(approval.RequestView{Status: st, Record: st.Raw})
	reason := "유출 확인함 ✓ — naïve <&> 🚀"
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	fixed := map[int64]string{}
	var times []int64
	for ms, want := range map[int]string{120: "2026-01-02T03:04:05.12Z", 0: "2026-01-02T03:04:05Z", 100: "2026-01-02T03:04:05.1Z",
		7: "2026-01-02T03:04:05.007Z", 999: "2026-01-02T03:04:05.999Z"} {
		at := base.Add(time.Duration(ms) * time.Millisecond)
		if got := at.Format(time.RFC3339Nano); got != want {
			t.Fatalf("Go formats %d ms as %s, the test expects %s", ms, got, want)
		}
		times = append(times, at.UnixMilli())
		fixed[at.UnixMilli()] = want
	}
	input, _ := json.Marshal(map[string]any{"id": req.ID, "approver": "ann", "reason": reason, "times": times})
	for name, b := range map[string][]byte{"key.pem": privPEM, "view.json": view, "input.json": input} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(bin, "test/vote.mjs", "dist/module.js", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("test/vote.mjs: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "votes.json"))
	if err != nil {
		t.Fatal(err)
	}
	var signed []struct {
		Vote         json.RawMessage `json:"vote"`
		SigningBytes string          `json:"signing_bytes"`
	}
	if err := json.Unmarshal(raw, &signed); err != nil || len(signed) != 1+len(times) {
		t.Fatalf("votes.json: %v, %d votes; want %d", err, len(signed), 1+len(times))
	}
	for i, s := range signed {
		v, err := approval.DecodeVote(s.Vote)
		if err != nil {
			t.Errorf("vote %d %s: %v", i, s.Vote, err)
			continue
		}
		if err := ring.Verify(&v); err != nil {
			t.Errorf("vote %d %s: %v", i, s.Vote, err)
		}
		if got := hex.EncodeToString(v.SigningBytes()); got != s.SigningBytes {
			t.Errorf("vote %d: signing bytes\n js %s\n go %s", i, s.SigningBytes, got)
		}
		var sent struct{ Time string }
		_ = json.Unmarshal(s.Vote, &sent)
		want := v.Time.UTC().Format(time.RFC3339Nano)
		if i > 0 {
			want = fixed[v.Time.UnixMilli()]
		} else if d := time.Since(v.Time); d < -time.Minute || d > time.Minute {
			t.Errorf("DataSource.vote signed at %s, not now", sent.Time)
		}
		if sent.Time != want {
			t.Errorf("vote %d: time %q; Go writes %q", i, sent.Time, want)
		}
		if v.RequestID != req.ID || v.RequestHash != st.Hash || v.Approver != "ann" || v.Reason != reason {
			t.Errorf("vote %d: %s", i, s.Vote)
		}
		if i == 0 && v.Decision != approval.Approve || i > 0 && v.Decision != approval.Deny {
			t.Errorf("vote %d: decision %s", i, v.Decision)
		}
	}
	// The verifier is not vacuous: the first vote with one bit of its signature flipped fails.
	v, _ := approval.DecodeVote(signed[0].Vote)
	v.Signature[0] ^= 1
	if ring.Verify(&v) == nil {
		t.Error("a vote with a flipped signature bit verifies")
	}
	t.Logf("%s", out)
}
