package eval

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// VenvPython is where scripts/peers.sh installs the Python with scikit-learn, from the module root.
const VenvPython = ".local/eval-venv/bin/python"

// FindPython returns the Python to run scikit-learn with: explicit when set, else the peers venv
// found from the working directory upwards, else "python3".
func FindPython(explicit string) string {
	if explicit != "" {
		return explicit
	}
	dir, err := os.Getwd()
	for err == nil {
		if p := filepath.Join(dir, VenvPython); fileExists(p) {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "python3"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// runPython runs script (source text) with python, stdin in, and returns its stdout.
func runPython(python, script string, in []byte) ([]byte, error) {
	cmd := exec.Command(python, "-c", script)
	cmd.Stdin = bytes.NewReader(in)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("%s: %w: %s (scikit-learn missing? run scripts/peers.sh)", python, err, bytes.TrimSpace(stderr.Bytes()))
		}
		return nil, fmt.Errorf("%s: %w", python, err)
	}
	return out.Bytes(), nil
}
