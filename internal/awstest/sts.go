package awstest

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// STS is a test STS that answers GetCallerIdentity for the identities
// added to it, and only for requests signed with their credentials: it
// verifies each SigV4 signature (presigned query or Authorization header)
// by recomputing it with the AWS SDK's own v4 signer. The emulator's STS
// answers one fixed identity for every caller, so it cannot tell callers
// apart; this is the one stand-in for an AWS API the tests use, and only
// for that.
type STS struct {
	// URL is its endpoint (http://127.0.0.1:port).
	URL string

	mu    sync.Mutex
	ids   map[string]Identity // by access key id
	calls atomic.Int64
	down  atomic.Bool
}

// Identity is a caller the test STS knows: its credentials and what
// GetCallerIdentity answers for them.
type Identity struct {
	ARN, Account string
	Credentials  aws.Credentials
}

// NewSTS starts a test STS, closed when the test ends.
func NewSTS(tb testing.TB) *STS {
	tb.Helper()
	s := &STS{ids: map[string]Identity{}}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Add makes an identity for arn (an IAM user or root ARN, or an
// assumed-role session ARN, which gets a session token as AssumeRole
// credentials have) with fresh random credentials.
func (s *STS) Add(tb testing.TB, arn string) Identity {
	tb.Helper()
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 {
		tb.Fatalf("test STS: %q is not an ARN", arn)
	}
	creds := aws.Credentials{AccessKeyID: "AKIA" + randomHex(tb, 8), SecretAccessKey: randomHex(tb, 20), Source: "awstest.STS"}
	if strings.Contains(arn, ":assumed-role/") {
		creds.AccessKeyID = "ASIA" + creds.AccessKeyID[4:]
		creds.SessionToken = randomHex(tb, 32)
	}
	id := Identity{ARN: arn, Account: parts[4], Credentials: creds}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids[creds.AccessKeyID] = id
	return id
}

// AddDefault makes arn the identity of Config's static credentials, so
// that a fanout running on Config (which asks STS for its account at
// start) is known.
func (s *STS) AddDefault(arn string) {
	parts := strings.SplitN(arn, ":", 6)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids[accessKey] = Identity{ARN: arn, Account: parts[4], Credentials: aws.Credentials{AccessKeyID: accessKey, SecretAccessKey: secretKey}}
}

// Calls counts the requests the test STS has answered or refused.
func (s *STS) Calls() int64 { return s.calls.Load() }

// SetDown makes every answer a 503 ServiceUnavailable while down holds.
func (s *STS) SetDown(down bool) { s.down.Store(down) }

// Config is Config(tb) — the emulator for every other service — with the
// identity's credentials and STS at s, set the way AWS_ENDPOINT_URL_STS
// sets it: through the SDK's configured-endpoint sources.
func (s *STS) Config(tb testing.TB, id Identity) aws.Config {
	tb.Helper()
	cfg := s.Endpoint(tb, Config(tb))
	cfg.Credentials = credentials.StaticCredentialsProvider{Value: id.Credentials}
	return cfg
}

// Endpoint returns cfg with STS at s (and every other service where cfg
// has it).
func (s *STS) Endpoint(tb testing.TB, cfg aws.Config) aws.Config {
	tb.Helper()
	if _, global := os.LookupEnv("AWS_ENDPOINT_URL"); global {
		if _, sts := os.LookupEnv("AWS_ENDPOINT_URL_STS"); !sts {
			// The SDK then reads the STS endpoint from AWS_ENDPOINT_URL
			// alone and ignores configured sources.
			tb.Skip("AWS_ENDPOINT_URL is set without AWS_ENDPOINT_URL_STS: the test STS cannot be configured; set AWS_ENDPOINT_URL_STS too")
		}
	}
	cfg = cfg.Copy()
	cfg.ConfigSources = append([]any{stsEndpoint(s.URL)}, cfg.ConfigSources...)
	return cfg
}

// stsEndpoint is a configured-endpoint source naming STS's endpoint, as
// the SDK's environment source does for AWS_ENDPOINT_URL_STS.
type stsEndpoint string

func (e stsEndpoint) GetServiceBaseEndpoint(_ context.Context, sdkID string) (string, bool, error) {
	if sdkID != "STS" {
		return "", false, nil
	}
	return string(e), true, nil
}

// emptySHA256 is the payload hash of a request without a body.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func (s *STS) serve(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	if s.down.Load() {
		stsFault(w, http.StatusServiceUnavailable, "Receiver", "ServiceUnavailable", "test STS is down")
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		stsFault(w, http.StatusBadRequest, "Sender", "InvalidRequest", err.Error())
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		stsFault(w, http.StatusBadRequest, "Sender", "InvalidRequest", err.Error())
		return
	}
	q := r.URL.Query()
	action := q.Get("Action")
	if r.Method == http.MethodPost {
		action = form.Get("Action")
	}
	if action != "GetCallerIdentity" {
		stsFault(w, http.StatusBadRequest, "Sender", "InvalidAction", fmt.Sprintf("test STS answers only GetCallerIdentity, not %q", action))
		return
	}
	var id Identity
	var code string
	if q.Has("X-Amz-Signature") {
		id, code = s.verifyPresigned(r)
	} else {
		id, code = s.verifySigned(r, body)
	}
	if code != "" {
		stsFault(w, http.StatusForbidden, "Sender", code, "test STS refused the signature: "+code)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><Arn>%s</Arn><UserId>%s</UserId><Account>%s</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>test</RequestId></ResponseMetadata></GetCallerIdentityResponse>`,
		xmlText(id.ARN), xmlText(id.Credentials.AccessKeyID), xmlText(id.Account))
}

// verifyPresigned checks a presigned GET: the identity, or the error code
// STS would answer.
func (s *STS) verifyPresigned(r *http.Request) (Identity, string) {
	q := r.URL.Query()
	id, region, code := s.credential(q.Get("X-Amz-Credential"), q.Get("X-Amz-Security-Token"))
	if code != "" {
		return Identity{}, code
	}
	at, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if err != nil {
		return Identity{}, "IncompleteSignature"
	}
	secs, err := strconv.Atoi(q.Get("X-Amz-Expires"))
	if err != nil || secs > 3600 {
		return Identity{}, "AuthFailure"
	}
	if time.Now().After(at.Add(time.Duration(secs) * time.Second)) {
		return Identity{}, "ExpiredToken"
	}
	got := q.Get("X-Amz-Signature")
	q.Del("X-Amz-Signature")
	req, err := http.NewRequest(r.Method, "http://"+r.Host+r.URL.Path+"?"+q.Encode(), nil)
	if err != nil {
		return Identity{}, "IncompleteSignature"
	}
	copySignedHeaders(req, r, q.Get("X-Amz-SignedHeaders"))
	signed, _, err := v4.NewSigner().PresignHTTP(r.Context(), id.Credentials, req, emptySHA256, "sts", region, at)
	if err != nil {
		return Identity{}, "IncompleteSignature"
	}
	u, err := url.Parse(signed)
	if err != nil || !hmac.Equal([]byte(u.Query().Get("X-Amz-Signature")), []byte(got)) {
		return Identity{}, "SignatureDoesNotMatch"
	}
	return id, ""
}

// verifySigned checks a request signed in its Authorization header (what
// the SDK sends for a plain GetCallerIdentity call).
func (s *STS) verifySigned(r *http.Request, body []byte) (Identity, string) {
	authz, ok := strings.CutPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ")
	if !ok {
		return Identity{}, "MissingAuthenticationToken"
	}
	fields := map[string]string{}
	for f := range strings.SplitSeq(authz, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		fields[k] = v
	}
	id, region, code := s.credential(fields["Credential"], r.Header.Get("X-Amz-Security-Token"))
	if code != "" {
		return Identity{}, code
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return Identity{}, "IncompleteSignature"
	}
	if d := time.Since(at); d > 15*time.Minute || d < -15*time.Minute {
		return Identity{}, "SignatureDoesNotMatch"
	}
	req, err := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), strings.NewReader(string(body)))
	if err != nil {
		return Identity{}, "IncompleteSignature"
	}
	copySignedHeaders(req, r, fields["SignedHeaders"])
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(r.Context(), id.Credentials, req, hex.EncodeToString(sum[:]), "sts", region, at); err != nil {
		return Identity{}, "IncompleteSignature"
	}
	want := signatureOf(req.Header.Get("Authorization"))
	if want == "" || !hmac.Equal([]byte(want), []byte(fields["Signature"])) {
		return Identity{}, "SignatureDoesNotMatch"
	}
	return id, ""
}

// signatureOf is the Signature field of an Authorization header.
func signatureOf(authz string) string {
	_, sig, _ := strings.Cut(authz, "Signature=")
	return sig
}

// credential finds the identity and region of a SigV4 credential scope
// <key>/<date>/<region>/sts/aws4_request; code is STS's error otherwise.
func (s *STS) credential(scope, sessionToken string) (id Identity, region, code string) {
	parts := strings.Split(scope, "/")
	if len(parts) != 5 || parts[3] != "sts" || parts[4] != "aws4_request" {
		return Identity{}, "", "IncompleteSignature"
	}
	s.mu.Lock()
	id, ok := s.ids[parts[0]]
	s.mu.Unlock()
	if !ok || id.Credentials.SessionToken != sessionToken {
		return Identity{}, "", "InvalidClientTokenId"
	}
	return id, parts[2], ""
}

// copySignedHeaders copies to req the headers of r that signedHeaders
// (SigV4's "host;x-amz-date;...") names, except host, which req's URL has.
func copySignedHeaders(req, r *http.Request, signedHeaders string) {
	for h := range strings.SplitSeq(signedHeaders, ";") {
		switch h {
		case "host":
		case "content-length":
			req.ContentLength = r.ContentLength
		default:
			req.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
}

func stsFault(w http.ResponseWriter, status int, kind, code, msg string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>%s</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>test</RequestId></ErrorResponse>`,
		kind, code, xmlText(msg))
}

func xmlText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func randomHex(tb testing.TB, n int) string {
	tb.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return strings.ToUpper(hex.EncodeToString(b))
}
