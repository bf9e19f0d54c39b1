package client

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/fanout/fanout/auth"
)

const (
	// tokenLifetime is how long a minted token is valid: the most fanout
	// accepts, so a caller presigns (locally, no network) every 10 min.
	tokenLifetime = auth.MaxExpires
	// tokenRefreshBefore is how much validity a token handed to a request
	// keeps at least: far more than any request takes.
	tokenRefreshBefore = 5 * time.Minute
)

// tokens mints bearer tokens from AWS credentials with the SDK's own STS
// presigner, and reuses one until it nears expiry. Safe for concurrent use.
type tokens struct {
	presign  *sts.PresignClient
	creds    aws.CredentialsProvider
	audience string
	now      func() time.Time

	mu      sync.Mutex
	token   string
	expires time.Time
}

func newTokens(awsCfg aws.Config, audience string) *tokens {
	t := &tokens{creds: awsCfg.Credentials, audience: audience, now: time.Now}
	t.presign = sts.NewPresignClient(sts.NewFromConfig(awsCfg), func(po *sts.PresignOptions) {
		po.ClientOptions = append(po.ClientOptions, func(o *sts.Options) {
			o.APIOptions = append(o.APIOptions, t.signAudience)
		})
	})
	return t
}

// get returns a token valid for at least tokenRefreshBefore.
func (t *tokens) get(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if t.token != "" && now.Add(tokenRefreshBefore).Before(t.expires) {
		return t.token, nil
	}
	expires := now.Add(tokenLifetime)
	if t.creds != nil {
		// A presigned request dies with the credentials that signed it.
		c, err := t.creds.Retrieve(ctx)
		if err != nil {
			return "", fmt.Errorf("fanout client: AWS credentials: %w", err)
		}
		if c.CanExpire && c.Expires.Before(expires) {
			expires = c.Expires
		}
	}
	req, err := t.presign.PresignGetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return "", fmt.Errorf("fanout client: presign sts:GetCallerIdentity: %w", err)
	}
	t.token, t.expires = auth.EncodeToken(req.URL), expires
	return t.token, nil
}

// signAudience adds to the presigned request what fanout requires signed:
// the audience header and the validity (the SDK's presigner sets none).
func (t *tokens) signAudience(stack *middleware.Stack) error {
	return stack.Build.Add(middleware.BuildMiddlewareFunc("fanout:Audience", func(ctx context.Context, in middleware.BuildInput, next middleware.BuildHandler) (middleware.BuildOutput, middleware.Metadata, error) {
		if req, ok := in.Request.(*smithyhttp.Request); ok {
			req.Header.Set(auth.AudienceHeader, t.audience)
			q := req.URL.Query()
			q.Set("X-Amz-Expires", strconv.Itoa(int(tokenLifetime/time.Second)))
			req.URL.RawQuery = q.Encode()
		}
		return next.HandleBuild(ctx, in)
	}), middleware.After)
}
