package ledger

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/chtest"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
	"github.com/mcpwatch/mcpwatch/storage"
)

type peerResult struct {
	Entries, Verified int
	Breaks            []struct {
		Seq    uint64
		Reason string
	}
}

// peerVerify runs test/peers/audit_verify.mjs, the independent implementation, on a JSONL file.
func peerVerify(t *testing.T, file string, pubs ...ed25519.PublicKey) peerResult {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		msg := "node not found (Node.js 20+ runs the independent audit verifier): " + err.Error()
		if testenv.InCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	args := []string{filepath.Join("..", "..", "test", "peers", "audit_verify.mjs"), file}
	for i, p := range pubs {
		b, err := MarshalPublicPEM(p)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "k"+string(rune('0'+i))+".pub")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, path)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(node, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("audit_verify.mjs: %v\n%s", err, stderr.String())
	}
	var res peerResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("audit_verify.mjs printed %q: %v", out, err)
	}
	return res
}

func writeLines(t *testing.T, lines [][]byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(path, append(bytes.Join(lines, []byte("\n")), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// A second implementation, written from the documented format with Node's crypto, verifies a
// chain this package sealed (two keys, a rotation), and finds each tampering at the same entry
// with the same reason as the Go verifier. If this fails, the documented canonical encoding is
// not the one the ledger signs, and no one outside mcpwatch could check the trail.
func TestPeerVerifiesChain(t *testing.T) {
	key, other := mustKey(t), mustKey(t)
	chain := testChain(t, key, 5)
	for i := 3; i < 5; i++ { // rotated to another key at seq 4
		var p event.AuditEntry
		_ = event.DecodeAudit(chain[i-1], &p)
		chain[i] = reseal(t, chain[i], other, func(e *event.AuditEntry) { e.PrevHash = p.Hash })
	}
	res := peerVerify(t, writeLines(t, chain), key.Public, other.Public)
	if res.Entries != 5 || res.Verified != 5 || len(res.Breaks) != 0 {
		t.Fatalf("peer on an intact chain: %+v", res)
	}
	tampered := map[string]struct {
		lines  [][]byte
		seq    uint64
		reason error
	}{
		"action byte": {lines: func() [][]byte {
			c := append([][]byte(nil), chain...)
			var e event.AuditEntry
			_ = event.DecodeAudit(c[1], &e)
			e.Action = bytes.Replace(e.Action, []byte("mallory"), []byte("mallorz"), 1)
			c[1], _ = event.EncodeAudit(&e)
			return c
		}(), seq: 2, reason: ErrHashMismatch},
		"deleted": {lines: append(append([][]byte(nil), chain[:2]...), chain[3:]...), seq: 4, reason: ErrSeqGap},
		"swapped": {lines: [][]byte{chain[0], chain[2], chain[1], chain[3], chain[4]}, seq: 3, reason: ErrSeqGap},
		"key":     {lines: chain, seq: 4, reason: ErrUnknownKey}, // verified without the second key
	}
	for name, c := range tampered {
		t.Run(name, func(t *testing.T) {
			pubs := []ed25519.PublicKey{key.Public, other.Public}
			if name == "key" {
				pubs = pubs[:1]
			}
			res := peerVerify(t, writeLines(t, c.lines), pubs...)
			if len(res.Breaks) == 0 || res.Breaks[0].Seq != c.seq || res.Breaks[0].Reason != c.reason.Error() {
				t.Fatalf("peer found %+v, want seq %d: %v", res.Breaks, c.seq, c.reason)
			}
			keys := map[string]ed25519.PublicKey{}
			for _, p := range pubs {
				keys[KeyID(p)] = p
			}
			goRep, err := Verify(context.Background(), FileSource(writeLines(t, c.lines)), keys)
			if err != nil {
				t.Fatal(err)
			}
			if fb := goRep.FirstBreak(); fb == nil || fb.Seq != c.seq || !errors.Is(fb.Reason, c.reason) {
				t.Fatalf("Go verifier found %v, peer %+v", fb, res.Breaks[0])
			}
		})
	}
}

// The whole path as deployed: the ledger chains actions from the real Kafka, the sink copies the
// audit topic into the real ClickHouse, and the chain verifies from the topic, from the table,
// from an export file, and by the independent verifier reading that export; then one byte of
// the export changed is caught by both verifiers. If this fails, one of the three places an
// investigator verifies from disagrees with the others.
func TestVerifyEverywhere(t *testing.T) {
	h := newHarness(t, testenv.Kafka(t), testenv.Topics(t))
	db := chtest.New(t)
	want := h.actions(12)
	stop, _ := startLedger(h.ledger(nil))
	h.exactlyOnce(want, 0)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	keys := map[string]ed25519.PublicKey{h.key.ID: h.key.Public}
	kafkaSrc := KafkaSource(h.kcfg(), h.names.Audit, fast...)
	var recs []*kgo.Record
	if err := kafkaSrc(ctx, func(raw []byte) error {
		recs = append(recs, &kgo.Record{Topic: h.names.Audit, Value: bytes.Clone(raw)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	db.Store(t, h.names, recs[:5], recs[3:]) // overlapping batches: a replay
	env := testenv.ClickHouse(t)
	chSrc := ClickHouseSource(storage.Options{Addr: env.Addr, Database: db.Name, User: env.AdminUser, Password: env.AdminPassword})
	file := filepath.Join(t.TempDir(), "audit.jsonl")
	if n, err := ExportFile(ctx, kafkaSrc, file); err != nil || n != len(want) {
		t.Fatalf("export: %d entries, %v", n, err)
	}
	if _, err := ExportFile(ctx, kafkaSrc, file); err == nil {
		t.Fatal("export overwrote an existing file")
	}
	for name, src := range map[string]Source{"kafka": kafkaSrc, "clickhouse": chSrc, "file": FileSource(file)} {
		rep, err := Verify(ctx, src, keys)
		if err != nil || !rep.OK() || rep.Verified != len(want) || rep.First != 1 || rep.Last != uint64(len(want)) {
			t.Fatalf("%s: %+v %v", name, rep, err)
		}
	}
	if res := peerVerify(t, file, h.key.Public); res.Verified != len(want) || len(res.Breaks) != 0 {
		t.Fatalf("peer: %+v", res)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	var e event.AuditEntry
	if err := event.DecodeAudit(lines[6], &e); err != nil {
		t.Fatal(err)
	}
	e.Action[len(e.Action)/2] ^= 1
	lines[6], _ = event.EncodeAudit(&e)
	bad := writeLines(t, lines)
	rep, err := Verify(ctx, FileSource(bad), keys)
	if err != nil || rep.OK() || rep.FirstBreak().Seq != 7 || !errors.Is(rep.FirstBreak().Reason, ErrHashMismatch) {
		t.Fatalf("Go verifier on a changed byte: %+v %v", rep, err)
	}
	if err := CheckReport(rep); !errors.Is(err, ErrBroken) || !strings.Contains(err.Error(), "seq 7") {
		t.Fatalf("CheckReport: %v", err)
	}
	if res := peerVerify(t, bad, h.key.Public); len(res.Breaks) != 1 || res.Breaks[0].Seq != 7 || res.Breaks[0].Reason != "hash mismatch" {
		t.Fatalf("peer on a changed byte: %+v", res)
	}
}
