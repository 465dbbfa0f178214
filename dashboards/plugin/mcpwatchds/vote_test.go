package mcpwatchds

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/approval"
	"github.com/mcpwatch/mcpwatch/internal/chtest"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// callResource calls the plugin's resource path as user (login, role) and returns the status
// and body.
func (g *grafana) callResource(t *testing.T, pc backend.PluginContext, login, role, method, path string, body []byte) (int, string) {
	t.Helper()
	pc.User = &backend.User{Login: login, Role: role}
	return g.resource(t, pc, method, path, body)
}

// resource calls the plugin's resource path with pc as it is (its user, or none) and returns
// the status and body; an error ending the stream (the instance could not be made from the
// settings) is appended to the body.
func (g *grafana) resource(t *testing.T, pc backend.PluginContext, method, path string, body []byte) (int, string) {
	t.Helper()
	rreq := &backend.CallResourceRequest{PluginContext: pc, Path: path, Method: method, URL: path, Body: body,
		Headers: map[string][]string{"Content-Type": {"application/json"}}}
	stream, err := g.res.CallResource(context.Background(), backend.ToProto().CallResourceRequest(rreq))
	if err != nil {
		t.Fatalf("CallResource: %v", err)
	}
	var status int
	var out []byte
	for {
		m, err := stream.Recv()
		if err != nil {
			if err != io.EOF {
				out = append(out, err.Error()...)
			}
			break
		}
		if m.Code != 0 {
			status = int(m.Code)
		}
		out = append(out, m.Body...)
	}
	return status, string(out)
}

// approvalsAPI is a real approvals API: internal/approval's Server over a store that follows a
// real Kafka approvals topic, writing votes to it; the actions it records are kept.
type approvalsAPI struct {
	url   string
	store *approval.Store
	prod  approval.Producer
	mu    sync.Mutex
	acts  []event.Action
}

func newApprovalsAPI(t *testing.T, keys *approval.Keyring) *approvalsAPI {
	t.Helper()
	brokers, topic := testenv.Kafka(t), testenv.Topics(t).Approvals
	cl, err := kafkaio.NewClient(kafkaio.Config{Brokers: brokers, ClientID: "test-grafana-votes"}, kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	var specs []kafkaio.TopicSpec
	for _, s := range kafkaio.Topics(event.Topics{Approvals: topic}, 1, 1, 24) {
		if s.Name == topic {
			specs = append(specs, s)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafkaio.EnsureTopics(ctx, cl, specs); err != nil {
		t.Fatal(err)
	}
	store := approval.NewStore(keys)
	f, err := approval.NewFollower(kafkaio.Config{Brokers: brokers}, topic, store, nil, slog.New(slog.DiscardHandler), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	fctx, fcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(fctx) }()
	t.Cleanup(func() { fcancel(); <-done })
	if err := f.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	a := &approvalsAPI{store: store, prod: approval.KafkaProducer(cl, topic)}
	srv := httptest.NewServer(approval.NewServer(store, keys, a.prod, func(_ context.Context, act event.Action) {
		a.mu.Lock()
		a.acts = append(a.acts, act)
		a.mu.Unlock()
	}, slog.New(slog.DiscardHandler)).Handler())
	t.Cleanup(srv.Close)
	a.url = srv.URL
	return a
}

func (a *approvalsAPI) actors() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, x := range a.acts {
		out = append(out, x.Actor+"="+x.Status)
	}
	return out
}

// Votes through Grafana, over gRPC on the plugin binary, reach a real approvals API whose store
// follows a real Kafka approvals topic, on a 2-of-2 request (approvers ann and ben). The
// datasource maps Grafana login alice to approver ann; ben votes under his own login. GET
// approvals/{id} gives the record and its hash; a Viewer's vote is refused 403; alice posting
// ben's (validly signed) vote is refused 403; Grafana user "ann" may not vote as ann (that id is
// alice's); a vote whose request id is not the path's is refused 400; a vote with a bad signature
// comes back 401 with the API's reason; ann's and ben's good votes are counted (201) and the
// request ends approved, each vote recorded as an action by operator:<approver>. If this failed,
// Grafana users could vote without the role, as another approver, or with a forged signature, or
// genuine votes from Grafana would not count.
func TestVotesOverGRPC(t *testing.T) {
	priv := map[string]ed25519.PrivateKey{}
	pubs := map[string]ed25519.PublicKey{}
	for _, id := range []string{"ann", "ben"} {
		pub, p, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		priv[id], pubs[id] = p, pub
	}
	ring, err := approval.NewKeyring(pubs)
	if err != nil {
		t.Fatal(err)
	}
	api := newApprovalsAPI(t, ring)
	now := time.Now().UTC()
	req := approval.NewActionRequest("acme", "playbook:exfil", "exfil-high", "revoke mallory",
		approval.PlaybookAction{Kind: "revoke", Scope: "subject", Value: "mallory"}, []string{"ann", "ben"}, 2, now, time.Hour, "")
	if err := approval.WriteRequest(context.Background(), api.prod, req); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, ok := api.store.Get(req.ID); return ok })

	db := chtest.New(t)
	g := launch(t)
	pc := withJSON(t, pluginContext(t, db, "", "Viewer"), map[string]any{"approvalsUrl": api.url,
		"approverLogins": map[string]string{"alice": "ann"}})

	st, out := g.callResource(t, pc, "zoe", "Viewer", "GET", "approvals/"+req.ID, nil)
	var view approval.RequestView
	if st != 200 || json.Unmarshal([]byte(out), &view) != nil || view.Hash != approval.HashOf(view.Record) || view.Request.ID != req.ID {
		t.Fatalf("GET approvals/%s: %d %s", req.ID, st, out)
	}
	if st, out := g.callResource(t, pc, "zoe", "Viewer", "GET", "approvals/nope", nil); st != 404 || !strings.Contains(out, "no approval request nope") {
		t.Errorf("GET an unknown request: %d %s; want the API's 404 and reason", st, out)
	}
	vote := func(approver string, key ed25519.PrivateKey, d approval.Decision, reason string) []byte {
		v := &approval.Vote{Schema: approval.SchemaVersion, RequestID: req.ID, RequestHash: view.Hash, Approver: approver,
			Decision: d, Reason: reason, Time: time.Now().UTC()}
		approval.Sign(v, key)
		b, _ := json.Marshal(v)
		return b
	}
	post := func(login, role string, body []byte) (int, string) {
		t.Helper()
		return g.callResource(t, pc, login, role, "POST", "approvals/"+req.ID+"/votes", body)
	}
	annVote := vote("ann", priv["ann"], approval.Approve, "confirmed: 4 GB to a paste site")
	for _, c := range []struct {
		name, login, role string
		body              []byte
		status            int
		says              string
	}{
		{"viewer", "alice", "Viewer", annVote, 403, "needs Editor"},
		{"another approver's vote", "alice", "Editor", vote("ben", priv["ben"], approval.Approve, "ok"), 403, "votes as approver ann, not ben"},
		{"login whose id is mapped away", "ann", "Admin", annVote, 403, "mapped from another login"},
		{"bad signature", "alice", "Editor", vote("ann", priv["ben"], approval.Approve, "signed with the wrong key"), 401, "does not verify"},
		{"not json", "alice", "Editor", []byte(`{"schema":1,`), 400, "vote"},
	} {
		if st, out := post(c.login, c.role, c.body); st != c.status || !strings.Contains(out, c.says) {
			t.Errorf("%s: %d %s; want %d saying %q", c.name, st, out, c.status, c.says)
		}
	}
	if st, out := g.callResource(t, pc, "alice", "Editor", "POST", "approvals/other-id/votes", annVote); st != 400 || !strings.Contains(out, "posted to") {
		t.Errorf("vote posted to another request: %d %s; want 400", st, out)
	}
	if s, _ := api.store.Get(req.ID); len(s.Approvals)+len(s.Denials) != 0 {
		t.Fatalf("a refused vote was counted: approvals %+v denials %+v", s.Approvals, s.Denials)
	}

	st, out = post("alice", "Editor", annVote)
	var after approval.RequestView
	if st != 201 || json.Unmarshal([]byte(out), &after) != nil || after.State != approval.Pending || len(after.Approvals) != 1 {
		t.Fatalf("alice's vote as ann: %d %s; want 201, pending with one approval", st, out)
	}
	st, out = post("ben", "Editor", vote("ben", priv["ben"], approval.Approve, "agreed; revoke"))
	if st != 201 || json.Unmarshal([]byte(out), &after) != nil || after.State != approval.Approved {
		t.Fatalf("ben's vote: %d %s; want 201 and approved", st, out)
	}
	if !api.store.Approved(req.ID) {
		t.Error("the API's store, following the topic, does not hold the request approved")
	}
	if got := api.actors(); !slices.Equal(got, []string{"operator:ann=pending", "operator:ben=approved"}) {
		t.Errorf("actions recorded %v; want ann's vote (pending) and ben's (approved)", got)
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

// approverLogins: a mapped login votes as its approver id, another login as itself, and a login
// equal to an id mapped from someone else votes as nobody; the settings refuse an id mapped from
// two logins and an id the keyring could not hold. If this failed, a Grafana user could post
// votes as an approver who is someone else.
func TestApproverOf(t *testing.T) {
	s := Settings{ApproverLogins: map[string]string{"alice": "ann", "bob": "bob"}}
	for login, want := range map[string]string{"alice": "ann", "bob": "bob", "carol": "carol", "ann": ""} {
		if got, ok := s.approverOf(login); got != want || ok != (want != "") {
			t.Errorf("approverOf(%q) = %q, %v; want %q", login, got, ok, want)
		}
	}
	base := Settings{Addr: "h:9000", Database: "mcpwatch", User: "ro", OperatorRole: "Editor", DPBudget: 1, DPPeriodDays: 30}
	if err := base.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		m    map[string]string
		says string
	}{
		{map[string]string{"alice": "ann", "al": "ann"}, `approver "ann" is mapped from both "al" and "alice"`},
		{map[string]string{"alice": "ann bee"}, `approverLogins["alice"] = "ann bee"`},
		{map[string]string{" ": "ann"}, "empty Grafana login"},
	} {
		s := base
		s.ApproverLogins = c.m
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("approverLogins %v: %v; want an error saying %s", c.m, err, c.says)
		}
	}
}
