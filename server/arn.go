package server

import (
	"strings"

	"github.com/fanout/fanout/auth"
)

// IAM limits on principal names (IAM API reference, CreateRole/CreateUser).
const (
	maxIAMNameLen = 64  // role and user names
	maxIAMPathLen = 512 // paths, with their leading and trailing "/"
)

// arnHint is the start of every message about a bad resourceArn.
const arnHint = "resourceArn must be an IAM role, user or account ARN (arn:aws:iam::123456789012:role/name)"

// validateResourceARN returns nil when arn names an IAM principal that an
// SQS queue policy can grant: an account root, a user or a role, in the
// aws, aws-cn or aws-us-gov partition. Otherwise it returns a 400 saying
// what is wrong. Wildcards, groups, STS session ARNs and any other
// resource type are refused: AWS rejects a queue policy that names them
// (or, for wildcards, grants more than one principal).
func validateResourceARN(arn string) error {
	if arn == "" {
		return badRequest("resourceArn is required")
	}
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" {
		return badRequest("%s; it must have six colon-separated fields starting with \"arn\"", arnHint)
	}
	partition, service, region, account, resource := parts[1], parts[2], parts[3], parts[4], parts[5]
	switch partition {
	case "aws", "aws-cn", "aws-us-gov":
	default:
		return badRequest("%s; the partition must be aws, aws-cn or aws-us-gov", arnHint)
	}
	if service == "sts" {
		return badRequest("%s; STS session ARNs (assumed-role, federated-user) are temporary: use the role's ARN arn:%s:iam::<account>:role/<name>", arnHint, partition)
	}
	if service != "iam" {
		return badRequest("%s; the service must be iam, not %q", arnHint, service)
	}
	if region != "" {
		return badRequest("%s; IAM is global, so the region field must be empty", arnHint)
	}
	if !auth.IsAccountID(account) {
		return badRequest("%s; the account must be 12 digits", arnHint)
	}
	if resource == "root" {
		return nil
	}
	kind, rest, _ := strings.Cut(resource, "/")
	if kind != "role" && kind != "user" {
		return badRequest("%s; it must end in root, user/<name> or role/<name>", arnHint)
	}
	i := strings.LastIndexByte(rest, '/')
	path, name := "/"+rest[:i+1], rest[i+1:]
	if i >= 0 && !isIAMPath(path) {
		return badRequest("%s; the %s path must start and end with / and hold at most %d printable ASCII characters without wildcards", arnHint, kind, maxIAMPathLen)
	}
	if !isIAMName(name) {
		return badRequest("%s; the %s name must be 1 to %d letters, digits or any of +=,.@_-", arnHint, kind, maxIAMNameLen)
	}
	return nil
}

// isIAMName reports whether s matches IAM's role and user name pattern
// [\w+=,.@-]{1,64}.
func isIAMName(s string) bool {
	if len(s) == 0 || len(s) > maxIAMNameLen {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("_+=,.@-", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// isIAMPath reports whether p matches IAM's path pattern, "/" or
// "/[\x21-\x7E]+/", at most 512 characters, less the wildcards * and ?
// that a policy principal cannot hold.
func isIAMPath(p string) bool {
	if p == "/" {
		return true
	}
	if len(p) < 3 || len(p) > maxIAMPathLen || !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") {
		return false
	}
	for _, c := range []byte(p) {
		if c < 0x21 || c > 0x7e || c == '*' || c == '?' {
			return false
		}
	}
	return true
}
