package detect

import (
	"testing"
	"time"
)

// Finding ids are part of the wire contract: responders, the control topic and ClickHouse
// deduplicate on them, so a changed derivation would turn every replayed finding into a new one.
// The value is the one the rate detector produced before detectors were split into packages.
func TestFindingIDStable(t *testing.T) {
	if got := FindingID("rate", "ev-000001"); got != "1b17e295-f684-5f09-aa42-6fe36b8e5bf6" {
		t.Fatalf("FindingID changed: %s", got)
	}
	if FindingID("sigma", "ev-000001") == FindingID("rate", "ev-000001") {
		t.Fatal("two detectors concluding on one event share a finding id")
	}
}

// Times no gateway produces must not move the stage's watermark or enter window arithmetic.
func TestValidTime(t *testing.T) {
	for _, c := range []struct {
		t    time.Time
		want bool
	}{
		{time.Time{}, false},
		{time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC), false},
		{time.Unix(0, 0), true},
		{time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC), true},
		{time.Date(2500, 1, 1, 0, 0, 0, 0, time.UTC), false},
	} {
		if got := ValidTime(c.t); got != c.want {
			t.Errorf("ValidTime(%v) = %v, want %v", c.t, got, c.want)
		}
	}
}

func TestComponents(t *testing.T) {
	for _, c := range Components() {
		if !c.Valid() {
			t.Errorf("%s not valid", c)
		}
	}
	if Component("rate").Valid() || Component("").Valid() {
		t.Error("unknown component valid")
	}
}

// Evidence worded on demand must read as if its Detail had been written: the scorer and the
// findings publish Text, so a detector leaving Detail to Words would otherwise publish nothing.
func TestEvidenceText(t *testing.T) {
	say := func(ev Evidence) string { return ev.Feature + " " + ev.Words.A }
	if got := (Evidence{Feature: "f", Words: Words{Say: say, A: "a"}}).Text(); got != "f a" {
		t.Errorf("worded %q, want %q", got, "f a")
	}
	if got := (Evidence{Detail: "written", Words: Words{Say: say}}).Text(); got != "written" {
		t.Errorf("a written Detail gave way to Words: %q", got)
	}
	if got := (Evidence{}).Text(); got != "" {
		t.Errorf("no words: %q", got)
	}
}
