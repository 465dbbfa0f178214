// Package scores is the gateway's view of the detectors' live threat scores: a [Store] of the
// latest [event.Score] per tenant and subject, rebuilt by a [Follower] that reads the compacted
// scores topic from the start (no consumer group, so every gateway replica holds every score) and
// then tails it. Policies use the score as the request's risk (max_risk, step_up_risk).
package scores

import (
	"fmt"
	"sync"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

// Entry is the latest score of one principal.
type Entry struct {
	Score float64
	Time  time.Time // when the detector computed it
}

type key struct{ tenant, subject string }

// Store holds the latest score per tenant and subject. It is safe for concurrent use; lookups
// take a read lock and do one map lookup with no allocation.
type Store struct {
	mu sync.RWMutex
	m  map[key]Entry
}

// NewStore returns an empty store.
func NewStore() *Store { return &Store{m: map[key]Entry{}} }

// Apply applies one record of the scores topic. An empty value is a tombstone and forgets the
// score under key. A value that does not decode, or whose tenant/subject differs from the record
// key, is refused with an error wrapping [event.ErrMalformed] and leaves the store unchanged.
func (s *Store) Apply(k, value []byte) error {
	if len(value) == 0 {
		tenant, subject, err := event.ParseScoreKey(string(k))
		if err != nil {
			return fmt.Errorf("score tombstone: %w", err)
		}
		s.mu.Lock()
		delete(s.m, key{tenant, subject})
		s.mu.Unlock()
		return nil
	}
	var sc event.Score
	if err := event.Decode(value, &sc); err != nil {
		return fmt.Errorf("score record %q: %w", k, err)
	}
	if sc.Key() != string(k) {
		return fmt.Errorf("%w: score record key %q differs from its tenant/subject %q", event.ErrMalformed, k, sc.Key())
	}
	s.Set(sc.Tenant, sc.Subject, Entry{Score: sc.Score, Time: sc.Time})
	return nil
}

// Set stores e as the latest score of tenant/subject.
func (s *Store) Set(tenant, subject string, e Entry) {
	s.mu.Lock()
	s.m[key{tenant, subject}] = e
	s.mu.Unlock()
}

// Lookup returns the latest score of tenant/subject, and false when none is known.
func (s *Store) Lookup(tenant, subject string) (Entry, bool) {
	s.mu.RLock()
	e, ok := s.m[key{tenant, subject}]
	s.mu.RUnlock()
	return e, ok
}

// Risk returns the latest score of tenant/subject as a policy risk (0–100), and false when none is
// known. It is what the gateway's risk lookup needs.
func (s *Store) Risk(tenant, subject string) (float64, bool) {
	e, ok := s.Lookup(tenant, subject)
	return e.Score, ok
}

// Len is the number of principals with a score.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m)
}

// ZeroWhenAbsent reads a principal without a score as risk 0, known. The detect stage's scorer
// (detectors/score) publishes a score only once a principal's rises above 0, and publishes 0
// when the principal's signals expire, so once the [Follower] has caught up a missing score
// means "nothing anomalous seen" — while [Store.Risk] reports it as unknown, which policies with
// max_risk deny. Use it only behind a caught-up follower, as the pipeline does.
type ZeroWhenAbsent struct{ *Store }

// Risk returns the principal's score, 0 when none, and always true.
func (z ZeroWhenAbsent) Risk(tenant, subject string) (float64, bool) {
	e, _ := z.Lookup(tenant, subject)
	return e.Score, true
}
