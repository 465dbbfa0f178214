// Package detectors is the detect stage: it turns normalized events into findings and one threat
// score per principal.
//
//	events ─► detectors ─► findings                     (findings topic)
//	                    └► signals ─► scorer ─► scores   (compacted scores topic)
//
// A [Detector] (package detect defines the contract; package rate is the call-rate detector)
// judges each event and emits findings — conclusions for the responder — and signals: its
// current value, 0–100, for one principal on one component of the threat score (frequency,
// sensitivity, risk), with the evidence behind it. The scorer (package score) is the only writer
// of the scores topic: it combines every detector's latest signals into the source document's
// weighted score and decides when a principal's score is republished. [NewHandler] wires
// detectors and the scorer into the stage's [kafkaio.Handler]; [Build] does it from a [Config].
//
// Detectors run on event time, never the wall clock: replaying a topic yields the same findings
// with the same ids and the same score records, so downstream deduplication (the control topic's
// keys, webhook ids, ClickHouse replacing tables) absorbs redelivery.
package detectors
