package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

func TestServiceFault(t *testing.T) {
	t.Parallel()
	httpErr := func(status int, err error) error {
		return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: err}}
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"throttled", &types.ProvisionedThroughputExceededException{Message: aws.String("slow down")}, true},
		{"throttled, wrapped", fmt.Errorf("put event: %w", &smithy.GenericAPIError{Code: "ThrottlingException"}), true},
		{"server fault", &smithy.GenericAPIError{Code: "SomethingNew", Fault: smithy.FaultServer}, true},
		{"HTTP 503", httpErr(503, errors.New("unavailable")), true},
		{"HTTP 429", httpErr(429, errors.New("too many")), true},
		{"access denied", &smithy.GenericAPIError{Code: "AccessDeniedException", Fault: smithy.FaultClient}, true},
		{"missing table", &types.ResourceNotFoundException{Message: aws.String("no table")}, true},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, true},
		{"timeout", fmt.Errorf("call: %w", context.DeadlineExceeded), true},
		{"answer cut", fmt.Errorf("deserialize: %w", io.ErrUnexpectedEOF), true},
		{"no credentials", errors.New("operation error: failed to retrieve credentials: no EC2 IMDS role found"), true},
		{"rejected", fmt.Errorf("put: %w", ErrRejected), false},
		{"checksum mismatch", errors.New("operation error SQS: SendMessageBatch, checksum did not match"), false},
		{"unknown client error", &smithy.GenericAPIError{Code: "InvalidThing", Fault: smithy.FaultClient}, false},
		{"HTTP 400", httpErr(400, errors.New("bad")), false},
		{"nil", nil, false},
	} {
		if got := ServiceFault(tc.err); got != tc.want {
			t.Errorf("%s: ServiceFault(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
