package auth

import (
	"fmt"
	"strings"
)

// Kind is what a Principal is.
type Kind int

// Kinds of principal.
const (
	Account Kind = iota + 1 // arn:<p>:iam::<account>:root
	Role                    // a role, whatever session assumed it
	User                    // an IAM user
)

// Principal is a caller's IAM identity, canonicalised: an assumed-role
// session stands for its role (account and role name: the session ARN has
// no path, so any path of that role matches), a user for itself, an
// account root for the account. The zero Principal matches nothing.
type Principal struct {
	Kind      Kind
	Partition string
	Account   string
	// Name is the role or user name ("" for an account).
	Name string
	// ARN is the ARN the principal was parsed from (STS's answer, or a
	// configured ARN): what messages show.
	ARN string
}

// ParsePrincipal canonicalises arn, an ARN STS answers for a caller
// (assumed-role session, IAM user, account root) or an IAM principal ARN
// (role, user, root) as registered or configured. Federated users and
// other ARNs are refused: no agent or admin can be one.
func ParsePrincipal(arn string) (Principal, error) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[1] == "" || parts[3] != "" || !IsAccountID(parts[4]) {
		return Principal{}, fmt.Errorf("%q is not an IAM or STS principal ARN (arn:aws:iam::123456789012:role/name)", arn)
	}
	p := Principal{Partition: parts[1], Account: parts[4], ARN: arn}
	service, resource := parts[2], parts[5]
	kind, rest, _ := strings.Cut(resource, "/")
	switch {
	case service == "iam" && resource == "root":
		p.Kind = Account
		return p, nil
	case service == "iam" && (kind == "role" || kind == "user") && rest != "":
		p.Name = rest[strings.LastIndexByte(rest, '/')+1:]
		p.Kind = User
		if kind == "role" {
			p.Kind = Role
		}
	case service == "sts" && kind == "assumed-role":
		// assumed-role/<role name>/<session name>: role names hold no "/".
		name, session, ok := strings.Cut(rest, "/")
		if !ok || session == "" {
			return Principal{}, fmt.Errorf("%q: an assumed-role ARN is assumed-role/<role>/<session>", arn)
		}
		p.Kind, p.Name = Role, name
	default:
		return Principal{}, fmt.Errorf("%q is not a role, user, assumed-role session or account root; only those can act in fanout", arn)
	}
	if p.Name == "" {
		return Principal{}, fmt.Errorf("%q names no role or user", arn)
	}
	return p, nil
}

// Matches reports whether p and q are the same principal: the same
// partition, account and kind, and for a role or user the same name (a
// role's or user's path does not count: IAM names are unique in an
// account whatever their path).
func (p Principal) Matches(q Principal) bool {
	return p.Kind != 0 && p.Kind == q.Kind && p.Partition == q.Partition && p.Account == q.Account && p.Name == q.Name
}

// MatchesARN is Matches against the principal of arn; false when arn is
// not a principal ARN.
func (p Principal) MatchesARN(arn string) bool {
	q, err := ParsePrincipal(arn)
	return err == nil && p.Matches(q)
}

// IsAccountID reports whether s is an AWS account id: 12 digits.
func IsAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
