package store

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
)

// timeLayout is how times are stored: RFC 3339 in UTC with milliseconds, so
// that stored times sort as strings.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// AWS error codes store branches on. Emulators do not always return the
// SDK's typed errors, so codes are compared, including the legacy SQS
// spellings that query-compatible SQS endpoints return.
const (
	codeConditionalCheckFailed     = "ConditionalCheckFailedException"
	codeResourceInUse              = "ResourceInUseException"
	codeQueueDoesNotExist          = "QueueDoesNotExist"
	codeQueueDoesNotExistLegacy    = "AWS.SimpleQueueService.NonExistentQueue"
	codeQueueDeletedRecently       = "QueueDeletedRecently"
	codeQueueDeletedRecentlyLegacy = "AWS.SimpleQueueService.QueueDeletedRecently"
	codeInvalidAttributeValue      = "InvalidAttributeValue"
)

// hasCode reports whether err is an AWS API error with one of codes.
func hasCode(err error, codes ...string) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && slices.Contains(codes, ae.ErrorCode())
}

// formatTime renders t as stored.
func formatTime(t time.Time) string {
	return t.UTC().Format(timeLayout)
}

// reader reads typed attributes out of one item, remembering the first
// missing or malformed one in err (later reads then return zero values), so
// a whole struct is decoded before a single error check.
type reader struct {
	item map[string]types.AttributeValue
	err  error
}

// str returns string attribute name.
func (r *reader) str(name string) string {
	if r.err != nil {
		return ""
	}
	v, ok := r.item[name].(*types.AttributeValueMemberS)
	if !ok {
		r.err = fmt.Errorf("item has no string attribute %s", name)
		return ""
	}
	return v.Value
}

// time returns the time stored in string attribute name.
func (r *reader) time(name string) time.Time {
	v := r.str(name)
	if r.err != nil {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		r.err = fmt.Errorf("attribute %s: %w", name, err)
	}
	return t
}

// bytes returns binary attribute name, or nil when it is absent: writers
// here omit empty binary values.
func (r *reader) bytes(name string) []byte {
	if r.err != nil {
		return nil
	}
	switch v := r.item[name].(type) {
	case nil:
		return nil
	case *types.AttributeValueMemberB:
		return v.Value
	default:
		r.err = fmt.Errorf("attribute %s is not binary", name)
		return nil
	}
}

// attrS is a string attribute value.
func attrS(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
