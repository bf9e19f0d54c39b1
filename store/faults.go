package store

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/aws/smithy-go"
)

// ServiceFault reports whether err is AWS, or the way to it, failing as a
// whole rather than refusing this one request: throttling, a server-side
// fault, a timeout or broken connection, missing credentials or
// permissions, a missing table or queue. Retrying such an error succeeds
// once the service recovers or an operator fixes the cause, so a worker
// retries it for as long as it takes (and says so). Any other error that
// keeps failing the same request is that request's own fault: after a
// bounded number of attempts the caller sets the record aside. Errors
// wrapping ErrRejected are never service faults.
func ServiceFault(err error) bool {
	if err == nil || errors.Is(err, ErrRejected) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return true
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		if api.ErrorFault() == smithy.FaultServer || ServiceFaultCode(api.ErrorCode()) {
			return true
		}
	}
	var status interface{ HTTPStatusCode() int }
	if errors.As(err, &status) {
		if c := status.HTTPStatusCode(); c >= 500 || c == http.StatusTooManyRequests || c == http.StatusForbidden {
			return true
		}
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	// Credentials that cannot be had are the operator's to fix.
	return strings.Contains(err.Error(), "failed to retrieve credentials")
}

// ServiceFaultCode reports whether an AWS error code (of a call, or of one
// SendMessageBatch entry: BatchFailure.Code) says the service is busy, failing or
// unreachable for this caller, rather than that the request is wrong.
func ServiceFaultCode(code string) bool {
	switch code {
	case "ThrottlingException", "Throttling", "ThrottledException", "RequestThrottled", "RequestThrottledException",
		"ProvisionedThroughputExceededException", "RequestLimitExceeded", "TooManyRequestsException",
		"LimitExceededException", "TransactionInProgressException", "KMSThrottlingException",
		"AWS.SimpleQueueService.RequestThrottled",
		"InternalError", "InternalFailure", "InternalServerError", "ServiceUnavailable", "ServiceUnavailableException",
		"AccessDenied", "AccessDeniedException", "UnrecognizedClientException", "InvalidClientTokenId",
		"ExpiredToken", "ExpiredTokenException", "InvalidSignatureException", "SignatureDoesNotMatch",
		"MissingAuthenticationToken", "IncompleteSignature", "KMS.AccessDeniedException", "KMS.DisabledException",
		"ResourceNotFoundException":
		return true
	}
	return false
}
