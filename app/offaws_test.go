package app

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// TestOffAWS: checksum checks are dropped only for endpoints that are not
// AWS's; an override naming an AWS host keeps them.
func TestOffAWS(t *testing.T) {
	for _, tc := range []struct {
		endpoint *string
		want     bool
	}{
		{nil, false},
		{aws.String("https://sqs.us-east-1.amazonaws.com"), false},
		{aws.String("https://vpce-0abc-123.sqs.us-east-1.vpce.amazonaws.com"), false},
		{aws.String("https://sqs-fips.us-gov-west-1.amazonaws.com"), false},
		{aws.String("https://sqs.cn-north-1.amazonaws.com.cn"), false},
		{aws.String("https://sqs.eu-west-1.api.aws"), false},
		{aws.String("http://127.0.0.1:4566"), true},
		{aws.String("http://localstack:4566"), true},
		{aws.String("http://amazonaws.com.evil.example"), true},
	} {
		if got := offAWS(tc.endpoint); got != tc.want {
			t.Errorf("offAWS(%v) = %v, want %v", aws.ToString(tc.endpoint), got, tc.want)
		}
	}
}
