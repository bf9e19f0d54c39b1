package store

import (
	"encoding/json"
	"fmt"
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
		Effect    string
		Principal policyPrincipal
		Action    []string
		Resource  string
	}
	policyPrincipal struct {
		AWS string
	}
)

// queuePolicy lets exactly the principal resourceARN receive and delete
// messages of queue name in account, read its attributes and find its URL.
// The policy's Resource is the queue's exact ARN, as SQS requires. The
// error is a *PrincipalError when resourceARN is in another partition than
// account: no queue policy can grant it.
func queuePolicy(account Account, resourceARN, name string) (string, error) {
	if p := arnPartition(resourceARN); p != account.Partition {
		return "", &PrincipalError{Msg: fmt.Sprintf(
			"principal %s is in partition %s but fanout runs in partition %s: use an IAM role, user or account of partition %s",
			resourceARN, p, account.Partition, account.Partition)}
	}
	b, err := json.Marshal(policyDocument{
		Version: "2012-10-17",
		Statement: []policyStatement{{
			Effect:    "Allow",
			Principal: policyPrincipal{AWS: resourceARN},
			Action:    []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"},
			Resource:  fmt.Sprintf("arn:%s:sqs:%s:%s:%s", account.Partition, account.Region, account.ID, name),
		}},
	})
	return string(b), err
}

// arnPartition is the partition field of arn, "" when it has none.
func arnPartition(arn string) string {
	parts := strings.SplitN(arn, ":", 3)
	if len(parts) < 3 {
		return ""
	}
	return parts[1]
}
