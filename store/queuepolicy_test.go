package store

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestQueuePolicy: the document allows the agent's principal to read its
// queue and denies reading to every other principal, by principal ARN (or
// account, for an account root agent), leaving sending alone.
func TestQueuePolicy(t *testing.T) {
	t.Parallel()
	allow := `{"Sid":"AgentReads","Effect":"Allow","Principal":{"AWS":%q},` +
		`"Action":["sqs:ReceiveMessage","sqs:DeleteMessage","sqs:ChangeMessageVisibility","sqs:GetQueueAttributes","sqs:GetQueueUrl"],"Resource":%q}`
	deny := `{"Sid":"NoOneElseReads","Effect":"Deny","Principal":{"AWS":"*"},` +
		`"Action":["sqs:ReceiveMessage","sqs:DeleteMessage","sqs:ChangeMessageVisibility"],"Resource":%q,` +
		`"Condition":{"StringNotEquals":{%q:%q}}}`
	// Go's %q quotes these strings as JSON does.
	doc := func(principal, queueARN, key, value string) string {
		return `{"Version":"2012-10-17","Statement":[` + fmt.Sprintf(allow, principal, queueARN) + "," + fmt.Sprintf(deny, queueARN, key, value) + `]}`
	}
	cn := Account{Partition: "aws-cn", Region: "cn-north-1", ID: "111122223333"}
	gov := Account{Partition: "aws-us-gov", Region: "us-gov-west-1", ID: "444455556666"}
	const queue = "arn:aws:sqs:us-east-1:000000000000:agents-x.fifo"
	for _, tc := range []struct {
		account Account
		arn     string
		want    string // the policy; "" when the principal is refused
		wantErr string // part of the refusal's message
	}{
		{
			account: testAccount,
			arn:     "arn:aws:iam::123456789012:role/worker",
			want:    doc("arn:aws:iam::123456789012:role/worker", queue, "aws:PrincipalArn", "arn:aws:iam::123456789012:role/worker"),
		},
		{
			account: cn,
			arn:     "arn:aws-cn:iam::123456789012:user/path/alice",
			want: doc("arn:aws-cn:iam::123456789012:user/path/alice", "arn:aws-cn:sqs:cn-north-1:111122223333:agents-x.fifo",
				"aws:PrincipalArn", "arn:aws-cn:iam::123456789012:user/path/alice"),
		},
		{
			// The root ARN stands for its account: the deny spares the
			// account's principals, not the root user alone.
			account: gov,
			arn:     "arn:aws-us-gov:iam::123456789012:root",
			want: doc("arn:aws-us-gov:iam::123456789012:root", "arn:aws-us-gov:sqs:us-gov-west-1:444455556666:agents-x.fifo",
				"aws:PrincipalAccount", "123456789012"),
		},
		{
			// Quotes in a principal cannot break out of the string.
			account: testAccount,
			arn:     `arn:aws:iam::123456789012:role/a"b`,
			want:    doc(`arn:aws:iam::123456789012:role/a"b`, queue, "aws:PrincipalArn", `arn:aws:iam::123456789012:role/a"b`),
		},
		{
			account: testAccount,
			arn:     "arn:aws-cn:iam::123456789012:role/worker",
			wantErr: "principal arn:aws-cn:iam::123456789012:role/worker is in partition aws-cn but fanout runs in partition aws",
		},
		{
			account: gov,
			arn:     "arn:aws:iam::123456789012:root",
			wantErr: "is in partition aws but fanout runs in partition aws-us-gov",
		},
	} {
		got, err := queuePolicy(tc.account, tc.arn, "agents-x.fifo")
		if tc.wantErr != "" {
			pe, ok := errors.AsType[*PrincipalError](err)
			if !ok || !errors.Is(err, ErrInvalidPrincipal) || !strings.Contains(pe.Msg, tc.wantErr) {
				t.Errorf("queuePolicy(%+v, %q) = %q, %v; want a *PrincipalError (ErrInvalidPrincipal) saying %q", tc.account, tc.arn, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("queuePolicy(%+v, %q) =\n %s, %v\nwant\n %s", tc.account, tc.arn, got, err, tc.want)
		}
		if strings.Contains(got, "sqs:SendMessage") {
			t.Errorf("queue policy %s mentions sending: fanout's role must stay able to send", got)
		}
	}
}
