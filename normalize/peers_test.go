package normalize

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// formatsPython returns the interpreter of the venv that holds the independent format checkers
// (test/peers/requirements-formats.txt, installed by scripts/peers.sh). Outside CI a missing venv
// skips the test; under CI it fails it, so the proof cannot silently disappear.
func formatsPython(t *testing.T) string {
	t.Helper()
	py, err := filepath.Abs("../.local/formats-venv/bin/python")
	if err == nil {
		_, err = os.Stat(py)
	}
	if err != nil {
		msg := "format checkers not installed (" + err.Error() + "); run scripts/peers.sh"
		if testenv.InCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return py
}

// runPeer feeds one JSON value per line to a test/peers script and returns one decoded JSON
// output per input line.
func runPeer[T any](t *testing.T, script string, args []string, inputs []any) []T {
	t.Helper()
	var in bytes.Buffer
	enc := json.NewEncoder(&in)
	enc.SetEscapeHTML(false)
	for _, v := range inputs {
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(formatsPython(t), append([]string{filepath.Join("..", "test", "peers", script)}, args...)...)
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, stderr.String())
	}
	var res []T
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var r T
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: bad output line %q: %v", script, sc.Text(), err)
		}
		res = append(res, r)
	}
	if len(res) != len(inputs) {
		t.Fatalf("%s: %d results for %d inputs\n%s", script, len(res), len(inputs), stderr.String())
	}
	return res
}
