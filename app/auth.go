package app

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"go.uber.org/zap"

	"github.com/fanout/fanout/auth"
	"github.com/fanout/fanout/server"
)

// FANOUT_AUTH values.
const (
	// AuthIAM: callers authenticate with their AWS credentials (the default
	// of the production binary: an API without it lets anyone act as anyone).
	AuthIAM = "iam"
	// AuthNone: no authentication; must be asked for explicitly.
	AuthNone = "none"
)

// defaultAudience is auth.DefaultAudience: the client's default too.
const defaultAudience = auth.DefaultAudience

// validAudience keeps the audience a plain header value.
var validAudience = regexp.MustCompile(`^[A-Za-z0-9._:/-]{1,128}$`)

// readAuth reads FANOUT_AUTH, FANOUT_AUDIENCE and FANOUT_ADMINS into c and
// returns what is wrong with them.
func readAuth(getenv func(string) string, c *Config) []error {
	var errs []error
	c.Auth = strings.TrimSpace(getenv("FANOUT_AUTH"))
	switch c.Auth {
	case "":
		c.Auth = AuthIAM
	case AuthIAM, AuthNone:
	default:
		errs = append(errs, fmt.Errorf("FANOUT_AUTH=%q: use iam (callers authenticate with AWS credentials) or none (no authentication)", c.Auth))
	}
	c.Audience = strings.TrimSpace(getenv("FANOUT_AUDIENCE"))
	if c.Audience == "" {
		c.Audience = defaultAudience
	}
	if !validAudience.MatchString(c.Audience) {
		errs = append(errs, fmt.Errorf("FANOUT_AUDIENCE=%q: use 1 to 128 of A-Z a-z 0-9 . _ : / -", c.Audience))
	}
	c.Admins = nil
	for a := range strings.SplitSeq(getenv("FANOUT_ADMINS"), ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if _, err := adminPrincipal(a); err != nil {
			errs = append(errs, fmt.Errorf("FANOUT_ADMINS: %w", err))
			continue
		}
		c.Admins = append(c.Admins, a)
	}
	return errs
}

// adminPrincipal parses an admin ARN: an IAM role, user or account root
// (a session ARN names one session, not who may act).
func adminPrincipal(arn string) (auth.Principal, error) {
	p, err := auth.ParsePrincipal(arn)
	if err != nil {
		return auth.Principal{}, err
	}
	if strings.Contains(arn, ":sts:") {
		return auth.Principal{}, fmt.Errorf("%q is a session ARN; name its role, arn:%s:iam::%s:role/%s", arn, p.Partition, p.Account, p.Name)
	}
	return p, nil
}

// newAuth is the server's authentication for cfg: a verifier over fanout's
// own STS endpoint, or none (with a warning) for FANOUT_AUTH=none.
func newAuth(ctx context.Context, cfg Config, awsCfg aws.Config, log *zap.Logger) (server.Auth, error) {
	if cfg.Auth == AuthNone {
		log.Warn("FANOUT_AUTH=none: the API authenticates no one; anyone who can reach it may register, subscribe to and publish as any agent")
		return server.Auth{}, nil
	}
	v, err := auth.NewVerifier(ctx, awsCfg, cfg.Audience)
	if err != nil {
		return server.Auth{}, fmt.Errorf("FANOUT_AUTH=iam: %w", err)
	}
	a := server.Auth{Verifier: v}
	for _, arn := range cfg.Admins {
		p, err := adminPrincipal(arn)
		if err != nil {
			return server.Auth{}, fmt.Errorf("FANOUT_ADMINS: %w", err)
		}
		a.Admins = append(a.Admins, p)
	}
	log.Info("callers authenticate with IAM", zap.String("audience", cfg.Audience), zap.Strings("admins", cfg.Admins))
	return a, nil
}
