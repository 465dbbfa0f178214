package event

import (
	"fmt"
	"strings"
)

// Record keys. Every record about a principal (raw and normalized events, findings, scores,
// actions) is keyed by [PrincipalKey], so one principal's records share a partition on every
// topic and a stage's per-principal state stays partition-local. Control records are keyed by
// [Control.Key], one live control per kind, scope, tenant and value. These are the only
// definitions: stages, followers and sinks call them rather than building keys themselves.

// PrincipalID is the principal part of a key: the subject, else the OAuth client id, else
// "anonymous". Scores are kept under it (see [Score.Subject]).
func PrincipalID(p Principal) string {
	switch {
	case p.Subject != "":
		return p.Subject
	case p.ClientID != "":
		return p.ClientID
	}
	return "anonymous"
}

// PrincipalKey is the Kafka record key for a principal's records: tenant and [PrincipalID], so
// that one principal's events stay ordered in one partition.
func PrincipalKey(tenant string, p Principal) string { return tenant + "/" + PrincipalID(p) }

// ScoreKey is the record key of a score on the compacted scores topic: the [PrincipalKey] of the
// principal it scores (tenant "/" [PrincipalID]). Tenants hold no "/"; ids may.
func ScoreKey(tenant, principalID string) string { return tenant + "/" + principalID }

// Key is the record key of s: [ScoreKey] of its tenant and subject.
func (s Score) Key() string { return ScoreKey(s.Tenant, s.Subject) }

// ParseScoreKey splits a [ScoreKey] (a tombstone carries only the key).
func ParseScoreKey(k string) (tenant, principalID string, err error) {
	tenant, principalID, ok := strings.Cut(k, "/")
	if !ok || tenant == "" {
		return "", "", fmt.Errorf("%w: score key %q is not tenant/principal", ErrMalformed, k)
	}
	return tenant, principalID, nil
}

// Key is the compaction key of a control: one live control per kind, scope, tenant and value.
func (c Control) Key() string {
	return string(c.Kind) + "/" + string(c.Scope) + "/" + c.Tenant + "/" + c.Value
}

// Key is the record key of p on the profiles topic: [ScoreKey] of its tenant and subject, so a
// principal's profile shares the partition of its events.
func (p Profile) Key() string { return ScoreKey(p.Tenant, p.Subject) }
