// Package filewatch holds what the components that reload a file by polling share: deciding,
// poll by poll, when changed content is settled enough to load.
package filewatch

import (
	"context"
	"time"
)

// Hash is a content hash (SHA-256 of what a poll read).
type Hash = [32]byte

// Step is what a poll should do with the content it read.
type Step int

const (
	// Unchanged: the content is the one in force; an earlier failure is over.
	Unchanged Step = iota
	// Wait: the content changed since the last poll; load it only if the next poll sees it
	// again, so a file caught mid-write (a truncated policy that still parses) is not loaded.
	Wait
	// Load: the content is settled and was not tried before: load it now.
	Load
	// Failed: the content already failed to load; it is not tried or reported again until it
	// changes.
	Failed
)

// Settle remembers, between polls, the content seen once and the content that failed. The zero
// value is ready. Callers serialize their polls.
type Settle struct {
	pending, failed Hash
}

// Next says what to do with content h while current is in force. After a Load that fails,
// call [Settle.Fail] with h.
func (s *Settle) Next(h, current Hash) Step {
	switch {
	case h == current:
		s.pending, s.failed = Hash{}, Hash{}
		return Unchanged
	case h != s.pending:
		s.pending = h
		return Wait
	case h != s.failed:
		return Load
	}
	return Failed
}

// Fail records that h failed to load, so later polls of the same content return Failed.
// It reports whether h is a new failure (one to log and count).
func (s *Settle) Fail(h Hash) bool {
	if h == s.failed {
		return false
	}
	s.failed = h
	return true
}

// Poll calls poll every interval until ctx ends (not at once: the caller loaded the file when
// it started).
func Poll(ctx context.Context, every time.Duration, poll func()) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		poll()
	}
}
