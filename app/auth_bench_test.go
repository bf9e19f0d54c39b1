package app_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/fanout/fanout/app"
	"github.com/fanout/fanout/client"
)

// BenchmarkAuth measures what verifying callers costs, on the in-process
// emulator with the test STS (on loopback: against AWS, an uncached token
// adds an STS round trip instead, typically 5-30 ms within a region):
//
//	go test -run '^$' -bench Auth -benchtime 1000x -count 5 ./app
//
// Each op is one GET /agents/{id} (answered from the store's cache, so the
// request itself costs no AWS call): "none" without authentication,
// "cached" with one token throughout (the client's way: one token per 10
// minutes), "uncached" with a new token every request (the worst case:
// one STS call each). sts-calls/1000req counts what reached STS. Numbers
// go to README.md.
func BenchmarkAuth(b *testing.B) {
	for _, bc := range []struct {
		name  string
		auth  string
		fresh bool // a new token every request
	}{
		{"none", app.AuthNone, false},
		{"cached", app.AuthIAM, false},
		{"uncached", app.AuthIAM, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := newIAMEnv(b)
			e.cfg.Auth = bc.auth
			s := e.start(b, "bench-auth")
			c, arn := e.roleCaller(b, s, "111111111111", "bench")
			a, err := c.client.Register(context.Background(), arn)
			if err != nil {
				b.Fatal(err)
			}
			before := e.sts.Calls()
			n := 1
			token := mint(b, e, c, n) // not yet verified: its first use counts

			for b.Loop() {
				if bc.fresh {
					b.StopTimer()
					n++
					token = mint(b, e, c, n)
					b.StartTimer()
				}
				req, _ := http.NewRequest("GET", s.url+"/agents/"+a.AgentID, nil)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil || resp.StatusCode != 200 {
					b.Fatalf("GET agent: %v %v", resp, err)
				}
				resp.Body.Close()
			}
			b.ReportMetric(float64(e.sts.Calls()-before)*1000/float64(b.N), "sts-calls/1000req")
		})
	}
}

// mint is a token of a new session of the role that session c is of:
// same principal, new credentials, so a token no cache has seen.
func mint(b *testing.B, e *iamEnv, c caller, n int) string {
	b.Helper()
	role := strings.TrimSuffix(c.id.ARN, "/session-1")
	id := e.sts.Add(b, fmt.Sprintf("%s/bench-%d", role, n))
	t, err := client.New(client.Config{AWS: e.sts.Config(b, id)}).Token(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return t
}
