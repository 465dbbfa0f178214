// Package control is the enforcement side of the compacted control topic: a [Store] of the
// revocations and quarantines in force, rebuilt by a [Follower] that reads the topic from the start
// and then tails it. Every gateway replica holds the whole set and consults it on every call, so a
// control written by the responder takes effect on the next request that reaches any replica.
package control

import (
	"fmt"
	"sync"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

// target is what a control applies to. A struct of strings is a map key that needs no allocation
// to look up, which keeps [Store.Check] cheap on the request path.
type target struct {
	scope  event.ControlScope
	tenant string
	value  string
}

// Store is the set of controls in force, keyed by [event.Control.Key]. It is safe for concurrent
// use; [Store.Check] takes only a read lock and does a bounded number of map lookups.
type Store struct {
	mu    sync.RWMutex
	byKey map[string]event.Control
	// byTarget indexes the same controls by what they apply to. A target rarely holds more than
	// one control (a revoke and a quarantine of the same value), so a slice beats a nested map.
	byTarget map[target][]event.Control
	// watchers are called after every change; see [Store.OnChange].
	watchers []func()
	// lifted is when each key's last tombstone was written (see [Store.LiftedAt]), bounded by
	// maxLifted.
	lifted map[string]time.Time
}

// maxLifted bounds [Store.lifted]; beyond it, the oldest lifts are forgotten.
const maxLifted = 10000

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{byKey: map[string]event.Control{}, byTarget: map[target][]event.Control{}, lifted: map[string]time.Time{}}
}

// LiftedAt returns when the last tombstone of key was written to the control topic (an operator's
// lift), if the store has seen one. The respond stage uses it so that a lift ends a playbook's
// deduplication of that control: the next finding acts again.
func (s *Store) LiftedAt(key string) (time.Time, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.lifted[key]
	return t, ok
}

// ApplyAt is [Store.Apply] for a record written at at: a tombstone's time is kept for
// [Store.LiftedAt].
func (s *Store) ApplyAt(key, value []byte, at time.Time) error {
	if len(value) == 0 {
		s.mu.Lock()
		if _, ok := s.lifted[string(key)]; !ok && len(s.lifted) >= maxLifted {
			var oldest string
			for k, t := range s.lifted {
				if oldest == "" || t.Before(s.lifted[oldest]) {
					oldest = k
				}
			}
			delete(s.lifted, oldest)
		}
		s.lifted[string(key)] = at
		s.mu.Unlock()
	}
	return s.Apply(key, value)
}

// Apply applies one record of the control topic. An empty value is a tombstone and lifts the
// control stored under key. A value that does not decode, or whose [event.Control.Key] differs
// from the record key, is refused with an error wrapping [event.ErrMalformed] and leaves the store
// unchanged: a control under the wrong key could never be lifted by its tombstone.
func (s *Store) Apply(key, value []byte) error {
	k := string(key)
	if len(value) == 0 {
		s.mu.Lock()
		s.remove(k)
		w := s.watchers
		s.mu.Unlock()
		notify(w)
		return nil
	}
	var c event.Control
	if err := event.Decode(value, &c); err != nil {
		return fmt.Errorf("control record %q: %w", k, err)
	}
	if c.Key() != k {
		return fmt.Errorf("%w: control record key %q differs from its control key %q", event.ErrMalformed, k, c.Key())
	}
	s.mu.Lock()
	s.remove(k)
	s.byKey[k] = c
	t := targetOf(c)
	s.byTarget[t] = append(s.byTarget[t], c)
	w := s.watchers
	s.mu.Unlock()
	notify(w)
	return nil
}

// OnChange registers fn to be called after every record applied, from the goroutine applying it
// (the follower's): fn must return quickly, e.g. by waking a goroutine of its own. Enforcement
// points that act on state rather than per call (freezing sandboxes) use it to act within moments
// of a control arriving.
func (s *Store) OnChange(fn func()) {
	s.mu.Lock()
	s.watchers = append(s.watchers[:len(s.watchers):len(s.watchers)], fn)
	s.mu.Unlock()
}

func notify(watchers []func()) {
	for _, fn := range watchers {
		fn()
	}
}

// Match returns the first control in force at now that refuses calls ([event.Control.Refuses])
// for exactly scope and value, in tenant or for every tenant. It serves the scopes [Store.Check]
// leaves to others, such as [event.ScopeSandbox].
func (s *Store) Match(tenant string, scope event.ControlScope, value string, now time.Time) (event.Control, bool) {
	return s.MatchKind(tenant, "", scope, value, now)
}

// MatchKind is [Store.Match] for controls of one kind; kind "" means any kind that refuses calls.
func (s *Store) MatchKind(tenant string, kind event.ControlKind, scope event.ControlScope, value string, now time.Time) (event.Control, bool) {
	if value == "" {
		return event.Control{}, false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, tn := range []string{tenant, ""} {
		for _, c := range s.byTarget[target{scope: scope, tenant: tn, value: value}] {
			if c.Active(now) && (kind == "" && c.Refuses() || kind != "" && c.Kind == kind) {
				return c, true
			}
		}
		if tenant == "" {
			break
		}
	}
	return event.Control{}, false
}

// Get returns the control stored under key, in force or not.
func (s *Store) Get(key string) (event.Control, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.byKey[key]
	return c, ok
}

// remove drops the control stored under key; s.mu must be held for writing.
func (s *Store) remove(key string) {
	old, ok := s.byKey[key]
	if !ok {
		return
	}
	delete(s.byKey, key)
	t := targetOf(old)
	list := s.byTarget[t]
	for i := range list {
		if list[i].Key() == key {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(s.byTarget, t)
	} else {
		s.byTarget[t] = list
	}
}

func targetOf(c event.Control) target {
	return target{scope: c.Scope, tenant: c.Tenant, value: c.Value}
}

// Check reports the first control in force at now that refuses a call by p in tenant to tool on
// server (tool is empty for calls that are not tools/call). It matches, in this order, the
// principal's token id, subject and client id, then the server, then the tool by its bare name and
// as "server/tool". Both kinds that refuse ([event.Control.Refuses]) count for any scope: a
// quarantined subject is refused as surely as a revoked one. A control with an empty tenant
// applies to every tenant. Empty principal fields never
// match.
func (s *Store) Check(tenant string, p event.Principal, server, tool string, now time.Time) (event.Control, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.byKey) == 0 {
		return event.Control{}, false
	}
	tenants := [2]string{tenant, ""}
	n := 2
	if tenant == "" {
		n = 1
	}
	var serverTool string
	if server != "" && tool != "" {
		serverTool = server + "/" + tool
	}
	for _, tn := range tenants[:n] {
		for _, q := range [...]struct {
			scope event.ControlScope
			value string
		}{
			{event.ScopeToken, p.TokenID},
			{event.ScopeSubject, p.Subject},
			{event.ScopeClient, p.ClientID},
			{event.ScopeServer, server},
			{event.ScopeTool, tool},
			{event.ScopeTool, serverTool},
		} {
			if q.value == "" {
				continue
			}
			for _, c := range s.byTarget[target{scope: q.scope, tenant: tn, value: q.value}] {
				if c.Active(now) && c.Refuses() {
					return c, true
				}
			}
		}
	}
	return event.Control{}, false
}

// Active returns the number of controls in force at now.
func (s *Store) Active(now time.Time) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, c := range s.byKey {
		if c.Active(now) {
			n++
		}
	}
	return n
}

// Len returns the number of stored controls, expired ones included: they stay until their
// tombstone arrives, since an expiry is checked at use and costs nothing to keep.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.byKey)
}

// Controls returns a copy of every stored control, for inspection and debugging endpoints.
func (s *Store) Controls() []event.Control {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]event.Control, 0, len(s.byKey))
	for _, c := range s.byKey {
		out = append(out, c)
	}
	return out
}
