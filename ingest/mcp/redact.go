package mcp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcpwire"
	"github.com/mcpwatch/mcpwatch/internal/mask"
)

// In-flight redaction: with [Config.Redact] the gateway rewrites the tools/call results of the
// tools a rule names before the client sees them. The result is masked as JSON by internal/mask
// with only the rule's kinds enabled: every string (text content, structuredContent, embedded
// resource text, _meta) is scanned and what it finds is replaced ("[EMAIL]"); keys, structure
// and unmasked numbers stay as they were; a number that is a finding (a card number sent as a
// number) becomes a string. Base64 payloads (image and audio data, resource blobs) are not text
// and are kept. The JSON-RPC envelope is kept byte for byte around the rewritten result.

// RedactRule says what to redact from the results of some tools.
type RedactRule struct {
	// Server limits the rule to one upstream by name; "" or "*" is any.
	Server string `yaml:"server,omitempty"`
	// Tool is a tool name, or "*" for every tool.
	Tool string `yaml:"tool"`
	// Redact lists data classes ([mcpwire.ClassPII], [mcpwire.ClassSecret]) and masking kinds ("email",
	// "card", "ipv4", ... see [mask.AllKinds]) to redact.
	Redact []string `yaml:"redact"`
}

// OversizeAction is [Config.RedactOversize].
type OversizeAction string

// Oversize actions.
const (
	OversizeBlock OversizeAction = "block" // withhold the result, answer a JSON-RPC error
	OversizePass  OversizeAction = "pass"  // relay it unredacted, audited
)

// CodeResultWithheld answers a call whose result had to be redacted but could not be (too large
// to scan): the gateway withholds it rather than relay what it could not clean.
const CodeResultWithheld = -32085

// Attribute keys of redaction and tool filtering.
const (
	attrRedacted       = "mcp.result.redacted"     // values redacted from a result ("0": scanned, none found)
	attrRedactSkipped  = "mcp.result.not_redacted" // why a result that should have been redacted was not
	attrToolsHidden    = "mcp.tools.hidden"        // tools removed from a tools/list result
	attrToolsHiddenWho = "mcp.tools.hidden_names"  // their names, comma-separated, clipped
)

// piiKinds and secretKinds' detectors are what the classes stand for.
var classKinds = map[string][]string{
	mcpwire.ClassPII: {mask.KindPhoneKR, mask.KindRRNKR, mask.KindEmail, mask.KindPhoneE164, mask.KindCard, mask.KindIBAN},
	mcpwire.ClassSecret: {mask.KindAPIKey, mask.KindBearer, mask.KindPrivateKey, mask.KindAWSAccessKey, mask.KindAWSSecret,
		mask.KindJWT},
}

// expand turns classes and kinds into detector kinds, and whether credential-named fields are
// redacted too (the "secret" class).
func expand(names []string) (kinds []string, fields bool, err error) {
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		if ks, ok := classKinds[n]; ok {
			kinds = append(kinds, ks...)
			fields = fields || n == mcpwire.ClassSecret
			continue
		}
		if !slices.Contains(mask.AllKinds(), n) {
			return nil, false, fmt.Errorf("unknown data class or kind %q (classes: %s, %s; kinds: %s)",
				n, mcpwire.ClassPII, mcpwire.ClassSecret, strings.Join(mask.AllKinds(), ", "))
		}
		kinds = append(kinds, n)
	}
	slices.Sort(kinds)
	return slices.Compact(kinds), fields, nil
}

func validateRedact(rules []RedactRule, over OversizeAction) error {
	var errs []error
	for i, r := range rules {
		if r.Tool == "" {
			errs = append(errs, fmt.Errorf("redact rule %d: tool is required (a name or *)", i))
		}
		if len(r.Redact) == 0 {
			errs = append(errs, fmt.Errorf("redact rule %d: redact lists nothing", i))
		}
		if _, _, err := expand(r.Redact); err != nil {
			errs = append(errs, fmt.Errorf("redact rule %d: %w", i, err))
		}
	}
	switch over {
	case "", OversizeBlock, OversizePass:
	default:
		errs = append(errs, fmt.Errorf("redact oversize %q: want %s or %s", over, OversizeBlock, OversizePass))
	}
	return errors.Join(errs...)
}

// ParseRedactRule parses the command line's form of a rule, "TOOL=CLASS[,CLASS...]" (TOOL may
// be * or SERVER/TOOL), e.g. "*=pii" or "db_query=pii,secret".
func ParseRedactRule(s string) (RedactRule, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" || v == "" {
		return RedactRule{}, fmt.Errorf("redact %q: want TOOL=CLASS[,CLASS], e.g. *=pii or db_query=pii,secret", s)
	}
	r := RedactRule{Tool: k, Redact: strings.Split(v, ",")}
	if srv, tool, ok := strings.Cut(k, "/"); ok {
		r.Server, r.Tool = srv, tool
	}
	if _, _, err := expand(r.Redact); err != nil {
		return RedactRule{}, fmt.Errorf("redact %q: %w", s, err)
	}
	return r, nil
}

// redactor builds and caches the maskers of the redaction rules. Maskers are immutable; one per
// distinct set of kinds is kept.
type redactor struct {
	rules []RedactRule
	base  mask.Config // replacement and size from the gateway's masking configuration
	mu    sync.Mutex
	cache map[string]*mask.Masker
}

func newRedactor(cfg Config) *redactor {
	if len(cfg.Redact) == 0 {
		return nil
	}
	r := &redactor{rules: cfg.Redact, cache: map[string]*mask.Masker{}}
	if cfg.Mask != nil {
		r.base.Replacement = cfg.Mask.Replacement
	}
	// A result is scanned whole: the masker must not cut what the gateway will relay.
	r.base.MaxInput = int(cfg.MaxBodyBytes)
	r.base.FieldRules = map[string]mask.Action{
		"/content/*/data":          mask.ActionKeep, // image and audio: base64, not text
		"/content/*/resource/blob": mask.ActionKeep,
	}
	return r
}

// forTool returns the masker for a tool's results, nil when no rule names the tool.
func (r *redactor) forTool(server, tool string) *mask.Masker {
	if r == nil {
		return nil
	}
	var names []string
	for _, rule := range r.rules {
		if (rule.Server == "" || rule.Server == "*" || rule.Server == server) && (rule.Tool == "*" || rule.Tool == tool) {
			names = append(names, rule.Redact...)
		}
	}
	if len(names) == 0 {
		return nil
	}
	kinds, fields, err := expand(names)
	if err != nil { // validated in Config.Validate
		return nil
	}
	key := strings.Join(kinds, ",") + "|" + strconv.FormatBool(fields)
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, ok := r.cache[key]; ok {
		return m
	}
	mc := r.base
	mc.Kinds, mc.NoSecretFieldNames = kinds, !fields
	m, err := mask.New(mc)
	if err != nil { // the replacement was validated with the gateway's masker
		return nil
	}
	r.cache[key] = m
	return m
}

// redactResult masks a tools/call result with mk and records the counts on e: [event.Event.PII]
// per kind, the classes they imply, and the total in the "mcp.result.redacted" attribute. It
// returns the new result, or nil when nothing was replaced.
func redactResult(mk *mask.Masker, e *event.Event, result []byte) []byte {
	out, counts, err := mk.JSON(result)
	total := 0
	for _, n := range counts {
		total += n
	}
	mcpwire.SetAttr(e, attrRedacted, strconv.Itoa(total))
	if err != nil || total == 0 {
		return nil
	}
	mcpwire.AddFindings(e, counts)
	return out
}

// ruleRedactOversize is the rule of a result withheld because it was too large to redact.
const ruleRedactOversize = "redact:oversize"

// strict reports whether a response too large to scan must be withheld rather than relayed.
func (x *exchange) strict() bool {
	return x.redacting && x.g.cfg.RedactOversize != OversizePass
}

// holdJSON reads a JSON response whole so that it can be rewritten before the client sees any of
// it (redaction, tool filtering), audits it, and relays the result with its new length. A body
// larger than the limit is withheld when it may hold a result to redact ([exchange.strict]), else
// relayed unread as the gateway relays any oversized body.
func (x *exchange) holdJSON(resp *http.Response, limit int) error {
	buf, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		_ = resp.Body.Close()
		return fmt.Errorf("reading the upstream's response: %w", err) // answered by proxyError
	}
	if len(buf) > limit {
		if x.strict() {
			_ = resp.Body.Close()
			ans := x.withhold(len(buf), false)
			setBody(resp, &heldBody{Reader: bytes.NewReader(ans), x: x}, len(ans))
			return nil
		}
		body := resp.Body
		resp.Body = &jsonTap{body: readCloser{io.MultiReader(bytes.NewReader(buf), body), body}, x: x, limit: limit, over: true}
		return nil
	}
	out := buf
	if len(bytes.TrimSpace(buf)) > 0 {
		if rw := x.onMessage(buf); rw != nil {
			out = rw
		}
	}
	setBody(resp, &heldBody{Reader: bytes.NewReader(out), x: x, orig: resp.Body}, len(out))
	return nil
}

// setBody replaces a response's body with one of n bytes.
func setBody(resp *http.Response, body io.ReadCloser, n int) {
	resp.Body = body
	resp.ContentLength = int64(n)
	resp.Header.Set("Content-Length", strconv.Itoa(n))
	resp.TransferEncoding = nil
}

// heldBody relays a response the gateway read whole.
type heldBody struct {
	*bytes.Reader
	x    *exchange
	orig io.ReadCloser // nil: already closed
}

func (b *heldBody) Close() error {
	var err error
	if b.orig != nil {
		err = b.orig.Close()
	}
	b.x.finish(true)
	return err
}

type readCloser struct {
	io.Reader
	io.Closer
}

// withhold refuses a response the gateway had to redact but could not scan (larger than
// MaxBodyBytes): every request of the exchange still waiting is answered with a JSON-RPC error
// ([CodeResultWithheld]) and audited as denied under rule "redact:oversize". It returns the
// answers: SSE events when sse, else a JSON body. On a stream with no request of its own
// waiting, the withheld message is audited and nothing is answered.
func (x *exchange) withhold(size int, sse bool) []byte {
	g := x.g
	g.m.denied.WithLabelValues(denyRedact).Inc()
	text := fmt.Sprintf("result withheld by mcpwatch: larger than %d bytes, too large to redact", g.cfg.MaxBodyBytes)
	o := event.Outcome{Result: event.ResultDenied, PolicyRule: ruleRedactOversize, Reason: text,
		ErrorCode: CodeResultWithheld, HTTPStatus: x.status}
	var ids []string
	for id := range x.reqs {
		pr, _ := x.take(id)
		ids = append(ids, id)
		e := x.pendingEvent(id, pr, o)
		e.Size.Response = size
		g.publish(x.c.r.Context(), e)
	}
	if len(ids) == 0 {
		e := x.uninspected(size)
		e.Outcome = o
		g.publish(x.c.r.Context(), e)
	}
	slices.Sort(ids)
	if !sse {
		return mcpwire.ErrorResponse(ids, x.batch, CodeResultWithheld, text)
	}
	var out []byte
	for _, id := range ids {
		out = append(out, "event: message\ndata: "...)
		out = append(out, mcpwire.ErrorBody(id, CodeResultWithheld, text)...)
		out = append(out, "\n\n"...)
	}
	return out
}
