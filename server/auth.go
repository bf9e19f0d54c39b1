package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/fanout/fanout/auth"
	"github.com/fanout/fanout/store"
)

// Auth says who callers are and who may act for every agent. The zero Auth
// is FANOUT_AUTH=none: requests carry no identity and every caller may act
// for every agent.
type Auth struct {
	// Verifier checks bearer tokens; nil turns authentication off.
	Verifier verifier
	// Admins may act for any agent (FANOUT_ADMINS).
	Admins []auth.Principal
}

// verifier tells who signed a bearer token. *auth.Verifier satisfies it.
type verifier interface {
	// Verify returns the principal of token; the error is an *auth.Error
	// (401, or 403 when Identified) or wraps auth.ErrUnavailable (503).
	Verify(ctx context.Context, token string) (auth.Principal, error)
}

// howToAuthenticate ends every 401: where a caller gets a token.
const howToAuthenticate = "send Authorization: Bearer fanout-v1.<base64url of a presigned sts:GetCallerIdentity URL signing x-fanout-audience>; " +
	"the Go package github.com/fanout/fanout/client mints it from your AWS credentials (README: Authentication)"

// caller is who sent a request.
type caller struct {
	principal auth.Principal
	// admin: an admin, or authentication is off.
	admin bool
}

type callerKey struct{}

// callerOf is the caller authenticate found for the request of ctx.
func callerOf(ctx context.Context) caller {
	c, _ := ctx.Value(callerKey{}).(caller)
	return c
}

// name is how messages name the caller.
func (c caller) name() string {
	if c.principal.ARN == "" {
		return "an unauthenticated caller"
	}
	return c.principal.ARN
}

// authenticate finds the caller of every request it wraps: 401 without a
// good token, 503 when STS cannot say. The token is never logged.
func (h *api) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.auth.Verifier == nil {
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, caller{admin: true})))
			return
		}
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			h.unauthorized(w, r, "missing bearer token; "+howToAuthenticate)
			return
		}
		p, err := h.auth.Verifier.Verify(r.Context(), strings.TrimSpace(token))
		if ae, ok := errors.AsType[*auth.Error](err); ok {
			if ae.Identified {
				h.writeError(w, r, &apiError{status: http.StatusForbidden, msg: ae.Msg})
				return
			}
			h.unauthorized(w, r, ae.Msg)
			return
		}
		if errors.Is(err, auth.ErrUnavailable) {
			h.log.Warn("cannot verify a caller: STS unavailable", requestIDField(r.Context()), zap.Error(err))
			h.writeError(w, r, &apiError{status: http.StatusServiceUnavailable, msg: "cannot verify your identity now: STS is unavailable; retry later with the same token"})
			return
		}
		if err != nil {
			h.writeError(w, r, fmt.Errorf("verify caller: %w", err))
			return
		}
		c := caller{principal: p}
		for _, a := range h.auth.Admins {
			c.admin = c.admin || a.Matches(p)
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	})
}

func (h *api) unauthorized(w http.ResponseWriter, r *http.Request, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="fanout"`)
	h.writeError(w, r, &apiError{status: http.StatusUnauthorized, msg: msg})
}

// mayActFor returns nil when the caller of ctx may act as agent a (it is
// a's principal, or an admin), else a 403 saying who may do what.
func mayActFor(ctx context.Context, a store.Agent, what string) error {
	c := callerOf(ctx)
	if c.admin || c.principal.MatchesARN(a.ResourceARN) {
		return nil
	}
	return &apiError{status: http.StatusForbidden, msg: fmt.Sprintf(
		"you are %s; only agent %s's own principal %s (for a role: any session of it) or an admin (FANOUT_ADMINS) may %s",
		c.name(), a.ID, a.ResourceARN, what)}
}

// mayRegister returns nil when the caller of ctx may register resourceARN:
// its own principal, or anything for an admin.
func mayRegister(ctx context.Context, resourceARN string) error {
	c := callerOf(ctx)
	if c.admin || c.principal.MatchesARN(resourceARN) {
		return nil
	}
	own := c.principal.ARN
	if c.principal.Kind == auth.Role {
		own = fmt.Sprintf("arn:%s:iam::%s:role/%s (with the role's path, if it has one)", c.principal.Partition, c.principal.Account, c.principal.Name)
	}
	return &apiError{status: http.StatusForbidden, msg: fmt.Sprintf(
		"you are %s, so you may register only your own principal, %s; registering %s takes an admin (FANOUT_ADMINS)",
		c.name(), own, resourceARN)}
}
