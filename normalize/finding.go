package normalize

import (
	"fmt"
	"math"
	"strings"

	json "github.com/goccy/go-json"

	"github.com/mcpwatch/mcpwatch/event"
)

// Finding signatures. Like event signatures their IDs never change meaning; a new detector adds
// a row. Findings of a detector without a row get SigFindingOther, with the detector in cs1.
//
//	detector "rate"     MCP-6001  Unusual call rate
//	any other detector  MCP-6099  Threat finding
var (
	SigFindingRate  = Signature{ID: "MCP-6001", Name: "Unusual call rate"}
	SigFindingOther = Signature{ID: "MCP-6099", Name: "Threat finding"}
)

var byDetector = map[string]Signature{
	"rate": SigFindingRate,
}

// FindingSignature returns the signature of a detector's findings.
func FindingSignature(detector string) Signature {
	if s, ok := byDetector[detector]; ok {
		return s
	}
	return SigFindingOther
}

// FindingSeverity maps a threat score (0–100) onto the CEF severity scale (0–10): the score
// divided by ten, rounded half away from zero, and clamped, so 0–4.9 → 0, 5–14.9 → 1, …,
// 95–100 → 10. With [Risk]'s bands that makes scores below 35 low, 35–64.9 medium, 65–84.9 high
// and 85 or more very-high. A NaN score (a detector bug) maps to 0; the score itself is still
// written, so the bug shows.
func FindingSeverity(score float64) int {
	if math.IsNaN(score) {
		return 0
	}
	return clampSeverity(int(math.Round(min(max(score, 0), 100) / 10)))
}

// CEF labels of the custom fields of findings.
const (
	LabelDetector    = "detector"         // cs1
	LabelEvidence    = "evidenceEventIds" // cs2
	LabelThreatScore = "threatScore"      // cfp1
	LabelEvidenceN   = "evidenceCount"    // cn1
)

// FindingCEF renders a detector finding as one CEF line for SIEMs. The header severity is
// [FindingSeverity] of the score (the finding's own Severity field is not consulted, so the
// line always agrees with the score it carries). It is a pure function of f.
func FindingCEF(f event.Finding) string {
	sig := FindingSignature(f.Detector)
	c := NewCEF(Vendor, Product, ProductVersion, sig.ID, sig.Name, FindingSeverity(f.Score))
	c.Int("rt", f.Time.UnixMilli())
	c.Ext("cat", "finding/"+f.Detector)
	c.Ext("externalId", f.ID)
	c.Ext("suser", f.Principal.Subject)
	c.Ext("spriv", strings.Join(f.Principal.Roles, ","))
	c.Ext("requestClientApplication", f.Principal.ClientID)
	if !f.WindowStart.IsZero() {
		c.Int("start", f.WindowStart.UnixMilli())
	}
	if !f.WindowEnd.IsZero() {
		c.Int("end", f.WindowEnd.UnixMilli())
	}
	c.Ext("msg", f.Summary)
	c.Labeled("cs1", LabelDetector, f.Detector)
	c.Labeled("cs2", LabelEvidence, strings.Join(f.EventIDs, ","))
	c.Labeled("cs3", LabelTenant, f.Tenant)
	c.LabeledInt("cn1", LabelEvidenceN, int64(len(f.EventIDs)))
	if math.IsNaN(f.Score) {
		c.Labeled("cfp1", LabelThreatScore, "NaN")
	} else {
		c.LabeledFloat("cfp1", LabelThreatScore, f.Score)
	}
	c.Labeled("flexString1", LabelToken, f.Principal.TokenID)
	return c.String()
}

// FindingLine renders a finding in the one-line audit format of [Line]:
//
//	2025-01-22T09:06:12 | MCP-6001 | user=alice | detector=rate | score=72.5 | risk=high
func FindingLine(f event.Finding) string {
	var b strings.Builder
	b.WriteString(f.Time.UTC().Format("2006-01-02T15:04:05"))
	b.WriteString(" | ")
	writeLine(&b, FindingSignature(f.Detector).ID)
	field := func(k, v string) {
		if v == "" {
			return
		}
		b.WriteString(" | ")
		b.WriteString(k)
		b.WriteByte('=')
		writeLine(&b, v)
	}
	user := f.Principal.Subject
	if user == "" {
		user = f.Principal.ClientID
	}
	field("user", user)
	field("detector", f.Detector)
	field("score", fmt.Sprintf("%.1f", f.Score))
	field("risk", Risk(FindingSeverity(f.Score)))
	return b.String()
}

// FindingOCSF renders a finding as an OCSF Detection Finding (class 2004), activity Create. The
// threat score is risk_score; severity_id comes from [FindingSeverity] through [OCSFSeverity].
// Features that are not finite numbers have no JSON form and are left out.
func FindingOCSF(f event.Finding) ([]byte, error) {
	sig := FindingSignature(f.Detector)
	sev := FindingSeverity(f.Score)
	o := newOCSF(ocsfClassFinding, 1, "Create", f.Time.UnixMilli(), sev, ocsfMetadata{
		UID: f.ID, EventCode: sig.ID, TenantUID: f.Tenant,
	})
	o.Message = f.Summary
	o.StatusID, o.Status = 1, "New"
	info := &ocsfFindingInfo{
		UID: f.ID, Title: sig.Name, Desc: f.Summary,
		Analytic: &ocsfAnalytic{UID: sig.ID, Name: f.Detector, TypeID: 2, Type: "Behavioral"},
	}
	if f.Detector != "" {
		info.Types = []string{f.Detector}
	}
	if !f.WindowStart.IsZero() {
		info.FirstSeenTime = f.WindowStart.UnixMilli()
		o.StartTime = info.FirstSeenTime
	}
	if !f.WindowEnd.IsZero() {
		info.LastSeenTime = f.WindowEnd.UnixMilli()
		o.EndTime = info.LastSeenTime
	}
	for _, id := range f.EventIDs {
		info.RelatedEvents = append(info.RelatedEvents, ocsfRelatedEvent{UID: id})
	}
	info.RelatedEventsCount = len(f.EventIDs)
	o.FindingInfo = info
	if !math.IsNaN(f.Score) {
		o.RiskScore = intPtr(int(math.Round(min(max(f.Score, 0), 100))))
	}
	level, caption := riskLevel(sev)
	o.RiskLevelID, o.RiskLevel = intPtr(level), caption
	if u := principalUser(&f.Principal); u != nil {
		o.Evidences = []ocsfEvidence{{User: u}}
		if f.Principal.Subject != "" {
			o.Observables = []ocsfObservable{{Name: "evidences[0].user.name", TypeID: 4, Type: "User Name", Value: f.Principal.Subject}}
		}
	}
	um := map[string]any{"detector": f.Detector, "cef_severity": sev}
	if finite(f.Score) {
		um["score"] = f.Score
	}
	if f.Principal.ClientID != "" {
		um["principal.client_id"] = f.Principal.ClientID
	}
	if len(f.Features) > 0 {
		feat := make(map[string]float64, len(f.Features)) // encoded with sorted keys
		for k, v := range f.Features {
			if finite(v) {
				feat[k] = v
			}
		}
		um["features"] = feat
	}
	o.Unmapped = um
	b, err := json.Marshal(o)
	if err != nil {
		return nil, fmt.Errorf("encode OCSF for finding %q: %w", f.ID, err)
	}
	return b, nil
}

// riskLevel maps a CEF severity to OCSF risk_level_id: 0 Info, 1–3 Low, 4–6 Medium, 7–8 High,
// 9–10 Critical.
func riskLevel(sev int) (int, string) {
	switch s := clampSeverity(sev); {
	case s == 0:
		return 0, "Info"
	case s <= 3:
		return 1, "Low"
	case s <= 6:
		return 2, "Medium"
	case s <= 8:
		return 3, "High"
	default:
		return 4, "Critical"
	}
}
