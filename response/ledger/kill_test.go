package ledger

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// childEnv makes the test binary run a ledger instead of the tests (see TestMain).
const childEnv = "MCPWATCH_LEDGER_TEST_CHILD"

// runChild runs a ledger from the environment until it is killed.
func runChild() int {
	key, err := ParsePrivatePEM([]byte(os.Getenv("MCPWATCH_LEDGER_TEST_KEY")))
	if err != nil {
		slog.Error("child", "err", err)
		return 2
	}
	names := event.TopicNames(os.Getenv("MCPWATCH_LEDGER_TEST_PREFIX"))
	l, err := New(Options{Kafka: kafkaio.Config{Brokers: strings.Split(os.Getenv("MCPWATCH_KAFKA_BROKERS"), ","), ClientID: "child"},
		Topics: names, TransactionalID: names.Audit + ".ledger", Key: key, MaxBatch: 5, ClientOpts: fast})
	if err != nil {
		slog.Error("child", "err", err)
		return 2
	}
	if err := l.Run(context.Background()); err != nil {
		slog.Error("child", "err", err)
		return 1
	}
	return 0
}

// The ledger process killed with SIGKILL at random moments while actions keep arriving, then
// started again, several times, against the real Kafka: the chain still holds every action
// exactly once and verifies. If this fails, a crash (OOM kill, node loss) at some point of the
// produce–commit cycle loses an audit entry or writes one twice.
func TestLedgerKilled(t *testing.T) {
	brokers := testenv.Kafka(t)
	prefix := testenv.TopicPrefix(t)
	h := newHarness(t, brokers, event.TopicNames(prefix))
	pem, err := h.key.MarshalPrivatePEM()
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for round := range 4 {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=1", "MCPWATCH_LEDGER_TEST_KEY="+string(pem),
			"MCPWATCH_LEDGER_TEST_PREFIX="+prefix, "MCPWATCH_KAFKA_BROKERS="+strings.Join(brokers, ","))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Actions keep arriving while the child chains them; it dies mid-stream.
		deadline := time.Now().Add(time.Duration(300+rand.IntN(900)) * time.Millisecond)
		for time.Now().Before(deadline) {
			want = append(want, h.actions(1+rand.IntN(4))...)
			time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		t.Logf("round %d: killed with %d actions published", round, len(want))
	}
	// A last instance finishes the work.
	stop, _ := startLedger(h.ledger(nil))
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	h.exactlyOnce(want, 0)
}
