package detectors

import "github.com/mcpwatch/mcpwatch/detectors/detect"

// Detector turns events into signals and findings; see [detect.Detector]. The contract lives in
// package detect so that detectors and the scorer, which this package imports, can use it too.
type Detector = detect.Detector

// Signal is a detector's current value for one principal on one score component; see
// [detect.Signal].
type Signal = detect.Signal

// FindingID is the deterministic id of the finding a detector concluded on the event with id
// eventID; see [detect.FindingID].
func FindingID(detector, eventID string) string { return detect.FindingID(detector, eventID) }
