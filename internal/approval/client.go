package approval

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Client speaks to the approvals HTTP API ([Server]) for operators and their tools.
//
// With neither HTTP nor TLS set it uses Go's default transport with a 30 s timeout. With TLS set
// (and HTTP nil) it builds one transport on first use that speaks TLS 1.3 at least, whatever
// TLS.MinVersion says, with TLS's roots and client certificate (see [ClientTLSFiles.Config]):
// reuse the Client to reuse its connections, and call [Client.CloseIdleConnections] when done.
type Client struct {
	BaseURL string
	HTTP    *http.Client // nil: a client with a 30 s timeout
	// TLS, if set and HTTP is nil, is the TLS configuration towards the API: the CA that
	// verifies it and the operator's client certificate for an API that requires one (mTLS).
	TLS *tls.Config

	once  sync.Once
	own   *http.Client
	asked atomic.Bool // the API asked for a client certificate (for the error's hint)
}

// httpClient returns the client requests go through.
func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	if c.TLS == nil {
		return &http.Client{Timeout: 30 * time.Second}
	}
	c.once.Do(func() {
		tc := c.TLS.Clone()
		tc.MinVersion = max(tc.MinVersion, tls.VersionTLS13)
		certs, get := tc.Certificates, tc.GetClientCertificate
		tc.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c.asked.Store(true)
			if get != nil {
				return get(cri)
			}
			for i := range certs {
				if cri.SupportsCertificate(&certs[i]) == nil {
					return &certs[i], nil
				}
			}
			if len(certs) > 0 {
				// Not from a CA the API names: send it anyway, so the API's refusal says why
				// (unknown certificate authority) instead of "certificate required".
				return &certs[0], nil
			}
			return &tls.Certificate{}, nil
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		c.own = &http.Client{Timeout: 30 * time.Second, Transport: tr}
	})
	return c.own
}

// CloseIdleConnections closes the idle connections of the transport the Client built for TLS
// (nothing else).
func (c *Client) CloseIdleConnections() {
	if c.HTTP == nil && c.TLS != nil {
		c.httpClient().CloseIdleConnections()
	}
}

// APIError is an answer of the approvals API other than 2xx: its status and the reason it gave
// (empty if it gave none). Callers that relay the API, such as the Grafana plugin, pass both on.
type APIError struct {
	Code   int    // HTTP status code
	Status string // HTTP status line text, e.g. "401 Unauthorized"
	Reason string
}

func (e *APIError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("approvals API: %s: %s", e.Status, e.Reason)
	}
	return "approvals API: " + e.Status
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	hc := c.httpClient()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("approvals API: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("approvals API: %w", tlsHint(err, c.asked.Load()))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("approvals API: reading the answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e apiError
		_ = json.Unmarshal(b, &e)
		return &APIError{Code: resp.StatusCode, Status: resp.Status, Reason: e.Error}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("approvals API: decoding the answer: %w", err)
	}
	return nil
}

// List returns the requests in state ("" means pending, "all" every state).
func (c *Client) List(ctx context.Context, state string) ([]RequestView, error) {
	var out []RequestView
	err := c.do(ctx, http.MethodGet, "/approvals?state="+url.QueryEscape(state), nil, &out)
	return out, err
}

// Get returns request id, having checked that the hash the API gives is the SHA-256 of the
// record it shows and that the record decodes to the request shown.
func (c *Client) Get(ctx context.Context, id string) (RequestView, error) {
	if !ValidID(id) {
		return RequestView{}, fmt.Errorf("request id %q: use letters, digits, _ . - (at most 64)", id)
	}
	var v RequestView
	if err := c.do(ctx, http.MethodGet, "/approvals/"+id, nil, &v); err != nil {
		return v, err
	}
	sum := sha256.Sum256(v.Record)
	if hex.EncodeToString(sum[:]) != v.Hash {
		return v, fmt.Errorf("approvals API gave request %s with a hash that is not its record's: refusing to sign", id)
	}
	var r Request
	if err := strict(v.Record, &r); err != nil || r.ID != id {
		return v, fmt.Errorf("approvals API gave a record that is not request %s: refusing to sign", id)
	}
	v.Request = r // show what is signed, not what the API says about it
	return v, nil
}

// Vote signs a decision on request id as approver with priv and posts it; it returns the
// request's status after the vote.
func (c *Client) Vote(ctx context.Context, id, approver string, priv ed25519.PrivateKey, d Decision, reason string) (RequestView, error) {
	view, err := c.Get(ctx, id)
	if err != nil {
		return view, err
	}
	v := &Vote{Schema: SchemaVersion, RequestID: id, RequestHash: view.Hash, Approver: approver, Decision: d,
		Reason: reason, Time: time.Now().UTC()}
	Sign(v, priv)
	if err := v.validate(); err != nil {
		return view, err
	}
	body, _ := json.Marshal(v)
	var after RequestView
	err = c.do(ctx, http.MethodPost, "/approvals/"+id+"/votes", body, &after)
	return after, err
}

// PostVote posts v, a vote already signed elsewhere (in the approver's browser, say), unchanged,
// and returns the request's status after it. It holds no key and checks no signature: the API
// verifies v against its keyring and refuses it with an [*APIError] saying why.
func (c *Client) PostVote(ctx context.Context, v *Vote) (RequestView, error) {
	if !ValidID(v.RequestID) {
		return RequestView{}, fmt.Errorf("vote: request id %q: use letters, digits, _ . - (at most 64)", clip(v.RequestID))
	}
	body, err := json.Marshal(v)
	if err != nil {
		return RequestView{}, fmt.Errorf("vote on %s: %w", v.RequestID, err)
	}
	var after RequestView
	err = c.do(ctx, http.MethodPost, "/approvals/"+v.RequestID+"/votes", body, &after)
	return after, err
}
