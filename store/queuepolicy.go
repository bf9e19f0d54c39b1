package store

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// The queue policy document, built from structs so that no ARN can change
// its structure.
type (
	policyDocument struct {
		Version   string
		Statement []policyStatement
	}
	policyStatement struct {
		Sid       string
		Effect    string
		Principal policyPrincipal
		Action    []string
		Resource  string
		// Condition maps an operator to a condition key and its value.
		Condition map[string]map[string]string `json:",omitempty"`
	}
	policyPrincipal struct {
		AWS string
	}
)

// readActions are what only the agent may do with its queue's messages.
var readActions = []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"}

// queuePolicy makes queue name in account the agent's alone: it lets the
// principal resourceARN receive and delete messages, change their
// visibility, read the queue's attributes and find its URL, and it denies
// the reading actions to every other principal explicitly, whatever their
// own IAM policies grant (an allow alone would let any identity of the
// queue's account with sqs:ReceiveMessage on * read it). The deny matches
// on aws:PrincipalArn, which for an assumed-role session is its role's
// ARN; for an account root agent it matches on aws:PrincipalAccount, as
// the root ARN in a policy stands for the whole account. Sending is not
// denied: fanout's task role sends through its own IAM policy. The
// policy's Resource is the queue's exact ARN, as SQS requires. The error is
// a *PrincipalError when resourceARN is in another partition than account:
// no queue policy can grant it.
func queuePolicy(account Account, resourceARN, name string) (string, error) {
	if p := arnPartition(resourceARN); p != account.Partition {
		return "", &PrincipalError{Msg: fmt.Sprintf(
			"principal %s is in partition %s but fanout runs in partition %s: use an IAM role, user or account of partition %s",
			resourceARN, p, account.Partition, account.Partition)}
	}
	queueARN := fmt.Sprintf("arn:%s:sqs:%s:%s:%s", account.Partition, account.Region, account.ID, name)
	others := map[string]string{"aws:PrincipalArn": resourceARN}
	if rootAccount, ok := rootOf(resourceARN); ok {
		others = map[string]string{"aws:PrincipalAccount": rootAccount}
	}
	b, err := json.Marshal(policyDocument{
		Version: "2012-10-17",
		Statement: []policyStatement{{
			Sid:       "AgentReads",
			Effect:    "Allow",
			Principal: policyPrincipal{AWS: resourceARN},
			Action:    append(slices.Clone(readActions), "sqs:GetQueueAttributes", "sqs:GetQueueUrl"),
			Resource:  queueARN,
		}, {
			Sid:       "NoOneElseReads",
			Effect:    "Deny",
			Principal: policyPrincipal{AWS: "*"},
			Action:    readActions,
			Resource:  queueARN,
			Condition: map[string]map[string]string{"StringNotEquals": others},
		}},
	})
	return string(b), err
}

// rootOf is the account of an account root ARN (arn:<p>:iam::<account>:root).
func rootOf(arn string) (string, bool) {
	parts := strings.Split(arn, ":")
	if len(parts) != 6 || parts[5] != "root" {
		return "", false
	}
	return parts[4], true
}

// arnPartition is the partition field of arn, "" when it has none.
func arnPartition(arn string) string {
	parts := strings.SplitN(arn, ":", 3)
	if len(parts) < 3 {
		return ""
	}
	return parts[1]
}
