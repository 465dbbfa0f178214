// Package ueba is the behaviour-analytics detector ("ueba"): a profile per principal (tenant +
// [event.PrincipalID]) and per peer group, learned on event time after the checks judged each
// event, and eleven checks that compare "now" with "normal". It implements [detect.Stateful].
//
// # Profiles
//
// Per principal (about 9 KiB measured, ≤ 16 KiB; at most MaxPrincipals, LRU): per-second
// buckets of calls, sensitivity and response bytes for the last minute; a ring of the last 256
// active minutes with median/MAD/p95 baselines (gonum); call-rate EWMAs (10 s, 1 min, 1 h
// half-lives); a 168-bin time-of-week histogram; top-K decayed categories with first-seen times
// (tool, server, resource prefix, prompt, data class, client name/version, user agent, /24 or
// /64 network, protocol version); decayed request/response byte moments; decayed denial ratio,
// the current denial run and recent denied tools; an add-½ smoothed tool transition matrix; a
// ring of active hours (sensitive reads, distinct resources); the times of the last ten
// sensitive reads and the principal's usual spread of the gaps between them.
//
// Peer group: Principal.PeerGroup, else Department, else first role, else "client:"+ClientID.
// A group counts its members, the members whose confidence reached the gate ("mature"), how
// many members used each categorical value, its week histogram, and a sample of 256 members'
// levels (their busy level — p95 — of calls and sensitivity per minute and of sensitive reads
// and distinct resources per hour; median response bytes) for peer baselines and percentiles.
//
// Confidence is min(calls/FullConfidenceCalls, span/FullConfidenceSpan, 1) (50 calls, 1 h).
// Below ConfidenceGate (0.8) a check uses the peers' baseline (BaselineSource "peers") when the
// group has MinPeers (5) mature members; otherwise a rule baseline, and novelty checks are
// scaled down and never conclude a finding: a new principal is not anomalous for being new.
//
// # Checks
//
// Values are 0–100, mapped smoothly from exceedances, probabilities or rarities
// (grade(x) = 100·(1−e^(−(x−x0)/span)) above x0). Counts and masses are judged by their upper
// tail: the exceedance is (x − busy level) / spread, where the busy level is the p95 of the
// principal's own active minutes (or hours) and the spread the distance from their median to
// it (Poisson floor), or, below the confidence gate, a typical peer's busy level and the
// spread of the peers'. Activity comes in bursts and pauses, so a median and MAD would make
// every busy minute look anomalous. A value ≥ FindingLevel (60) concludes a
// finding, then the check stays quiet for the principal for Cooldown (10 min). Emitted values
// decay from their peak with SignalHalfLife (2 min); Expire brings them to 0 when the evidence
// ran out, and retires idle principals (IdleAfter, 14 days) with Expired signals.
//
//   - rate (frequency): calls in the last 10 s and 60 s against the busy minute (ten seconds
//     holding more than a busy minute is caught before the minute fills); x0 1, span 2; with
//     no baseline, RuleCallsPerMinute (30).
//   - volume (frequency): response bytes in the last minute, log scale, against own per-minute
//     median/MAD (or peers'); not judged without a baseline.
//   - new_value (risk): first use of a tool, server, resource prefix, prompt or data class (or,
//     with lower weight, client, user agent, network, protocol version): weight × novelty
//     (Good–Turing 1−P(new) of the principal) × peer rarity (used by < PeerRareFraction, 10 %,
//     of mature peers). A new client, user agent and network at once combine by noisy-or:
//     someone else's machine, not a new laptop.
//   - sensitivity (sensitivity): Σ Normalized.Sensitivity over the last minute against the
//     busy minute (rule: RuleCallsPerMinute/3); or a pii/secret/finance class never touched
//     before.
//   - denials (risk): a run of ≥ MinDenials (3) consecutive denials, or as many distinct tools
//     denied in DenialWindow (5 min), scored by −log10 of its probability under the principal's
//     smoothed denial ratio.
//   - off_hours (risk): activity in a week hour (same hour on other days counting too under a
//     week of history) the principal and its peers almost never use.
//   - concurrent (risk): two or more clients, user agents or networks within ConcurrentWindow
//     (2 min), scored by how little of the principal's history the current one has.
//   - exfiltration (sensitivity): an egress call (class "egress" or EgressTools globs) within
//     ExfilWindow (10 min) of a sensitive read: sensitivity × (1 − P(read→egress))³ in the
//     principal's transition model, so a habitual read-then-send is not exfiltration.
//   - drift (risk): low-and-slow. The running hour's sensitive reads and distinct resources
//     against the busy hour; and the cadence of the last ten sensitive reads: a steady pace
//     (coefficient of variation of the gaps ≤ 0.5, mean gap 10 s–10 min) well below the
//     principal's usual spread is a script paging slowly, which no per-minute check sees; six
//     steady reads raise a provisional value (60 %, never a finding on its own).
//   - egress_pii (sensitivity): PII counts or pii/secret classes in an egress call's
//     arguments, even when denied, against how often the principal does that, and their
//     number against its usual number.
//   - rug_pull (risk): a tools/list event whose tool definition changed from its pin
//     (attribute mcp.tool.changed; mcp.tool.unapproved scores lower), on that principal.
//
// Findings carry ID detect.FindingID("ueba/"+check, event id), the check's evidence, features
// and MITRE ATT&CK / ATLAS tags. Other detectors (a Sigma rule engine) sit beside this one
// behind the same [detect.Detector] contract.
//
// # Persistence
//
// Checkpoint emits [event.Profile] records (principals and "peer:"+group) at most every
// CheckpointEvery (5 min) per changed subject, with summaries for investigators and State, a
// versioned binary encoding of everything the detector holds, so a restored detector judges
// the next events exactly as an uninterrupted one (TestCheckpointRoundTrip).
package ueba
