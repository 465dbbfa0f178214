//go:build !unix

package spool

import (
	"fmt"
	"os"
)

// lockDir opens path; platforms without flock get no cross-process exclusion.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return f, nil
}
