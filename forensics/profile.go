package forensics

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/mcpwatch/mcpwatch/event"
)

// Count is one value with how often it was seen (profile counts are decayed, so fractional).
type Count struct {
	Value string  `json:"value"`
	Count float64 `json:"count"`
}

// Normal is a principal's behaviour profile as its detector last published it: what is usual
// for it, to hold its recent activity against.
type Normal struct {
	Tenant       string                 `json:"tenant"`
	Principal    string                 `json:"principal"`
	Detector     string                 `json:"detector"`
	Version      uint64                 `json:"version"`
	Updated      time.Time              `json:"updated"`
	FirstSeen    time.Time              `json:"first_seen"`
	Observations uint64                 `json:"observations"`
	Confidence   float64                `json:"confidence"`
	PeerGroup    string                 `json:"peer_group,omitempty"`
	Tools        []Count                `json:"tools"`
	Clients      []Count                `json:"clients"`
	Networks     []Count                `json:"networks"`
	Features     []event.ProfileFeature `json:"features"`
	HourCounts   []uint64               `json:"hour_counts"` // calls per hour of day, UTC
}

// Now is the principal's activity in the last hour of the window that has any: the hour before
// its last event.
type Now struct {
	Since   time.Time `json:"since"`
	Until   time.Time `json:"until"`
	Calls   uint64    `json:"calls"`
	Tools   []Count   `json:"tools"`
	Clients []Count   `json:"clients"`
	SrcIPs  []Count   `json:"src_ips"`
}

// LatestScore is the principal's newest threat score before the window's end, with why.
type LatestScore struct {
	Time          time.Time          `json:"time"`
	Score         float64            `json:"score"`
	Explanation   string             `json:"explanation,omitempty"`
	Contributions map[string]float64 `json:"contributions,omitempty"`
	Evidence      []event.Evidence   `json:"evidence"`
}

// Behaviour sets "normal" (the profiles) next to "now" for a principal investigation.
type Behaviour struct {
	Normal []Normal     `json:"normal"` // one per detector that profiles the principal
	Now    *Now         `json:"now,omitempty"`
	Score  *LatestScore `json:"score,omitempty"`
}

// topN is how many values of each distribution are shown.
const topN = 10

// behaviour reads the profiles, the last hour and the latest score of the principal v.
func (s *scope) behaviour(ctx context.Context, conn driver.Conn, q Query) (*Behaviour, error) {
	b := &Behaviour{Normal: []Normal{}}
	tenant := []any{q.Tenant, q.Tenant}
	rows, err := conn.Query(ctx, `SELECT detail, hour_counts FROM `+s.db+`.profiles FINAL
		WHERE principal = ? AND (? = '' OR tenant = ?) ORDER BY tenant, profile`, append([]any{q.Value}, tenant...)...)
	if err != nil {
		return nil, fmt.Errorf("forensics: read profiles: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			detail string
			hours  []uint64
			p      event.Profile
		)
		if err := rows.Scan(&detail, &hours); err != nil {
			return nil, fmt.Errorf("forensics: read profiles: %w", err)
		}
		// detail is the profile record less its state, so it decodes as one.
		if err := json.Unmarshal([]byte(detail), &p); err != nil {
			return nil, fmt.Errorf("forensics: profile of %s: %w", q.Value, err)
		}
		n := Normal{Tenant: p.Tenant, Principal: p.Subject, Detector: p.Detector, Version: p.Version, Updated: p.Time.UTC(),
			FirstSeen: p.FirstSeen.UTC(), Observations: p.Observations, Confidence: p.Confidence, PeerGroup: p.PeerGroup,
			Tools: category(p, "tool"), Clients: category(p, "client"), Networks: category(p, "network"),
			Features: p.Features, HourCounts: hours}
		if n.Features == nil {
			n.Features = []event.ProfileFeature{}
		}
		b.Normal = append(b.Normal, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("forensics: read profiles: %w", err)
	}

	var n, lastMS uint64
	w, args := s.where(s.evWhere+" AND source = 'mcp'", s.evArgs)
	if err := conn.QueryRow(ctx, "SELECT count(), max(time_ms) FROM "+s.db+".events FINAL"+w, args...).Scan(&n, &lastMS); err != nil {
		return nil, fmt.Errorf("forensics: last event: %w", err)
	}
	if n > 0 {
		last := time.UnixMilli(int64(lastMS)).UTC()
		now := &Now{Since: last.Add(-time.Hour), Until: last}
		w := ` WHERE time_ms > ? AND time_ms <= ? AND (? = '' OR tenant = ?) AND ` + s.evWhere + ` AND source = 'mcp'`
		args := slices.Concat([]any{uint64(now.Since.UnixMilli()), uint64(now.Until.UnixMilli())}, tenant, s.evArgs)
		for _, d := range []struct {
			col string
			out *[]Count
		}{{"tool", &now.Tools}, {"client_name", &now.Clients}, {"src_ip", &now.SrcIPs}} {
			// topK would be cheaper but approximate; an hour of one principal is small.
			r, err := conn.Query(ctx, `SELECT `+d.col+`, count() AS n FROM `+s.db+`.events FINAL`+w+` AND `+d.col+` != ''
				GROUP BY `+d.col+` ORDER BY n DESC, `+d.col+` LIMIT ?`, append(args, topN)...)
			if err != nil {
				return nil, fmt.Errorf("forensics: read the last hour: %w", err)
			}
			*d.out = []Count{}
			for r.Next() {
				var (
					v string
					n uint64
				)
				if err := r.Scan(&v, &n); err != nil {
					r.Close()
					return nil, fmt.Errorf("forensics: read the last hour: %w", err)
				}
				*d.out = append(*d.out, Count{v, float64(n)})
			}
			err = r.Err()
			r.Close()
			if err != nil {
				return nil, fmt.Errorf("forensics: read the last hour: %w", err)
			}
		}
		if err := conn.QueryRow(ctx, `SELECT count() FROM `+s.db+`.events FINAL`+w, args...).Scan(&now.Calls); err != nil {
			return nil, fmt.Errorf("forensics: read the last hour: %w", err)
		}
		b.Now = now
	}

	// raw is the score record: it holds the evidence exactly as published.
	var raw string
	err = conn.QueryRow(ctx, `SELECT raw FROM `+s.db+`.scores FINAL WHERE subject = ? AND (? = '' OR tenant = ?) AND time < ?
		ORDER BY time_ms DESC LIMIT 1`, q.Value, q.Tenant, q.Tenant, q.Window.Until.UTC()).Scan(&raw)
	switch {
	case err == nil:
		var sc event.Score
		if err := event.Decode([]byte(raw), &sc); err != nil {
			return nil, fmt.Errorf("forensics: latest score of %s: %w", q.Value, err)
		}
		b.Score = &LatestScore{Time: sc.Time.UTC(), Score: sc.Score, Explanation: sc.Explanation,
			Contributions: sc.Contributions, Evidence: sc.Evidence}
		if b.Score.Evidence == nil {
			b.Score.Evidence = []event.Evidence{}
		}
	case !errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("forensics: latest score of %s: %w", q.Value, err)
	}
	return b, nil
}

// category returns the profile's distribution name, largest first.
func category(p event.Profile, name string) []Count {
	out := []Count{}
	for _, c := range p.Categories {
		if c.Name != name {
			continue
		}
		for _, v := range c.Values {
			out = append(out, Count{v.Value, v.Count})
		}
	}
	slices.SortFunc(out, func(a, b Count) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Value, b.Value))
	})
	return out[:min(len(out), topN)]
}

func roundCount(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}
