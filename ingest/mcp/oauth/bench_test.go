package oauth_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth"
	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth/oauthtest"
)

// BenchmarkRevokedAtServerRefused measures how long a JWT revoked at the authorization server
// (zitadel's provider, RFC 7009 by the token's own client) is still accepted by the gateway's
// verifier in JWT introspection mode "all" with a 1 s cache TTL. Each iteration is a batch of
// 200 tokens whose cached answers have ages spread over the TTL when they are revoked, one
// after another; each is verified every 5 ms from its revocation until refused. It reports the p50, p99 and max of
// revoked → refused over all batches. The bound is the cache TTL by construction; the figures
// show where within it a revocation lands.
//
//	go test -run '^$' -bench RevokedAtServerRefused -benchtime 3x ./ingest/mcp/oauth/
func BenchmarkRevokedAtServerRefused(b *testing.B) {
	const (
		ttl   = time.Second
		batch = 200
		poll  = 5 * time.Millisecond
	)
	as := oauthtest.Start(b)
	v, err := oauth.New(context.Background(), oauth.Config{Issuer: as.URL, Resource: resource,
		Introspection: oauth.Introspection{ClientID: oauthtest.GatewayClientID, ClientSecret: oauthtest.GatewaySecret,
			JWT: oauth.JWTIntrospectAll, CacheTTL: ttl}}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	var all []time.Duration
	for b.Loop() {
		b.StopTimer()
		toks := make([]string, batch)
		for i := range toks {
			toks[i] = as.Login(b, resource, "mcp:tools").AccessToken
		}
		// Prime each token's cached answer at a random moment of the TTL before the revocation.
		start := time.Now()
		order := rand.Perm(batch)
		for k, i := range order {
			time.Sleep(time.Until(start.Add(time.Duration(k) * ttl / batch)))
			if _, err := v.Verify(bearerRequest(toks[i])); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		lat := make([]time.Duration, batch)
		var wg sync.WaitGroup
		for i, tok := range toks {
			as.RevokeAsClient(b, tok)
			revoked := time.Now()
			wg.Go(func() {
				for {
					if _, err := v.Verify(bearerRequest(tok)); err != nil {
						lat[i] = time.Since(revoked)
						return
					}
					if time.Since(revoked) > 3*ttl {
						b.Error("a revoked token was accepted past three cache TTLs")
						return
					}
					time.Sleep(poll)
				}
			})
		}
		wg.Wait()
		all = append(all, lat...)
	}
	slices.Sort(all)
	q := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
	b.ReportMetric(0, "ns/op")
}
