package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/protocol/query"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"golang.org/x/sync/singleflight"
)

// ErrUnavailable means STS could not be asked (down, throttling, network):
// the token may be good, so the caller should retry, not mint a new one.
var ErrUnavailable = errors.New("STS unavailable")

// Verification limits.
const (
	// cacheSize bounds the identities remembered (about 300 bytes each);
	// when full, expired ones go, and if none has, the cache starts over.
	cacheSize = 100_000
	// stsAttempts bounds the tries of one verification: enough to ride out
	// one dropped connection, few enough that an outage answers 503 within
	// a couple of seconds instead of holding requests.
	stsAttempts = 2
	// globalHostRegion is the region a token for the global endpoint
	// sts.amazonaws.com is signed for, and the SDK's name of that endpoint.
	globalHostRegion, globalRegionName = "us-east-1", "aws-global"
)

// Verifier verifies bearer tokens by replaying them to STS and caches what
// STS answered until the token expires. It is safe for concurrent use.
type Verifier struct {
	sts      *sts.Client
	audience string
	// override is the scheme://host of an endpoint configured for STS
	// (AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL), "" when the SDK resolves
	// AWS's own hosts; dnsSuffix is then the partition's (amazonaws.com).
	override  string
	dnsSuffix string
	now       func() time.Time

	flight singleflight.Group
	mu     sync.Mutex
	cache  map[[sha256.Size]byte]cached
}

type cached struct {
	p     Principal
	until time.Time
}

// NewVerifier returns a Verifier that sends tokens only to the STS
// endpoint awsCfg (fanout's own SDK configuration) resolves: the
// configured endpoint override, or else the regional hosts of awsCfg's
// partition and its global host. audience is the value every token must
// have signed in x-fanout-audience.
func NewVerifier(ctx context.Context, awsCfg aws.Config, audience string) (*Verifier, error) {
	v := &Verifier{
		sts: sts.NewFromConfig(awsCfg, func(o *sts.Options) {
			o.RetryMaxAttempts = stsAttempts
		}),
		audience: audience,
		now:      time.Now,
		cache:    map[[sha256.Size]byte]cached{},
	}
	o := v.sts.Options()
	if o.BaseEndpoint != nil {
		u, err := url.Parse(*o.BaseEndpoint)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("STS endpoint %q is not a URL", *o.BaseEndpoint)
		}
		v.override = u.Scheme + "://" + u.Host
		return v, nil
	}
	ep, err := o.EndpointResolverV2.ResolveEndpoint(ctx, sts.EndpointParameters{Region: aws.String(awsCfg.Region)})
	if err != nil {
		return nil, fmt.Errorf("resolve the STS endpoint of region %s: %w", awsCfg.Region, err)
	}
	suffix, ok := strings.CutPrefix(ep.URI.Host, "sts."+awsCfg.Region+".")
	if !ok {
		return nil, fmt.Errorf("STS endpoint of region %s is %s, not sts.%s.<domain>; set AWS_ENDPOINT_URL_STS", awsCfg.Region, ep.URI.Host, awsCfg.Region)
	}
	v.dnsSuffix = suffix
	return v, nil
}

// Verify returns the principal that signed token (the part after
// "Bearer "). The error is an *Error when the token is malformed, expired,
// for another audience or host, or refused by STS (401), or when its
// identity cannot act in fanout (Identified, 403); it wraps ErrUnavailable
// when STS could not answer. Concurrent calls with one token share one STS
// call; a verified token costs no call until it expires.
func (v *Verifier) Verify(ctx context.Context, token string) (Principal, error) {
	key := sha256.Sum256([]byte(token))
	now := v.now()
	if p, ok := v.lookup(key, now); ok {
		return p, nil
	}
	tok, err := ParseToken(token)
	if err != nil {
		return Principal{}, err
	}
	if !now.Before(tok.Expires) {
		return Principal{}, refuse("bearer token expired at %s; mint a new one (a token lives at most %s)", tok.Expires.UTC().Format(time.RFC3339), MaxExpires)
	}
	region, err := v.stsRegion(tok)
	if err != nil {
		return Principal{}, err
	}
	res, err, _ := v.flight.Do(string(key[:]), func() (any, error) {
		// Detached from the first caller's cancellation: the answer serves
		// every caller waiting on it.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return v.ask(ctx, tok, region)
	})
	if err != nil {
		return Principal{}, err
	}
	p := res.(Principal)
	until := tok.Expires
	if limit := now.Add(MaxExpires); until.After(limit) {
		until = limit // a token dated in the future lives no longer
	}
	v.store(key, p, until, now)
	return p, nil
}

// stsRegion is the region to call STS in for tok: tok's own, when its host
// is the STS host the SDK resolves for that region in fanout's partition
// (or the configured endpoint). Any other host is refused here, before any
// connection is made.
func (v *Verifier) stsRegion(tok Token) (string, error) {
	origin := tok.Scheme + "://" + tok.Host
	switch {
	case v.override != "":
		if origin == v.override {
			return tok.Region, nil
		}
		return "", refuse("bearer token is for %s, but this fanout verifies tokens only with STS at %s; presign against that endpoint", origin, v.override)
	case tok.Scheme == "https" && tok.Host == "sts."+tok.Region+"."+v.dnsSuffix:
		return tok.Region, nil
	case tok.Scheme == "https" && tok.Host == "sts."+v.dnsSuffix && v.dnsSuffix == "amazonaws.com" && tok.Region == globalHostRegion:
		return globalRegionName, nil
	}
	return "", refuse("bearer token is for %s, which is not an STS endpoint of this fanout's partition (https://sts.<region>.%s); presign sts:GetCallerIdentity with the AWS SDK", origin, v.dnsSuffix)
}

// ask replays tok to STS through the SDK's own client: the endpoint,
// transport, retries and response parsing are the SDK's; only the signature
// is the caller's.
func (v *Verifier) ask(ctx context.Context, tok Token, region string) (Principal, error) {
	out, err := v.sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}, func(o *sts.Options) {
		o.Region = region
		o.APIOptions = append(o.APIOptions, query.AddAsGetRequestMiddleware, func(s *middleware.Stack) error {
			_, err := s.Finalize.Swap("Signing", replay{tok: tok, audience: v.audience})
			return err
		})
	})
	if err != nil {
		return Principal{}, stsError(err)
	}
	p, err := ParsePrincipal(aws.ToString(out.Arn))
	if err != nil {
		return Principal{}, &Error{Msg: fmt.Sprintf("fanout cannot let this identity act: %v", err), Identified: true}
	}
	if p.Account != aws.ToString(out.Account) {
		return Principal{}, fmt.Errorf("%w: STS answered account %s for ARN %s", ErrUnavailable, aws.ToString(out.Account), p.ARN)
	}
	return p, nil
}

// stsError sorts a failed GetCallerIdentity: STS refusing the token (a 4xx
// other than throttling) is the caller's to fix; everything else may pass.
func stsError(err error) error {
	if ae, ok := errors.AsType[*Error](err); ok {
		return ae
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		// No answer (the SDK reports it as a response of status 0). The
		// error's message holds the whole presigned URL, a credential:
		// keep only what failed, for the log.
		return fmt.Errorf("%w: %s STS: %w", ErrUnavailable, ue.Op, ue.Err)
	}
	re, ok := errors.AsType[*awshttp.ResponseError](err)
	if !ok || re.HTTPStatusCode() == 0 {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	code := ""
	if api, ok := errors.AsType[smithy.APIError](err); ok {
		code = api.ErrorCode()
	}
	status := re.HTTPStatusCode()
	if status >= 500 || status == http.StatusTooManyRequests || strings.Contains(code, "Throttl") || code == "RequestLimitExceeded" {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	msg := code
	if api, ok := errors.AsType[smithy.APIError](err); ok && api.ErrorMessage() != "" {
		msg += ": " + api.ErrorMessage()
	}
	return refuse("STS refused the bearer token (%s); mint a new one with your current credentials and audience", msg)
}

// replay stands in for the SDK's signer: it sends the caller's presigned
// query instead of signing, with this deployment's audience header. It
// refuses to send anywhere but the host the SDK resolved, which must be
// the token's.
type replay struct {
	tok      Token
	audience string
}

func (replay) ID() string { return "fanout:ReplayPresigned" }

func (r replay) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
	req, ok := in.Request.(*smithyhttp.Request)
	if !ok {
		return middleware.FinalizeOutput{}, middleware.Metadata{}, fmt.Errorf("replay: unexpected request type %T", in.Request)
	}
	if req.URL.Scheme != r.tok.Scheme || req.URL.Host != r.tok.Host {
		return middleware.FinalizeOutput{}, middleware.Metadata{}, refuse("bearer token is for %s://%s, but STS resolves to %s://%s here; presign against that endpoint", r.tok.Scheme, r.tok.Host, req.URL.Scheme, req.URL.Host)
	}
	req.Method = http.MethodGet
	req.URL.Path = "/"
	req.URL.RawPath = ""
	req.URL.RawQuery = r.tok.Query.Encode()
	req.Header.Set(AudienceHeader, r.audience)
	return next.HandleFinalize(ctx, in)
}

func (v *Verifier) lookup(key [sha256.Size]byte, now time.Time) (Principal, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	c, ok := v.cache[key]
	if !ok || !now.Before(c.until) {
		return Principal{}, false
	}
	return c.p, true
}

func (v *Verifier) store(key [sha256.Size]byte, p Principal, until, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cache) >= cacheSize {
		for k, c := range v.cache {
			if !now.Before(c.until) {
				delete(v.cache, k)
			}
		}
		if len(v.cache) >= cacheSize {
			clear(v.cache)
		}
	}
	v.cache[key] = cached{p: p, until: until}
}
