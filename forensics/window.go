package forensics

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Window is the time range of an investigation, [Since, Until).
type Window struct {
	Since, Until time.Time
}

// ParseWindow builds a window from command-line style input: either last (a duration back from
// now, e.g. 24h) or since and/or until (RFC 3339, "2006-01-02 15:04:05" or "2006-01-02", UTC
// unless a zone is given). Until defaults to now, Since to Until minus 24 hours.
func ParseWindow(last time.Duration, since, until string, now time.Time) (Window, error) {
	now = now.UTC()
	if last != 0 && (since != "" || until != "") {
		return Window{}, errors.New("window: give --last or --since/--until, not both")
	}
	if last < 0 {
		return Window{}, fmt.Errorf("window: --last %s is negative", last)
	}
	w := Window{Until: now.Add(time.Second).Truncate(time.Second)}
	if last != 0 {
		w.Since = w.Until.Add(-last)
		return w, nil
	}
	var err error
	if until != "" {
		if w.Until, err = parseTime(until); err != nil {
			return Window{}, fmt.Errorf("window: --until: %w", err)
		}
	}
	if since != "" {
		if w.Since, err = parseTime(since); err != nil {
			return Window{}, fmt.Errorf("window: --since: %w", err)
		}
	} else {
		w.Since = w.Until.Add(-24 * time.Hour)
	}
	if !w.Since.Before(w.Until) {
		return Window{}, fmt.Errorf("window: since %s is not before until %s", w.Since.Format(time.DateTime), w.Until.Format(time.DateTime))
	}
	return w, nil
}

func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{time.RFC3339Nano, time.DateTime, "2006-01-02T15:04:05", time.DateOnly} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want RFC 3339, \"2006-01-02 15:04:05\" or \"2006-01-02\" (UTC)", s)
}
