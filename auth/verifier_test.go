package auth_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/fanout/fanout/auth"
	"github.com/fanout/fanout/client"
	"github.com/fanout/fanout/internal/awstest"
)

// presign mints a token with the client package (the SDK's STS
// presigner) for cfg and audience, then lets edit change its URL.
func presign(t *testing.T, cfg aws.Config, audience string, edit func(*url.URL)) string {
	t.Helper()
	tok, err := client.New(client.Config{AWS: cfg, Audience: audience}).Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if edit == nil {
		return tok
	}
	return awstest.EditToken(t, tok, edit)
}

func newVerifier(t *testing.T, cfg aws.Config) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(context.Background(), cfg, "fanout")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestVerify: a good token yields the caller's canonical principal, costs
// one STS call for its whole life, and every kind of bad token is refused
// as the caller's fault.
func TestVerify(t *testing.T) {
	t.Parallel()
	s := awstest.NewSTS(t)
	role := s.Add(t, "arn:aws:sts::111122223333:assumed-role/deployer/session-1")
	v := newVerifier(t, s.Endpoint(t, awstest.Config(t)))
	cfg := s.Config(t, role)

	tok := presign(t, cfg, "fanout", nil)
	before := s.Calls()
	for range 50 {
		p, err := v.Verify(context.Background(), tok)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if p.Kind != auth.Role || p.Account != "111122223333" || p.Name != "deployer" {
			t.Fatalf("principal = %+v, want role deployer of 111122223333", p)
		}
	}
	if got := s.Calls() - before; got != 1 {
		t.Errorf("50 verifications of one token made %d STS calls, want 1", got)
	}

	stranger := aws.Credentials{AccessKeyID: "AKIAUNKNOWN", SecretAccessKey: "x"}
	for _, tc := range []struct {
		name, token, says string
	}{
		{"other audience", presign(t, cfg, "other-deployment", nil), "SignatureDoesNotMatch"},
		{"tampered signature", presign(t, cfg, "fanout", awstest.FlipSignature), "SignatureDoesNotMatch"},
		{"unknown key", presign(t, credsConfig(cfg, stranger), "fanout", nil), "InvalidClientTokenId"},
		{"expired", presign(t, cfg, "fanout", awstest.SetParam("X-Amz-Date", time.Now().Add(-16*time.Minute).UTC().Format("20060102T150405Z"))), "expired"},
		{"too long", presign(t, cfg, "fanout", awstest.SetParam("X-Amz-Expires", "901")), "X-Amz-Expires"},
		{"other action", presign(t, cfg, "fanout", awstest.SetParam("Action", "AssumeRole")), "GetCallerIdentity"},
		{"other path", presign(t, cfg, "fanout", func(u *url.URL) { u.Path = "/admin" }), "path"},
		{"extra parameter", presign(t, cfg, "fanout", func(u *url.URL) { u.RawQuery += "&RoleArn=x" }), "RoleArn"},
		{"not a token", "Basic abc", "fanout-v1."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tc.token)
			ae, ok := errors.AsType[*auth.Error](err)
			if !ok || ae.Identified {
				t.Fatalf("Verify = %v, want an *auth.Error for the caller to fix", err)
			}
			if !strings.Contains(ae.Msg, tc.says) {
				t.Errorf("message %q does not say %q", ae.Msg, tc.says)
			}
		})
	}
}

func credsConfig(cfg aws.Config, c aws.Credentials) aws.Config {
	cfg = cfg.Copy()
	cfg.Credentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return c, nil })
	return cfg
}

// TestVerifyForeignHost: a token naming any host but the STS endpoint is
// refused, and that host is never contacted.
func TestVerifyForeignHost(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer foreign.Close()
	s := awstest.NewSTS(t)
	id := s.Add(t, "arn:aws:iam::111122223333:user/alice")
	v := newVerifier(t, s.Endpoint(t, awstest.Config(t)))
	fu, _ := url.Parse(foreign.URL)

	for _, tc := range []struct {
		name string
		cfg  aws.Config
		edit func(*url.URL)
	}{
		{"presigned for the foreign host", credsConfig(s.Endpoint(t, awstest.Config(t)), id.Credentials), func(u *url.URL) { u.Host = fu.Host }},
		{"AWS's STS while fanout's is another", credsConfig(aws.Config{Region: "us-east-1"}, id.Credentials), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := presign(t, tc.cfg, "fanout", tc.edit)
			before := s.Calls()
			_, err := v.Verify(context.Background(), tok)
			if ae, ok := errors.AsType[*auth.Error](err); !ok || !strings.Contains(ae.Msg, "verifies tokens only with STS at "+s.URL) {
				t.Fatalf("Verify = %v, want a refusal naming the STS endpoint", err)
			}
			if s.Calls() != before {
				t.Errorf("the test STS was called for a token of another host")
			}
		})
	}
	if hits.Load() != 0 {
		t.Errorf("the foreign host got %d requests, want none", hits.Load())
	}
}

// TestVerifyOutage: STS down is ErrUnavailable (503), not a refusal.
func TestVerifyOutage(t *testing.T) {
	t.Parallel()
	s := awstest.NewSTS(t)
	id := s.Add(t, "arn:aws:iam::111122223333:user/alice")
	v := newVerifier(t, s.Endpoint(t, awstest.Config(t)))
	tok := presign(t, s.Config(t, id), "fanout", nil)
	s.SetDown(true)
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("Verify with STS down = %v, want ErrUnavailable", err)
	}
	s.SetDown(false)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("Verify after STS is back = %v (an outage must not be cached)", err)
	}
}

// TestVerifyUnreachable: STS not answering at all is ErrUnavailable too,
// and the error (which the server logs) does not hold the token's URL.
func TestVerifyUnreachable(t *testing.T) {
	t.Parallel()
	s := awstest.NewSTS(t)
	id := s.Add(t, "arn:aws:iam::111122223333:user/alice")
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close() // its address now refuses connections
	cfg := awstest.Config(t)
	cfg.BaseEndpoint = aws.String(gone.URL)
	v := newVerifier(t, cfg)
	tok := presign(t, credsConfig(cfg, id.Credentials), "fanout", nil)
	_, err := v.Verify(context.Background(), tok)
	if !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("Verify with STS unreachable = %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), "X-Amz-Signature") || strings.Contains(err.Error(), id.Credentials.AccessKeyID) {
		t.Errorf("error %q holds the token", err)
	}
}

// BenchmarkVerify is the verifier alone: a cached token (a SHA-256 and a
// map lookup) and an uncached one (an STS round trip, here to the test STS
// on loopback; against AWS, a regional STS round trip instead):
//
//	go test -run '^$' -bench Verify -benchtime 2000x ./auth
func BenchmarkVerify(b *testing.B) {
	s := awstest.NewSTS(b)
	v, err := auth.NewVerifier(context.Background(), s.Endpoint(b, awstest.Config(b)), "fanout")
	if err != nil {
		b.Fatal(err)
	}
	mint := func(i int) string {
		id := s.Add(b, fmt.Sprintf("arn:aws:sts::111122223333:assumed-role/bench/s-%d-%d", b.N, i))
		tok, err := client.New(client.Config{AWS: s.Config(b, id)}).Token(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		return tok
	}
	b.Run("cached", func(b *testing.B) {
		tok := mint(0)
		if _, err := v.Verify(context.Background(), tok); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := v.Verify(context.Background(), tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("uncached", func(b *testing.B) {
		toks := make([]string, b.N)
		for i := range toks {
			toks[i] = mint(i + 1)
		}
		b.ResetTimer()
		for i := range b.N {
			if _, err := v.Verify(context.Background(), toks[i]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
