package auth

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// rawURL is a well-formed presigned GetCallerIdentity URL for host and
// region (its signature is not real: ParseToken does not check it).
func rawURL(host, region string) string {
	q := url.Values{
		"Action": {"GetCallerIdentity"}, "Version": {"2011-06-15"},
		"X-Amz-Algorithm":     {"AWS4-HMAC-SHA256"},
		"X-Amz-Credential":    {"AKIAEXAMPLE/20250701/" + region + "/sts/aws4_request"},
		"X-Amz-Date":          {time.Now().UTC().Format(amzDateLayout)},
		"X-Amz-Expires":       {"900"},
		"X-Amz-SignedHeaders": {"host;x-fanout-audience"},
		"X-Amz-Signature":     {"0123456789abcdef"},
	}
	return "https://" + host + "/?" + q.Encode()
}

func TestParseToken(t *testing.T) {
	t.Parallel()
	good := rawURL("sts.eu-west-1.amazonaws.com", "eu-west-1")
	tok, err := ParseToken(EncodeToken(good))
	if err != nil {
		t.Fatalf("ParseToken(good) = %v", err)
	}
	if tok.Host != "sts.eu-west-1.amazonaws.com" || tok.Region != "eu-west-1" || tok.Scheme != "https" {
		t.Errorf("token = %+v", tok)
	}
	if d := time.Until(tok.Expires); d < 14*time.Minute || d > 15*time.Minute {
		t.Errorf("expires in %s, want about 15 min", d)
	}

	edit := func(f func(q url.Values)) string {
		u, _ := url.Parse(good)
		q := u.Query()
		f(q)
		u.RawQuery = q.Encode()
		return EncodeToken(u.String())
	}
	for _, tc := range []struct {
		name, token, says string
	}{
		{"no prefix", "abc", `start with "fanout-v1."`},
		{"padding", EncodeToken(good) + "=", "base64url"},
		{"too long", TokenPrefix + strings.Repeat("A", maxTokenLen), "longer"},
		{"POST form", EncodeToken("https://sts.amazonaws.com/"), "lacks"},
		{"duplicate action", EncodeToken(good + "&Action=GetCallerIdentity"), "2 times"},
		{"other version", edit(func(q url.Values) { q.Set("Version", "2020-01-01") }), "Version=2011-06-15"},
		{"no audience signed", edit(func(q url.Values) { q.Set("X-Amz-SignedHeaders", "host") }), "x-fanout-audience"},
		{"more headers signed", edit(func(q url.Values) { q.Set("X-Amz-SignedHeaders", "host;x-amz-date;x-fanout-audience") }), "exactly"},
		{"sigv4a", edit(func(q url.Values) { q.Set("X-Amz-Algorithm", "AWS4-ECDSA-P256-SHA256") }), "AWS4-HMAC-SHA256"},
		{"other service", edit(func(q url.Values) { q.Set("X-Amz-Credential", "AKIA/20250701/us-east-1/iam/aws4_request") }), "Credential"},
		{"region with dots", edit(func(q url.Values) { q.Set("X-Amz-Credential", "AKIA/20250701/evil.example/sts/aws4_request") }), "not an AWS region"},
		{"expires 0", edit(func(q url.Values) { q.Set("X-Amz-Expires", "0") }), "1 to 900"},
		{"expires 3600", edit(func(q url.Values) { q.Set("X-Amz-Expires", "3600") }), "1 to 900"},
		{"bad date", edit(func(q url.Values) { q.Set("X-Amz-Date", "yesterday") }), "X-Amz-Date"},
		{"user info", EncodeToken(strings.Replace(good, "https://", "https://me@", 1)), "user info"},
		{"fragment", EncodeToken(good + "#x"), "fragment"},
		{"relative", EncodeToken(strings.TrimPrefix(good, "https://sts.eu-west-1.amazonaws.com")), "absolute"},
		{"file scheme", EncodeToken(strings.Replace(good, "https://", "file://", 1)), "absolute"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseToken(tc.token)
			ae, ok := errors.AsType[*Error](err)
			if !ok {
				t.Fatalf("ParseToken = %v, want *Error", err)
			}
			if !strings.Contains(ae.Msg, tc.says) {
				t.Errorf("message %q does not say %q", ae.Msg, tc.says)
			}
		})
	}
}

// FuzzParseToken: ParseToken never panics, and whatever it accepts is a
// GET of GetCallerIdentity at path / whose every parameter is known and
// single, with a sane region and a validity of at most 15 minutes.
func FuzzParseToken(f *testing.F) {
	for _, s := range []string{
		EncodeToken(rawURL("sts.us-east-1.amazonaws.com", "us-east-1")),
		EncodeToken(rawURL("127.0.0.1:4566", "us-east-1")),
		EncodeToken(rawURL("sts.amazonaws.com", "us-east-1") + "&X-Amz-Security-Token=abc"),
		EncodeToken("https://sts.amazonaws.com/?Action=GetCallerIdentity"),
		TokenPrefix, TokenPrefix + "%%%", "", "Bearer x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			if _, ok := errors.AsType[*Error](err); !ok {
				t.Fatalf("ParseToken error %T %v, want *Error", err, err)
			}
			return
		}
		if tok.Query.Get("Action") != "GetCallerIdentity" || tok.Host == "" || !validRegion.MatchString(tok.Region) {
			t.Fatalf("accepted %+v", tok)
		}
		for k, v := range tok.Query {
			if _, ok := tokenParams[k]; !ok || len(v) != 1 {
				t.Fatalf("accepted parameter %q = %q", k, v)
			}
		}
		if d := tok.Expires.Sub(mustDate(t, tok)); d <= 0 || d > MaxExpires {
			t.Fatalf("accepted validity past %s", MaxExpires)
		}
	})
}

func mustDate(t *testing.T, tok Token) time.Time {
	t.Helper()
	d, err := time.Parse(amzDateLayout, tok.Query.Get("X-Amz-Date"))
	if err != nil {
		t.Fatalf("accepted X-Amz-Date %q", tok.Query.Get("X-Amz-Date"))
	}
	return d
}

// TestSTSHosts: without an endpoint override, tokens pass for the regional
// STS hosts of fanout's partition and, signed for us-east-1, the global
// host; any other host is refused before a connection is made.
func TestSTSHosts(t *testing.T) {
	t.Parallel()
	v, err := NewVerifier(context.Background(), aws.Config{Region: "eu-west-1"}, DefaultAudience)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host, region, want string // want "" = refused
	}{
		{"sts.eu-west-1.amazonaws.com", "eu-west-1", "eu-west-1"},
		{"sts.us-east-2.amazonaws.com", "us-east-2", "us-east-2"},
		{"sts.amazonaws.com", "us-east-1", "aws-global"},
		{"sts.amazonaws.com", "eu-west-1", ""},
		{"sts.us-east-2.amazonaws.com", "eu-west-1", ""},
		{"sts.eu-west-1.amazonaws.com.evil.example", "eu-west-1", ""},
		{"sts.eu-west-1.amazonaws.com:8443", "eu-west-1", ""},
		{"sts.cn-north-1.amazonaws.com.cn", "cn-north-1", ""},
		{"169.254.169.254", "eu-west-1", ""},
	} {
		tok, err := ParseToken(EncodeToken(rawURL(tc.host, tc.region)))
		if err != nil {
			t.Fatalf("%s: %v", tc.host, err)
		}
		got, err := v.stsRegion(tok)
		if got != tc.want || (tc.want == "") != (err != nil) {
			t.Errorf("host %s region %s: stsRegion = %q, %v; want %q", tc.host, tc.region, got, err, tc.want)
		}
		if got == "" {
			continue
		}
		// The SDK must resolve that region to the token's host, or the
		// replay refuses to send it.
		ep, err := v.sts.Options().EndpointResolverV2.ResolveEndpoint(context.Background(), sts.EndpointParameters{Region: aws.String(got)})
		if err != nil || ep.URI.Host != tc.host {
			t.Errorf("region %s resolves to %v, %v; want host %s", got, ep.URI, err, tc.host)
		}
	}
	http, _ := ParseToken(EncodeToken(strings.Replace(rawURL("sts.eu-west-1.amazonaws.com", "eu-west-1"), "https:", "http:", 1)))
	if _, err := v.stsRegion(http); err == nil {
		t.Error("plain http to AWS's STS host accepted")
	}
}

func TestParsePrincipal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		arn  string
		want Principal // ARN not compared
		bad  bool
	}{
		{arn: "arn:aws:sts::111122223333:assumed-role/deployer/i-0abc", want: Principal{Kind: Role, Partition: "aws", Account: "111122223333", Name: "deployer"}},
		{arn: "arn:aws:iam::111122223333:role/team/a/deployer", want: Principal{Kind: Role, Partition: "aws", Account: "111122223333", Name: "deployer"}},
		{arn: "arn:aws:iam::111122223333:user/ops/alice", want: Principal{Kind: User, Partition: "aws", Account: "111122223333", Name: "alice"}},
		{arn: "arn:aws-cn:iam::111122223333:root", want: Principal{Kind: Account, Partition: "aws-cn", Account: "111122223333"}},
		{arn: "arn:aws:sts::111122223333:federated-user/bob", bad: true},
		{arn: "arn:aws:sts::111122223333:assumed-role/deployer", bad: true},
		{arn: "arn:aws:iam::111122223333:group/admins", bad: true},
		{arn: "arn:aws:iam::11112222333:root", bad: true},
		{arn: "arn:aws:iam::111122223333:role/", bad: true},
		{arn: "*", bad: true},
	} {
		got, err := ParsePrincipal(tc.arn)
		if tc.bad {
			if err == nil {
				t.Errorf("ParsePrincipal(%s) = %+v, want an error", tc.arn, got)
			}
			continue
		}
		got.ARN = ""
		if err != nil || got != tc.want {
			t.Errorf("ParsePrincipal(%s) = %+v, %v; want %+v", tc.arn, got, err, tc.want)
		}
	}
	session, _ := ParsePrincipal("arn:aws:sts::111122223333:assumed-role/deployer/s")
	for arn, want := range map[string]bool{
		"arn:aws:iam::111122223333:role/deployer":          true,
		"arn:aws:iam::111122223333:role/any/path/deployer": true,
		"arn:aws:iam::111122223333:role/deployer2":         false,
		"arn:aws:iam::444455556666:role/deployer":          false,
		"arn:aws:iam::111122223333:user/deployer":          false,
		"arn:aws:iam::111122223333:root":                   false,
		"arn:aws-us-gov:iam::111122223333:role/deployer":   false,
	} {
		if got := session.MatchesARN(arn); got != want {
			t.Errorf("assumed-role deployer matches %s = %v, want %v", arn, got, want)
		}
	}
}
