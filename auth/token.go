// Package auth is fanout's caller identity: the bearer token a caller
// proves its IAM principal with (a presigned sts:GetCallerIdentity request,
// the scheme of the EKS IAM authenticator and Vault's AWS auth method), its
// verification against STS, and the principal it stands for.
package auth

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The token contract, fixed: other clients implement it.
const (
	// TokenPrefix starts every token; the version lets the format change.
	TokenPrefix = "fanout-v1."
	// AudienceHeader is the header every token must sign: its value is the
	// deployment's audience, so a token minted for one deployment cannot
	// be replayed against another.
	AudienceHeader = "x-fanout-audience"
	// DefaultAudience is the audience of a deployment that sets none.
	DefaultAudience = "fanout"
	// MaxExpires is the longest validity a token may ask for (X-Amz-Expires).
	MaxExpires = 15 * time.Minute
)

// maxTokenLen bounds a token: a presigned URL with a session token is about
// 2 KiB, base64 makes it 2.7; anything near this is not a token.
const maxTokenLen = 8 << 10

// amzDateLayout is SigV4's X-Amz-Date.
const amzDateLayout = "20060102T150405Z"

// tokenParams are the query parameters a token's URL holds, no others:
// every one of them is required but the session token (temporary
// credentials only). Refusing any other parameter keeps a caller from
// smuggling a second action or a parameter STS would act on.
var tokenParams = map[string]bool{
	"Action": true, "Version": true,
	"X-Amz-Algorithm": true, "X-Amz-Credential": true, "X-Amz-Date": true,
	"X-Amz-Expires": true, "X-Amz-SignedHeaders": true, "X-Amz-Signature": true,
	"X-Amz-Security-Token": false,
}

// validRegion is what a region in a credential scope looks like
// (us-east-1, us-gov-west-1, cn-north-1); it becomes part of a host name.
var validRegion = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$`)

// Token is a parsed bearer token: a presigned GET of
// sts:GetCallerIdentity, not yet verified.
type Token struct {
	// Scheme and Host are where the URL points (Host with its port, if
	// any); the verifier sends it only when they are its STS endpoint's.
	Scheme, Host string
	// Query is the URL's query, exactly the parameters checked.
	Query url.Values
	// Region is the credential scope's region: the STS region it was signed for.
	Region string
	// Expires is when STS stops accepting it.
	Expires time.Time
}

// Error is a token or identity that fanout refuses. Msg says what is
// wrong and how to get a good token; it never holds the token.
type Error struct {
	Msg string
	// Identified: STS vouched for the caller, but its identity cannot act
	// in fanout (403, not 401).
	Identified bool
}

func (e *Error) Error() string { return e.Msg }

func refuse(format string, args ...any) error {
	return &Error{Msg: fmt.Sprintf(format, args...)}
}

// EncodeToken is the bearer token of a presigned GetCallerIdentity URL.
func EncodeToken(presignedURL string) string {
	return TokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(presignedURL))
}

// ParseToken parses the bearer token s and checks its form: the URL is a
// GET of Action=GetCallerIdentity&Version=2011-06-15 at path "/", signed
// with AWS4-HMAC-SHA256 for service sts, with exactly the headers host and
// x-fanout-audience signed, X-Amz-Expires from 1 to 900 seconds, and no
// other parameter. It does not check the host (the verifier does, against
// its STS endpoint), the signature (STS does) or the expiry. The error is
// an *Error saying what is wrong.
func ParseToken(s string) (Token, error) {
	const howTo = "; mint a token with the fanout Go client (package client) or see the README's Authentication section"
	if len(s) > maxTokenLen {
		return Token{}, refuse("bearer token is longer than %d bytes%s", maxTokenLen, howTo)
	}
	enc, ok := strings.CutPrefix(s, TokenPrefix)
	if !ok {
		return Token{}, refuse("bearer token must start with %q%s", TokenPrefix, howTo)
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return Token{}, refuse("bearer token is not base64url without padding after %q%s", TokenPrefix, howTo)
	}
	u, err := url.Parse(string(raw))
	switch {
	case err != nil:
		return Token{}, refuse("bearer token does not hold a URL%s", howTo)
	case u.Scheme != "https" && u.Scheme != "http", u.Host == "", u.Opaque != "":
		return Token{}, refuse("bearer token's URL must be an absolute http(s) URL of STS%s", howTo)
	case u.User != nil, u.Fragment != "", u.RawFragment != "":
		return Token{}, refuse("bearer token's URL must have no user info or fragment%s", howTo)
	case u.Path != "/" && u.Path != "":
		return Token{}, refuse("bearer token's URL must have path /, not %q%s", u.Path, howTo)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Token{}, refuse("bearer token's URL has a malformed query%s", howTo)
	}
	for k, v := range q {
		if _, known := tokenParams[k]; !known {
			return Token{}, refuse("bearer token's URL has parameter %q; only a presigned GetCallerIdentity is accepted%s", k, howTo)
		}
		if len(v) != 1 {
			return Token{}, refuse("bearer token's URL has parameter %q %d times%s", k, len(v), howTo)
		}
	}
	for k, required := range tokenParams {
		if required && q.Get(k) == "" {
			return Token{}, refuse("bearer token's URL lacks %s%s", k, howTo)
		}
	}
	if q.Get("Action") != "GetCallerIdentity" || q.Get("Version") != "2011-06-15" {
		return Token{}, refuse("bearer token's URL must be Action=GetCallerIdentity&Version=2011-06-15%s", howTo)
	}
	if q.Get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" {
		return Token{}, refuse("bearer token must be signed with AWS4-HMAC-SHA256%s", howTo)
	}
	if signed := strings.Split(q.Get("X-Amz-SignedHeaders"), ";"); !slices.Equal(signed, []string{"host", AudienceHeader}) {
		return Token{}, refuse("bearer token must sign exactly the headers host and %s (X-Amz-SignedHeaders=host;%s)%s", AudienceHeader, AudienceHeader, howTo)
	}
	region, err := credentialRegion(q.Get("X-Amz-Credential"))
	if err != nil {
		return Token{}, refuse("bearer token's X-Amz-Credential: %v%s", err, howTo)
	}
	date, err := time.Parse(amzDateLayout, q.Get("X-Amz-Date"))
	if err != nil {
		return Token{}, refuse("bearer token's X-Amz-Date must be like 20250701T120000Z%s", howTo)
	}
	secs, err := strconv.Atoi(q.Get("X-Amz-Expires"))
	if err != nil || secs < 1 || time.Duration(secs)*time.Second > MaxExpires {
		return Token{}, refuse("bearer token's X-Amz-Expires must be 1 to %d seconds%s", int(MaxExpires/time.Second), howTo)
	}
	return Token{
		Scheme:  u.Scheme,
		Host:    u.Host,
		Query:   q,
		Region:  region,
		Expires: date.Add(time.Duration(secs) * time.Second),
	}, nil
}

// credentialRegion is the region of a SigV4 credential
// <key>/<yyyymmdd>/<region>/sts/aws4_request.
func credentialRegion(cred string) (string, error) {
	parts := strings.Split(cred, "/")
	if len(parts) != 5 || parts[0] == "" || len(parts[1]) != 8 || parts[3] != "sts" || parts[4] != "aws4_request" {
		return "", fmt.Errorf("want <access key>/<date>/<region>/sts/aws4_request")
	}
	if !validRegion.MatchString(parts[2]) {
		return "", fmt.Errorf("region %q is not an AWS region", parts[2])
	}
	return parts[2], nil
}
