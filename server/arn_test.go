package server

import (
	"net/http"
	"strings"
	"testing"
)

func TestValidateResourceARN(t *testing.T) {
	t.Parallel()
	name64 := strings.Repeat("a", 64)
	path512 := "/" + strings.Repeat("p", 510) + "/"
	valid := []string{
		"arn:aws:iam::123456789012:root",
		"arn:aws-cn:iam::123456789012:root",
		"arn:aws-us-gov:iam::123456789012:root",
		"arn:aws:iam::123456789012:role/name",
		"arn:aws:iam::123456789012:role/Name_with+all=the,allowed.chars@-",
		"arn:aws:iam::123456789012:role/service-role/MyRole",
		"arn:aws:iam::123456789012:role/aws-service-role/sqs.amazonaws.com/AWSServiceRoleForSQS",
		"arn:aws:iam::123456789012:role/" + name64,
		"arn:aws:iam::123456789012:role" + path512 + "r",
		"arn:aws:iam::123456789012:role/a/b/c/d/r",
		"arn:aws:iam::123456789012:user/alice",
		"arn:aws:iam::123456789012:user/division_abc/subdivision_xyz/Bob",
		"arn:aws:iam::123456789012:user/" + name64,
		"arn:aws-us-gov:iam::000000000000:user/x",
		"arn:aws:iam::123456789012:role/path~with!printable#chars$/r",
	}
	for _, arn := range valid {
		if err := validateResourceARN(arn); err != nil {
			t.Errorf("validateResourceARN(%q) = %v, want nil", arn, err)
		}
	}

	invalid := []struct {
		arn  string
		want string // part of the message
	}{
		{"", "resourceArn is required"},
		{"role/name", "six colon-separated fields"},
		{"123456789012", "six colon-separated fields"},
		{"arn:aws:iam::123456789012", "six colon-separated fields"},
		{"ARN:aws:iam::123456789012:root", "six colon-separated fields"},
		{" arn:aws:iam::123456789012:root", "six colon-separated fields"},
		{"urn:aws:iam::123456789012:root", "six colon-separated fields"},
		{"arn:aws-iso:iam::123456789012:root", "partition must be aws, aws-cn or aws-us-gov"},
		{"arn::iam::123456789012:root", "partition must be"},
		{"arn:AWS:iam::123456789012:root", "partition must be"},
		{"arn:aws:sts::123456789012:assumed-role/r/session", "STS session ARNs"},
		{"arn:aws:sts::123456789012:federated-user/bob", "STS session ARNs"},
		{"arn:aws:s3:::bucket", "service must be iam"},
		{"arn:aws:sqs:us-east-1:123456789012:q", "service must be iam"},
		{"arn:aws:iam:us-east-1:123456789012:role/r", "region field must be empty"},
		{"arn:aws:iam::12345678901:role/r", "account must be 12 digits"},
		{"arn:aws:iam::1234567890123:role/r", "account must be 12 digits"},
		{"arn:aws:iam::12345678901a:role/r", "account must be 12 digits"},
		{"arn:aws:iam:::role/r", "account must be 12 digits"},
		{"arn:aws:iam::*:role/r", "account must be 12 digits"},
		{"arn:aws:iam::123456789012:group/admins", "must end in root, user/<name> or role/<name>"},
		{"arn:aws:iam::123456789012:policy/p", "must end in root"},
		{"arn:aws:iam::123456789012:instance-profile/p", "must end in root"},
		{"arn:aws:iam::123456789012:Root", "must end in root"},
		{"arn:aws:iam::123456789012:root/x", "must end in root"},
		{"arn:aws:iam::123456789012:*", "must end in root"},
		{"arn:aws:iam::123456789012:", "must end in root"},
		{"arn:aws:iam::123456789012:role", "role name must be 1 to 64"},
		{"arn:aws:iam::123456789012:role/", "role name must be 1 to 64"},
		{"arn:aws:iam::123456789012:role/path/", "role name must be 1 to 64"},
		{"arn:aws:iam::123456789012:role/*", "role name must be 1 to 64"},
		{"arn:aws:iam::123456789012:role/na*me", "role name must be 1 to 64"},
		{"arn:aws:iam::123456789012:role/name with space", "role name must be 1 to 64"},
		{"arn:aws:iam::123456789012:role/näme", "role name must be 1 to 64"},
		{"arn:aws:iam::123456789012:role/" + name64 + "a", "role name must be 1 to 64"},
		{"arn:aws:iam::123456789012:user/" + name64 + "a", "user name must be 1 to 64"},
		{"arn:aws:iam::123456789012:user/a:b", "user name must be 1 to 64"},
		{"arn:aws:iam::123456789012:role//r", "role path must start and end with /"},
		{"arn:aws:iam::123456789012:role/*/r", "role path"},
		{"arn:aws:iam::123456789012:role/a?/r", "role path"},
		{"arn:aws:iam::123456789012:role/a b/r", "role path"},
		{"arn:aws:iam::123456789012:role" + path512 + "x/r", "role path"},
		{"arn:aws:iam::123456789012:user/pa\tth/u", "user path"},
	}
	for _, tc := range invalid {
		err := validateResourceARN(tc.arn)
		if err == nil {
			t.Errorf("validateResourceARN(%q) = nil, want an error containing %q", tc.arn, tc.want)
			continue
		}
		ae, ok := err.(*apiError)
		if !ok || ae.status != http.StatusBadRequest {
			t.Errorf("validateResourceARN(%q) = %#v, want a 400 *apiError", tc.arn, err)
			continue
		}
		if !strings.Contains(ae.msg, tc.want) {
			t.Errorf("validateResourceARN(%q) = %q, want it to contain %q", tc.arn, ae.msg, tc.want)
		}
		if tc.arn != "" && !strings.HasPrefix(ae.msg, arnHint) {
			t.Errorf("validateResourceARN(%q) = %q, want it to start with %q", tc.arn, ae.msg, arnHint)
		}
	}
}
