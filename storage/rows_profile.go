package storage

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

// evidenceRows buffers the evidence Nested column (migration 0007) of scores or findings: one
// array per field and row, element i of each being the row's evidence i.
type evidenceRows struct {
	detector, check, component, feature, baselineSource, detail [][]string
	value, contribution, observed, baseline, peerPercentile     [][]float64
	windowStart, windowEnd                                      [][]time.Time
	eventIDs                                                    [][][]string
}

func (r *evidenceRows) columns() []column {
	return []column{
		{"evidence.detector", r.detector}, {"evidence.check", r.check}, {"evidence.component", r.component},
		{"evidence.feature", r.feature}, {"evidence.value", r.value}, {"evidence.contribution", r.contribution},
		{"evidence.observed", r.observed}, {"evidence.baseline", r.baseline},
		{"evidence.baseline_source", r.baselineSource}, {"evidence.peer_percentile", r.peerPercentile},
		{"evidence.detail", r.detail}, {"evidence.window_start", r.windowStart},
		{"evidence.window_end", r.windowEnd}, {"evidence.event_ids", r.eventIDs},
	}
}

// evidenceRow is one row's evidence, converted and checked before anything is appended.
type evidenceRow struct {
	detector, check, component, feature, baselineSource, detail []string
	value, contribution, observed, baseline, peerPercentile     []float64
	windowStart, windowEnd                                      []time.Time
	eventIDs                                                    [][]string
}

// evidenceOf converts evs in their order (most telling first). A missing peer percentile is NaN:
// the arrays must stay parallel, and 0 would read as "lowest among peers".
func evidenceOf(c *conv, evs []event.Evidence) evidenceRow {
	n := len(evs)
	r := evidenceRow{
		detector: make([]string, n), check: make([]string, n), component: make([]string, n), feature: make([]string, n),
		baselineSource: make([]string, n), detail: make([]string, n),
		value: make([]float64, n), contribution: make([]float64, n), observed: make([]float64, n),
		baseline: make([]float64, n), peerPercentile: make([]float64, n),
		windowStart: make([]time.Time, n), windowEnd: make([]time.Time, n), eventIDs: make([][]string, n),
	}
	for i, e := range evs {
		what := fmt.Sprintf("evidence %d (%s)", i, e.Feature)
		r.detector[i], r.check[i], r.component[i], r.feature[i] = e.Detector, e.Check, e.Component, e.Feature
		r.baselineSource[i], r.detail[i] = e.BaselineSource, e.Detail
		r.value[i] = c.finite(what+" value", e.Value)
		r.contribution[i] = c.finite(what+" contribution", e.Contribution)
		r.observed[i] = c.finite(what+" observed", e.Observed)
		r.baseline[i] = c.finite(what+" baseline", e.Baseline)
		r.peerPercentile[i] = math.NaN()
		if e.PeerPercentile != nil {
			r.peerPercentile[i] = c.finite(what+" peer percentile", *e.PeerPercentile)
		}
		r.windowStart[i] = c.dateTime(what+" window start", e.WindowStart, false)
		r.windowEnd[i] = c.dateTime(what+" window end", e.WindowEnd, false)
		r.eventIDs[i] = orEmpty(e.EventIDs)
	}
	return r
}

func (r *evidenceRows) add(e evidenceRow) {
	r.detector = append(r.detector, e.detector)
	r.check = append(r.check, e.check)
	r.component = append(r.component, e.component)
	r.feature = append(r.feature, e.feature)
	r.value = append(r.value, e.value)
	r.contribution = append(r.contribution, e.contribution)
	r.observed = append(r.observed, e.observed)
	r.baseline = append(r.baseline, e.baseline)
	r.baselineSource = append(r.baselineSource, e.baselineSource)
	r.peerPercentile = append(r.peerPercentile, e.peerPercentile)
	r.detail = append(r.detail, e.detail)
	r.windowStart = append(r.windowStart, e.windowStart)
	r.windowEnd = append(r.windowEnd, e.windowEnd)
	r.eventIDs = append(r.eventIDs, e.eventIDs)
}

// ProfilePeriod is the profiles.period of every profile the sink stores: a detector's profile
// decays over the principal's whole history rather than covering a fixed span; window_start
// and window_end say which history.
const ProfilePeriod = "all"

// profileRows buffers rows of the profiles table (migration 0004), one per profile record.
type profileRows struct {
	tenant, principal, profile, period, department, peerGroup, detail []string
	version, observations                                             []uint64
	updated, windowStart, windowEnd                                   []time.Time
	featureNames, toolNames                                           [][]string
	mean, stddev, p50, p95                                            [][]float64
	toolCounts, hourCounts                                            [][]uint64
}

func (r *profileRows) columns() []column {
	return []column{
		{"tenant", r.tenant}, {"principal", r.principal}, {"profile", r.profile}, {"period", r.period},
		{"version", r.version}, {"updated_time", r.updated}, {"window_start", r.windowStart},
		{"window_end", r.windowEnd}, {"observations", r.observations}, {"department", r.department},
		{"peer_group", r.peerGroup}, {"feature_names", r.featureNames}, {"feature_mean", r.mean},
		{"feature_stddev", r.stddev}, {"feature_p50", r.p50}, {"feature_p95", r.p95},
		{"tool_names", r.toolNames}, {"tool_counts", r.toolCounts}, {"hour_counts", r.hourCounts},
		{"detail", r.detail},
	}
}

func (r *profileRows) len() int { return len(r.tenant) }

// count rounds a decayed count to the UInt64 the table keeps.
func (c *conv) count(field string, v float64) uint64 {
	v = c.finite(field, v)
	if v < 0 {
		c.fail("%s %v is negative", field, v)
		return 0
	}
	return uint64(math.Round(v))
}

// ToolCategory is the profile category whose values the profiles table keeps in tool_names and
// tool_counts; every category is in detail.
const ToolCategory = "tool"

// add appends one profile record. The state is left out of detail: it is the detector's own
// encoding to resume from, opaque (and large) to SQL.
func (r *profileRows) add(p *event.Profile) error {
	var c conv
	updated := c.dateTime("time", p.Time, true)
	first := c.dateTime("first seen", p.FirstSeen, false)
	feats := slices.Clone(p.Features)
	slices.SortFunc(feats, func(a, b event.ProfileFeature) int { return strings.Compare(a.Name, b.Name) })
	names := make([]string, len(feats))
	mean, stddev, p50, p95 := make([]float64, len(feats)), make([]float64, len(feats)), make([]float64, len(feats)), make([]float64, len(feats))
	for i, f := range feats {
		names[i] = f.Name
		mean[i] = c.finite("feature "+f.Name+" mean", f.Mean)
		stddev[i] = c.finite("feature "+f.Name+" stddev", f.Stddev)
		p50[i] = c.finite("feature "+f.Name+" p50", f.P50)
		p95[i] = c.finite("feature "+f.Name+" p95", f.P95)
	}
	toolNames, toolCounts := []string{}, []uint64{}
	for _, cat := range p.Categories {
		if cat.Name != ToolCategory {
			continue
		}
		vals := slices.Clone(cat.Values)
		slices.SortFunc(vals, func(a, b event.ProfileValue) int { return strings.Compare(a.Value, b.Value) })
		for _, v := range vals {
			toolNames = append(toolNames, v.Value)
			toolCounts = append(toolCounts, c.count("tool "+v.Value+" count", v.Count))
		}
	}
	// 168 bins from Monday 00:00 UTC: bin i is hour i%24 of its day. Summed before rounding, so
	// small decayed counts still add up.
	hours := []uint64{}
	switch len(p.WeekHours) {
	case 0:
	case 7 * 24:
		var sum [24]float64
		for i, v := range p.WeekHours {
			sum[i%24] += c.finite(fmt.Sprintf("week hour %d", i), v)
		}
		hours = make([]uint64, 24)
		for h := range sum {
			hours[h] = c.count(fmt.Sprintf("hour %d", h), sum[h])
		}
	default:
		c.fail("week_hours has %d bins, want 168", len(p.WeekHours))
	}
	if c.err != nil {
		return fmt.Errorf("profile %s/%s %s v%d: %w", p.Tenant, p.Subject, p.Detector, p.Version, c.err)
	}
	stateless := *p
	stateless.State = nil
	detail, err := json.Marshal(&stateless)
	if err != nil {
		return rowError("profile %s/%s: %v", p.Tenant, p.Subject, err)
	}
	r.tenant = append(r.tenant, p.Tenant)
	r.principal = append(r.principal, p.Subject)
	r.profile = append(r.profile, p.Detector)
	r.period = append(r.period, ProfilePeriod)
	r.version = append(r.version, p.Version)
	r.updated = append(r.updated, updated)
	r.windowStart = append(r.windowStart, first)
	r.windowEnd = append(r.windowEnd, updated)
	r.observations = append(r.observations, p.Observations)
	r.department = append(r.department, p.Department)
	r.peerGroup = append(r.peerGroup, p.PeerGroup)
	r.featureNames = append(r.featureNames, names)
	r.mean = append(r.mean, mean)
	r.stddev = append(r.stddev, stddev)
	r.p50 = append(r.p50, p50)
	r.p95 = append(r.p95, p95)
	r.toolNames = append(r.toolNames, toolNames)
	r.toolCounts = append(r.toolCounts, toolCounts)
	r.hourCounts = append(r.hourCounts, hours)
	r.detail = append(r.detail, string(detail))
	return nil
}
