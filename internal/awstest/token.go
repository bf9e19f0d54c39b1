package awstest

import (
	"encoding/base64"
	"net/url"
	"strings"
	"testing"

	"github.com/fanout/fanout/auth"
)

// EditToken decodes a fanout bearer token, lets edit change its presigned
// URL, and encodes it again: for tokens that are wrong in one way.
func EditToken(tb testing.TB, token string, edit func(*url.URL)) string {
	tb.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(token, auth.TokenPrefix))
	if err != nil {
		tb.Fatalf("not a fanout token: %v", err)
	}
	u, err := url.Parse(string(raw))
	if err != nil {
		tb.Fatalf("token URL: %v", err)
	}
	edit(u)
	return auth.EncodeToken(u.String())
}

// SetParam is an edit for EditToken that sets query parameter k to v.
func SetParam(k, v string) func(*url.URL) {
	return func(u *url.URL) {
		q := u.Query()
		q.Set(k, v)
		u.RawQuery = q.Encode()
	}
}

// FlipSignature is an edit for EditToken that changes one character of
// the signature.
func FlipSignature(u *url.URL) {
	sig := []byte(u.Query().Get("X-Amz-Signature"))
	sig[0] ^= 1
	SetParam("X-Amz-Signature", string(sig))(u)
}
