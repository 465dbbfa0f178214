package mcp

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/approval"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// approvalPolicy holds alice's echo calls for 2 of 3 approvers; fail calls by bob for one
// approver with on_timeout approve, and echo calls by bob with the default deny, both on a short
// timeout.
const approvalPolicy = `version: 1
rules:
  - id: list
    resource: "tool:files/*"
    actions: [list]
  - id: wire-transfer
    resource: "tool:files/echo"
    actions: [call]
    principals: [sub:alice]
    approval:
      approvers: [ann, ben, cat]
      required: 2
      timeout: 1m
  - id: quick-deny
    resource: "tool:files/echo"
    actions: [call]
    principals: [sub:bob]
    approval: {approvers: [ann], required: 1, timeout: 2s}
  - id: quick-approve
    resource: "tool:files/fail"
    actions: [call]
    principals: [sub:bob]
    approval: {approvers: [ann], required: 1, timeout: 2s, on_timeout: approve}
`

// approvalEnv is the approvals topic on the real Kafka, the approvers' keys, and the HTTP API.
type approvalEnv struct {
	brokers []string
	topic   string
	keys    *approval.Keyring
	priv    map[string]ed25519.PrivateKey
	prod    *kgo.Client
	api     *httptest.Server
	actions *actionLog
	// apiStore is the API's own view of the topic.
	apiStore *approval.Store
}

type actionLog struct {
	mu sync.Mutex
	a  []event.Action
}

func (l *actionLog) record(_ context.Context, a event.Action) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.a = append(l.a, a)
}

func (l *actionLog) statuses(id string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, a := range l.a {
		if a.Target == "approval:"+id {
			out = append(out, a.Actor+"="+a.Status)
		}
	}
	return out
}

func newApprovalEnv(t *testing.T) *approvalEnv {
	t.Helper()
	env := &approvalEnv{brokers: testenv.Kafka(t), topic: testenv.Topics(t).Approvals, priv: map[string]ed25519.PrivateKey{},
		actions: &actionLog{}}
	pubs := map[string]ed25519.PublicKey{}
	for _, id := range []string{"ann", "ben", "cat", "mallory"} {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		env.priv[id] = priv
		if id != "mallory" { // mallory signs, but is in no keyring
			pubs[id] = pub
		}
	}
	var err error
	if env.keys, err = approval.NewKeyring(pubs); err != nil {
		t.Fatal(err)
	}
	env.prod, err = kafkaio.NewClient(kafkaio.Config{Brokers: env.brokers, ClientID: "test-approvals"}, kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.prod.Close)
	var specs []kafkaio.TopicSpec
	for _, s := range kafkaio.Topics(event.Topics{Approvals: env.topic}, 1, 1, 24) {
		if s.Name == env.topic {
			specs = append(specs, s)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafkaio.EnsureTopics(ctx, env.prod, specs); err != nil {
		t.Fatal(err)
	}
	env.apiStore = env.follow(t)
	api := approval.NewServer(env.apiStore, env.keys, approval.KafkaProducer(env.prod, env.topic), env.actions.record, slog.New(slog.DiscardHandler))
	env.api = httptest.NewServer(api.Handler())
	t.Cleanup(env.api.Close)
	return env
}

// follow returns a store kept in step with the topic by its own follower, ready.
func (env *approvalEnv) follow(t *testing.T) *approval.Store {
	t.Helper()
	s := approval.NewStore(env.keys)
	f, err := approval.NewFollower(kafkaio.Config{Brokers: env.brokers}, env.topic, s, nil, slog.New(slog.DiscardHandler),
		kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := f.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// gateway starts a gateway replica named name with its own approvals store and gate.
func (env *approvalEnv) gateway(t *testing.T, up *upstream, name string) *fixture {
	t.Helper()
	gate, err := approval.NewGate(approval.GateConfig{Store: env.follow(t), Producer: approval.KafkaProducer(env.prod, env.topic),
		Gateway: name, APIURL: env.api.URL, Actions: env.actions.record, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return newFixture(t, up, func(c *Config) {
		c.Policy = loadPolicy(t, approvalPolicy)
		c.Approvals = gate
		c.Observer = name
	})
}

// vote fetches request id from the API, checks the hash of what it shows, signs a vote with
// signer's key under approver's name, posts it and returns the HTTP status and body.
func (env *approvalEnv) vote(t *testing.T, id, approver, signer string, d approval.Decision) (int, string) {
	t.Helper()
	// The API follows the topic on its own: wait until it has read the request the gateway wrote.
	if err := env.apiStore.Wait(callCtx(t), func(s *approval.Store) bool { _, ok := s.Get(id); return ok }); err != nil {
		t.Fatalf("the API never saw request %s: %v", id, err)
	}
	resp, err := http.Get(env.api.URL + "/approvals/" + id)
	if err != nil {
		t.Fatal(err)
	}
	var view approval.RequestView
	err = json.NewDecoder(resp.Body).Decode(&view)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET approval %s: %d %v", id, resp.StatusCode, err)
	}
	sum := sha256.Sum256(view.Record)
	if hex.EncodeToString(sum[:]) != view.Hash {
		t.Fatalf("the API's hash %s is not the SHA-256 of the record it shows", view.Hash)
	}
	v := &approval.Vote{Schema: approval.SchemaVersion, RequestID: id, RequestHash: view.Hash, Approver: approver,
		Decision: d, Reason: "verified with the requester by phone", Time: time.Now().UTC()}
	approval.Sign(v, env.priv[signer])
	body, _ := json.Marshal(v)
	resp, err = http.Post(env.api.URL+"/approvals/"+id+"/votes", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// seen waits until gateway f's approvals store shows request id in state want: replicas follow
// the topic on their own, a moment behind the API.
func seen(t *testing.T, f *fixture, id string, want approval.State) {
	t.Helper()
	err := f.gw.cfg.Approvals.Store().Wait(callCtx(t), func(s *approval.Store) bool {
		st, ok := s.Get(id)
		return ok && st.State == want
	})
	if err != nil {
		st, _ := f.gw.cfg.Approvals.Store().Get(id)
		t.Fatalf("request %s never became %s at %s: %s (%s)", id, want, f.gw.cfg.Observer, st.State, st.Reason)
	}
}

// pendingID asserts err is the approval-pending answer and returns its request id.
func pendingID(t *testing.T, err error) string {
	t.Helper()
	var we *jsonrpc.Error
	if !errors.As(err, &we) || we.Code != CodeApprovalPending {
		t.Fatalf("want the approval-pending error %d, got %v", CodeApprovalPending, err)
	}
	var d approvalData
	if err := json.Unmarshal(we.Data, &d); err != nil || d.RequestID == "" || d.State != "pending" || d.Required == 0 {
		t.Fatalf("pending error data %s: %v", we.Data, err)
	}
	if !strings.Contains(we.Message, d.RequestID) || !strings.Contains(d.StatusURL, "/approvals/"+d.RequestID) {
		t.Fatalf("pending message %q / status URL %q do not name the request %s", we.Message, d.StatusURL, d.RequestID)
	}
	return d.RequestID
}

func echoHits(f *fixture) int {
	n := 0
	for _, e := range f.events.all() {
		if e.MCP.Direction == event.DirResponse && e.MCP.Method == "tools/call" && e.MCP.Tool == "echo" && e.Outcome.Result == event.ResultAllowed {
			n++
		}
	}
	return n
}

// The human in the loop end to end, with the official SDK client, real Kafka, the HTTP API and a
// 2-of-3 rule: the first call is held (never forwarded) with a pending answer naming the request;
// one approval leaves it pending; a forged vote, a stranger's vote and a vote written straight to
// the topic with a bad signature change nothing; the second approval lets the identical retry
// through once; the next identical call is held again under a new request, and so is a call with
// other arguments. Every step is an approval action. If this failed, a held call would reach the
// server without M valid signatures, or one approval would serve many calls.
func TestApprovalTwoOfThree(t *testing.T) {
	env := newApprovalEnv(t)
	f := env.gateway(t, newUpstream(t, false), "gw-a")
	alice := f.connect(t, clientOpts{token: aliceToken})

	_, err := echo(t, alice, "pay 100 to bob")
	id := pendingID(t, err)
	if echoHits(f) != 0 {
		t.Fatal("a held call reached the upstream")
	}
	if code, body := env.vote(t, id, "ann", "ann", approval.Approve); code != http.StatusCreated {
		t.Fatalf("ann's vote: %d %s", code, body)
	}
	_, err = echo(t, alice, "pay 100 to bob")
	if again := pendingID(t, err); again != id {
		t.Fatalf("retry after one vote made request %s, want the pending %s", again, id)
	}
	// Ben's name, mallory's key: refused by the API as unauthenticated.
	if code, body := env.vote(t, id, "ben", "mallory", approval.Approve); code != http.StatusUnauthorized {
		t.Fatalf("forged vote: %d %s, want 401", code, body)
	}
	// Mallory under her own name: not an approver.
	if code, body := env.vote(t, id, "mallory", "mallory", approval.Approve); code != http.StatusForbidden {
		t.Fatalf("stranger's vote: %d %s, want 403", code, body)
	}
	// A forged vote written past the API, straight to the topic: every reader ignores it.
	forged := &approval.Vote{Schema: 1, RequestID: id, RequestHash: strings.Repeat("0", 64), Approver: "cat", Decision: approval.Approve,
		Reason: "forged", Time: time.Now().UTC()}
	approval.Sign(forged, env.priv["mallory"])
	key, value, err := approval.EncodeVote(forged)
	if err != nil {
		t.Fatal(err)
	}
	if err := approval.KafkaProducer(env.prod, env.topic).Produce(callCtx(t), key, value); err != nil {
		t.Fatal(err)
	}
	_, err = echo(t, alice, "pay 100 to bob")
	if again := pendingID(t, err); again != id {
		t.Fatalf("after forged votes: request %s, want the pending %s", again, id)
	}

	if code, body := env.vote(t, id, "ben", "ben", approval.Approve); code != http.StatusCreated || !strings.Contains(body, `"state":"approved"`) {
		t.Fatalf("ben's vote: %d %s", code, body)
	}
	seen(t, f, id, approval.Approved)
	res, err := echo(t, alice, "pay 100 to bob")
	if err != nil || res.IsError {
		t.Fatalf("approved retry: %v %+v", err, res)
	}
	f.events.waitFor(t, "the approved call's response", func([]*event.Event) bool { return echoHits(f) == 1 })
	// Once: the next identical call asks anew.
	_, err = echo(t, alice, "pay 100 to bob")
	if again := pendingID(t, err); again == id {
		t.Fatal("the used approval let a second call wait on it")
	}
	_, err = echo(t, alice, "pay 100000 to mallory")
	if other := pendingID(t, err); other == id {
		t.Fatal("other arguments reused the approved request")
	}
	if echoHits(f) != 1 {
		t.Fatalf("%d echo calls reached the upstream, want 1", echoHits(f))
	}
	got := strings.Join(env.actions.statuses(id), " ")
	for _, want := range []string{"gateway:gw-a=pending", "operator:ann=pending", "operator:ben=approved", "gateway:gw-a=consumed"} {
		if !strings.Contains(got, want) {
			t.Errorf("actions of %s: %s; missing %s", id, got, want)
		}
	}
	// The audit event of the forwarded call names its approval.
	var approvedEv *event.Event
	for _, e := range f.events.all() {
		if e.MCP.Direction == event.DirRequest && e.Attributes[attrApprovalRequest] == id && e.Attributes[attrApprovalState] == "consumed" {
			approvedEv = e
		}
	}
	if approvedEv == nil || approvedEv.Outcome.Result == event.ResultDenied {
		t.Fatalf("no allowed request event names approval %s:\n%s", id, dump(f.events.all()))
	}
}

// Two gateway replicas race the same approved call: exactly one forwards it, the other refuses
// it as already used. If this failed, an approval given once could be spent at every replica.
func TestApprovalSingleUseAcrossGateways(t *testing.T) {
	env := newApprovalEnv(t)
	up := newUpstream(t, false)
	gws := []*fixture{env.gateway(t, up, "gw-a"), env.gateway(t, up, "gw-b")}
	sessions := []*sdk.ClientSession{gws[0].connect(t, clientOpts{token: aliceToken}), gws[1].connect(t, clientOpts{token: aliceToken})}
	_, err := echo(t, sessions[0], "pay 7 to carol")
	id := pendingID(t, err)
	for _, a := range []string{"cat", "ann"} {
		if code, body := env.vote(t, id, a, a, approval.Approve); code != http.StatusCreated {
			t.Fatalf("%s's vote: %d %s", a, code, body)
		}
	}
	// Both replicas must see the approval before the race, or one would just say "pending".
	for _, g := range gws {
		seen(t, g, id, approval.Approved)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := echo(t, sessions[i], "pay 7 to carol")
			if err == nil && res.IsError {
				err = errors.New("tool error")
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		if err == nil {
			won++
			continue
		}
		var we *jsonrpc.Error
		if !errors.As(err, &we) || we.Code != CodeDenied || !strings.Contains(we.Message, "already used") {
			t.Errorf("gateway %d: %v, want success or 'already used'", i, err)
		}
	}
	if won != 1 || echoHits(gws[0])+echoHits(gws[1]) != 1 {
		t.Fatalf("%d replicas forwarded (%d upstream calls), want exactly 1", won, echoHits(gws[0])+echoHits(gws[1]))
	}
}

// Denial and timeouts: a deny is a veto and is answered with its reason; a rule's default on
// timeout denies, while on_timeout approve lets the call through after the deadline, once. If
// this failed, silence would approve calls by default, or a veto would be ignored.
func TestApprovalDenyAndTimeout(t *testing.T) {
	env := newApprovalEnv(t)
	f := env.gateway(t, newUpstream(t, false), "gw-a")
	alice := f.connect(t, clientOpts{token: aliceToken})
	_, err := echo(t, alice, "pay 5 to dave")
	id := pendingID(t, err)
	if code, body := env.vote(t, id, "ann", "ann", approval.Approve); code != http.StatusCreated {
		t.Fatalf("ann: %d %s", code, body)
	}
	if code, body := env.vote(t, id, "cat", "cat", approval.Deny); code != http.StatusCreated || !strings.Contains(body, `"state":"denied"`) {
		t.Fatalf("cat's deny: %d %s", code, body)
	}
	seen(t, f, id, approval.Denied)
	_, err = echo(t, alice, "pay 5 to dave")
	var we *jsonrpc.Error
	if !errors.As(err, &we) || we.Code != CodeDenied || !strings.Contains(we.Message, "denied by cat: verified with the requester by phone") {
		t.Fatalf("call after a deny: %v", err)
	}
	// A vote after the decision is refused by the API.
	if code, _ := env.vote(t, id, "ben", "ben", approval.Approve); code != http.StatusConflict {
		t.Fatalf("vote on a denied request: %d, want 409", code)
	}

	bob := f.connect(t, clientOpts{token: bobToken})
	_, err = echo(t, bob, "x")
	denyID := pendingID(t, err)
	_, err = bob.CallTool(callCtx(t), &sdk.CallToolParams{Name: "fail", Arguments: map[string]any{}})
	approveID := pendingID(t, err)
	time.Sleep(2500 * time.Millisecond)
	_, err = echo(t, bob, "x")
	if !errors.As(err, &we) || we.Code != CodeDenied || !strings.Contains(we.Message, "on_timeout: deny") {
		t.Fatalf("call after its deadline (on_timeout deny): %v (request %s)", err, denyID)
	}
	// on_timeout approve: the upstream's own tool error proves the call went through.
	res, err := bob.CallTool(callCtx(t), &sdk.CallToolParams{Name: "fail", Arguments: map[string]any{}})
	if err != nil || !res.IsError {
		t.Fatalf("call after its deadline (on_timeout approve): %v %+v (request %s)", err, res, approveID)
	}
}

// A client that declared URL-mode elicitation (2025-11-25) gets URLElicitationRequiredError
// pointing at the approval's status page instead of the plain pending error. If this failed,
// clients that can open the page for their user would only see an opaque error.
func TestApprovalURLElicitation(t *testing.T) {
	env := newApprovalEnv(t)
	f := env.gateway(t, newUpstream(t, false), "gw-a")
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c := sdk.NewClient(&sdk.Implementation{Name: "url-client", Version: "1"}, &sdk.ClientOptions{
		Capabilities: &sdk.ClientCapabilities{Elicitation: &sdk.ElicitationCapabilities{URL: &sdk.URLElicitationCapabilities{}}}})
	cs, err := c.Connect(callCtx(t), &sdk.StreamableClientTransport{Endpoint: f.srv.URL + "/mcp",
		HTTPClient: &http.Client{Transport: bearerTransport{token: aliceToken, base: tr}}, MaxRetries: -1},
		&sdk.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	_, err = echo(t, cs, "pay 1 to erin")
	var we *jsonrpc.Error
	if !errors.As(err, &we) || we.Code != CodeURLElicitationRequired {
		t.Fatalf("want URLElicitationRequiredError, got %v", err)
	}
	var data struct {
		Elicitations []sdk.ElicitParams `json:"elicitations"`
	}
	if err := json.Unmarshal(we.Data, &data); err != nil || len(data.Elicitations) != 1 {
		t.Fatalf("data %s: %v", we.Data, err)
	}
	e := data.Elicitations[0]
	if e.Mode != "url" || e.ElicitationID == "" || e.URL != env.api.URL+"/approvals/"+e.ElicitationID {
		t.Fatalf("elicitation %+v", e)
	}
}
