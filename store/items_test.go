package store

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// sdkError wraps apiErr the way the SDK returns an operation's error: an
// operation error around an HTTP response error with status.
func sdkError(status int, apiErr error) error {
	return &smithy.OperationError{
		ServiceID:     "DynamoDB",
		OperationName: "PutItem",
		Err: &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{
				Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
				Err:      apiErr,
			},
			RequestID: "req-1",
		},
	}
}

// generic is an API error the SDK has no type for, as it decodes one.
func generic(code string) error { return &smithy.GenericAPIError{Code: code, Message: "m"} }

func TestRejected(t *testing.T) {
	t.Parallel()
	queryCode := func(code string) error {
		// What query-compatible SQS sends: a typed error with the legacy code.
		return &sqstypes.RequestThrottled{ErrorCodeOverride: &code}
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		// Refused as invalid.
		{"DynamoDB ValidationException (untyped, 400)", sdkError(400, generic("ValidationException")), true},
		{"untyped 400 SerializationException", sdkError(400, generic("SerializationException")), true},
		{"SQS BatchEntryIdsNotDistinct", sdkError(400, &sqstypes.BatchEntryIdsNotDistinct{}), true},
		{"SQS BatchRequestTooLong", sdkError(400, &sqstypes.BatchRequestTooLong{}), true},
		{"SQS TooManyEntriesInBatchRequest", sdkError(400, &sqstypes.TooManyEntriesInBatchRequest{}), true},
		{"client fault without HTTP response", &smithy.GenericAPIError{Code: "InvalidParameterValue", Fault: smithy.FaultClient}, false},
		{"SQS InvalidParameterValue", sdkError(400, generic("InvalidParameterValue")), true},

		// Failing to get credentials (container endpoint, web identity):
		// API errors with a client fault, raised before any call.
		{"container credentials InvalidIdForTask", sdkError(400, &smithy.GenericAPIError{Code: "InvalidIdForTask", Fault: smithy.FaultClient}), false},
		{"STS IDPCommunicationError", sdkError(400, &smithy.GenericAPIError{Code: "IDPCommunicationError", Fault: smithy.FaultClient}), false},
		{"unknown client fault", sdkError(400, &sqstypes.InvalidAddress{}), false},
		{"wrapped again", fmt.Errorf("put: %w", sdkError(400, generic("ValidationException"))), true},

		// Throttling and capacity.
		{"DynamoDB ThrottlingException", sdkError(400, &dbtypes.ThrottlingException{}), false},
		{"DynamoDB ProvisionedThroughputExceededException", sdkError(400, &dbtypes.ProvisionedThroughputExceededException{}), false},
		{"DynamoDB RequestLimitExceeded", sdkError(400, &dbtypes.RequestLimitExceeded{}), false},
		{"DynamoDB LimitExceededException", sdkError(400, &dbtypes.LimitExceededException{}), false},
		{"DynamoDB TransactionConflictException", sdkError(400, &dbtypes.TransactionConflictException{}), false},
		{"untyped TooManyRequestsException", sdkError(400, generic("TooManyRequestsException")), false},
		{"untyped KMSThrottlingException", sdkError(400, generic("KMSThrottlingException")), false},
		{"SQS RequestThrottled", sdkError(400, &sqstypes.RequestThrottled{}), false},
		{"SQS legacy AWS.SimpleQueueService.RequestThrottled", sdkError(400, queryCode("AWS.SimpleQueueService.RequestThrottled")), false},
		{"SQS KmsThrottled", sdkError(400, &sqstypes.KmsThrottled{}), false},
		{"SQS OverLimit", sdkError(403, &sqstypes.OverLimit{}), false},
		{"untyped unknown code, 429", sdkError(429, generic("Whatever")), false},
		{"typed client fault, 429", sdkError(429, &sqstypes.InvalidAddress{}), false},
		{"untyped unknown code, 408", sdkError(408, generic("Whatever")), false},

		// Deployment errors an operator fixes.
		{"DynamoDB AccessDeniedException", sdkError(400, generic("AccessDeniedException")), false},
		{"SQS legacy AccessDenied", sdkError(403, queryCode("AccessDenied")), false},
		{"UnrecognizedClientException", sdkError(400, generic("UnrecognizedClientException")), false},
		{"ExpiredTokenException", sdkError(400, generic("ExpiredTokenException")), false},
		{"MissingAuthenticationTokenException", sdkError(403, generic("MissingAuthenticationTokenException")), false},
		{"SQS KmsAccessDenied", sdkError(400, &sqstypes.KmsAccessDenied{}), false},
		{"SQS KmsDisabled", sdkError(400, &sqstypes.KmsDisabled{}), false},
		{"DynamoDB ResourceNotFoundException", sdkError(400, &dbtypes.ResourceNotFoundException{}), false},
		{"SQS QueueDoesNotExist", sdkError(400, &sqstypes.QueueDoesNotExist{}), false},

		// Not the client's fault, or not an AWS answer at all.
		{"DynamoDB InternalServerError", sdkError(500, &dbtypes.InternalServerError{}), false},
		{"untyped 503", sdkError(503, generic("ServiceUnavailable")), false},
		{"untyped, no HTTP response", generic("ValidationException"), false},
		{"context canceled", fmt.Errorf("put: %w", context.Canceled), false},
		{"plain error", errors.New("connection reset"), false},
		{"nil", nil, false},
	} {
		if got := rejected(tc.err); got != tc.want {
			t.Errorf("%s: rejected(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestRejectable(t *testing.T) {
	t.Parallel()
	cause := sdkError(400, generic("ValidationException"))
	err := rejectable(cause)
	var ae smithy.APIError
	if !errors.Is(err, ErrRejected) || !errors.As(err, &ae) || ae.ErrorCode() != "ValidationException" {
		t.Errorf("rejectable(ValidationException) = %v, want ErrRejected wrapping the AWS error", err)
	}
	throttled := sdkError(400, &dbtypes.ThrottlingException{})
	if err := rejectable(throttled); err != throttled {
		t.Errorf("rejectable(ThrottlingException) = %v, want the error itself", err)
	}
}

func TestCheckItem(t *testing.T) {
	t.Parallel()
	// item has key attributes pk and sk and a string attribute "v" of n
	// bytes; overhead is what the rest counts.
	item := func(pk, sk, v string) map[string]dbtypes.AttributeValue {
		return map[string]dbtypes.AttributeValue{"pk": attrS(pk), "sk": attrS(sk), "v": attrS(v)}
	}
	overhead := itemBytes(item("p", "s", ""))
	fill := func(n int) string { return strings.Repeat("x", n) }
	for _, tc := range []struct {
		name   string
		item   map[string]dbtypes.AttributeValue
		sortOK bool // check the sort key; else only pk is a key
		want   string
	}{
		{"small", item("p", "s", "v"), true, ""},
		{"exactly the limit", item("p", "s", fill(maxItemBytes-overhead)), true, ""},
		{"one byte over", item("p", "s", fill(maxItemBytes-overhead+1)), true, "item is 409601 bytes"},
		{"invalid UTF-8 counts 3 bytes a byte", item("p", "s", strings.Repeat("\xff", maxItemBytes/3+1)), true, "item is"},
		{"multi-byte characters", item("p", "s", strings.Repeat("é", maxItemBytes/2)), true, "item is"},
		{"empty partition key", item("", "s", "v"), true, "key attribute pk is empty"},
		{"empty sort key", item("p", "", "v"), true, "key attribute sk is empty"},
		{"no sort key checked", item("p", "", "v"), false, ""},
		{"partition key at its limit", item(fill(maxPartitionKeyBytes), "s", ""), true, ""},
		{"partition key too long", item(fill(maxPartitionKeyBytes+1), "s", ""), true, "key attribute pk is 2049 bytes"},
		{"sort key at its limit", item("p", fill(maxSortKeyBytes), ""), true, ""},
		{"sort key too long", item("p", fill(maxSortKeyBytes+1), ""), true, "key attribute sk is 1025 bytes"},
		{"sort key too long in UTF-8", item("p", strings.Repeat("é", maxSortKeyBytes/2+1), ""), true, "key attribute sk is 1026 bytes"},
	} {
		sk := ""
		if tc.sortOK {
			sk = "sk"
		}
		err := checkItem(tc.item, "pk", sk)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: checkItem = %v, want nil", tc.name, err)
		case tc.want != "" && (!errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: checkItem = %v, want ErrRejected saying %q", tc.name, err, tc.want)
		}
	}
}

func TestItemBytes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		item map[string]dbtypes.AttributeValue
		want int
	}{
		{"string", map[string]dbtypes.AttributeValue{"ab": attrS("cde")}, 2 + 3 + 1},
		{"number", map[string]dbtypes.AttributeValue{"n": attrN(12345)}, 1 + 6 + 1},
		{"binary", map[string]dbtypes.AttributeValue{"b": &dbtypes.AttributeValueMemberB{Value: []byte{0, 1, 2}}}, 1 + 3 + 1},
		{"boolean", map[string]dbtypes.AttributeValue{"t": &dbtypes.AttributeValueMemberBOOL{Value: true}}, 1 + 1 + 1},
		{"list", map[string]dbtypes.AttributeValue{"l": &dbtypes.AttributeValueMemberL{Value: []dbtypes.AttributeValue{attrS("ab")}}}, 1 + 3 + 2 + 1 + 1},
		{"map", map[string]dbtypes.AttributeValue{"m": &dbtypes.AttributeValueMemberM{Value: map[string]dbtypes.AttributeValue{"k": attrS("v")}}}, 1 + 3 + 3 + 1},
		{"string set", map[string]dbtypes.AttributeValue{"s": &dbtypes.AttributeValueMemberSS{Value: []string{"a", "bc"}}}, 1 + 3 + 2 + 3 + 1},
		{"invalid UTF-8 name and value", map[string]dbtypes.AttributeValue{"\xff": attrS("a\xfe")}, 3 + 4 + 1},
	} {
		if got := itemBytes(tc.item); got != tc.want {
			t.Errorf("%s: itemBytes = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestTruncateString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		s     string
		limit int
		want  string
	}{
		{"short", "abc", 5, "abc"},
		{"exactly the limit", "abcde", 5, "abcde"},
		{"cut", "abcdefgh", 6, "abc[c]"},
		{"cut at a character boundary", "aé€x", 6, "aé[c]"},
		{"cut before a character it would split", "aé€x", 5, "a[c]"},
		{"invalid UTF-8 repaired", "a\xffb", 10, "a\uFFFDb"},
		{"invalid UTF-8 repaired, then cut", "\xffa\xffb\xffc", 7, "\uFFFDa[c]"},
		{"only the suffix fits", "abcdef", 3, "[c]"},
	} {
		got := truncateString(tc.s, tc.limit, "[c]")
		if got != tc.want {
			t.Errorf("%s: truncateString(%q, %d) = %q, want %q", tc.name, tc.s, tc.limit, got, tc.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("%s: truncateString(%q, %d) = %q, not valid UTF-8", tc.name, tc.s, tc.limit, got)
		}
	}
}
