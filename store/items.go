package store

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/fanout/fanout/event"
)

// AWS error codes store branches on. Emulators do not always return the
// SDK's typed errors, so codes are compared, including the legacy SQS
// spellings that query-compatible SQS endpoints return.
const (
	codeConditionalCheckFailed     = "ConditionalCheckFailedException"
	codeResourceInUse              = "ResourceInUseException"
	codeResourceNotFound           = "ResourceNotFoundException"
	codeQueueDoesNotExist          = "QueueDoesNotExist"
	codeQueueDoesNotExistLegacy    = "AWS.SimpleQueueService.NonExistentQueue"
	codeQueueDeletedRecently       = "QueueDeletedRecently"
	codeQueueDeletedRecentlyLegacy = "AWS.SimpleQueueService.QueueDeletedRecently"
	codeInvalidAttributeValue      = "InvalidAttributeValue"
	codeBatchRequestTooLong        = "BatchRequestTooLong"
	codeBatchRequestTooLongLegacy  = "AWS.SimpleQueueService.BatchRequestTooLong"
)

// hasCode reports whether err is an AWS API error with one of codes.
func hasCode(err error, codes ...string) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && slices.Contains(codes, ae.ErrorCode())
}

// rejectable returns err wrapped with ErrRejected when rejected(err), and
// err itself otherwise.
func rejectable(err error) error {
	if rejected(err) {
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	return err
}

// rejected reports whether err is AWS refusing the request itself as
// invalid, so that sending it again cannot succeed: an HTTP 4xx answer
// (not 408 or 429) with one of rejectedCodes. It is an allow-list on
// purpose: everything else — throttling, outages, permissions, missing
// tables or queues, and failures to get credentials (which are API errors
// too, raised before any call) — is retried, so that a misconfiguration or
// a passing fault stalls the pipeline visibly, in logs and alarms, instead
// of setting records aside.
func rejected(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) || !rejectedCodes[ae.ErrorCode()] {
		return false
	}
	var status interface{ HTTPStatusCode() int }
	if !errors.As(err, &status) {
		return false
	}
	code := status.HTTPStatusCode()
	return code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests
}

// rejectedCodes are the error codes with which DynamoDB and SQS refuse a
// request as invalid (legacy SQS spellings included).
var rejectedCodes = map[string]bool{
	// DynamoDB: an item over 400 KB, a key too long, a bad value.
	"ValidationException":    true,
	"SerializationException": true,
	// SQS: a malformed batch or message.
	"BatchEntryIdsNotDistinct":                            true,
	"AWS.SimpleQueueService.BatchEntryIdsNotDistinct":     true,
	"BatchRequestTooLong":                                 true,
	"AWS.SimpleQueueService.BatchRequestTooLong":          true,
	"EmptyBatchRequest":                                   true,
	"AWS.SimpleQueueService.EmptyBatchRequest":            true,
	"TooManyEntriesInBatchRequest":                        true,
	"AWS.SimpleQueueService.TooManyEntriesInBatchRequest": true,
	"InvalidBatchEntryId":                                 true,
	"AWS.SimpleQueueService.InvalidBatchEntryId":          true,
	"InvalidMessageContents":                              true,
	"InvalidParameterValue":                               true,
	"MissingParameter":                                    true,
}

// DynamoDB limits checked before a write, so that an item AWS would refuse
// fails as ErrRejected without a call.
const (
	// maxItemBytes is DynamoDB's item size limit, 400 KB.
	maxItemBytes = 400 * 1024
	// maxPartitionKeyBytes and maxSortKeyBytes are DynamoDB's limits on
	// key values.
	maxPartitionKeyBytes = 2048
	maxSortKeyBytes      = 1024
)

// checkItem returns an error wrapping ErrRejected when DynamoDB would
// refuse item: it is larger than maxItemBytes, or the string key attribute
// partitionKey (or sortKey, unless "") is empty or longer than its limit.
func checkItem(item map[string]types.AttributeValue, partitionKey, sortKey string) error {
	keys := []struct {
		name string
		max  int
	}{{partitionKey, maxPartitionKeyBytes}, {sortKey, maxSortKeyBytes}}
	for _, k := range keys {
		if k.name == "" {
			continue
		}
		v, ok := item[k.name].(*types.AttributeValueMemberS)
		switch {
		case !ok || v.Value == "":
			return fmt.Errorf("%w: key attribute %s is empty", ErrRejected, k.name)
		case stringBytes(v.Value) > k.max:
			return fmt.Errorf("%w: key attribute %s is %d bytes, DynamoDB takes at most %d", ErrRejected, k.name, stringBytes(v.Value), k.max)
		}
	}
	if n := itemBytes(item); n > maxItemBytes {
		return fmt.Errorf("%w: item is %d bytes, DynamoDB takes at most %d", ErrRejected, n, maxItemBytes)
	}
	return nil
}

// itemBytes is the size DynamoDB counts for item, rounded up: the UTF-8
// bytes of every attribute name and value, numbers counted as their
// decimal digits (DynamoDB counts half that), one byte more per attribute
// and DynamoDB's documented overhead for lists and maps.
func itemBytes(item map[string]types.AttributeValue) int {
	n := 0
	for name, v := range item {
		n += stringBytes(name) + valueBytes(v) + 1
	}
	return n
}

// valueBytes is itemBytes for one value, without its name.
func valueBytes(v types.AttributeValue) int {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return stringBytes(v.Value)
	case *types.AttributeValueMemberN:
		return len(v.Value) + 1
	case *types.AttributeValueMemberB:
		return len(v.Value)
	case *types.AttributeValueMemberL:
		n := 3
		for _, e := range v.Value {
			n += valueBytes(e) + 1
		}
		return n
	case *types.AttributeValueMemberM:
		return 3 + itemBytes(v.Value)
	case *types.AttributeValueMemberSS:
		n := 3
		for _, e := range v.Value {
			n += stringBytes(e) + 1
		}
		return n
	case *types.AttributeValueMemberNS:
		n := 3
		for _, e := range v.Value {
			n += len(e) + 2
		}
		return n
	case *types.AttributeValueMemberBS:
		n := 3
		for _, e := range v.Value {
			n += len(e) + 1
		}
		return n
	default: // BOOL, NULL
		return 1
	}
}

// stringBytes is the length of s as AWS stores it: the SDK sends each
// invalid UTF-8 byte as U+FFFD, three bytes.
func stringBytes(s string) int {
	n := 0
	for _, r := range s {
		n += utf8.RuneLen(r)
	}
	return n
}

// truncateString returns s if it is at most limit bytes, and otherwise its
// longest prefix of whole characters that, followed by suffix, takes at
// most limit bytes, followed by suffix. Invalid UTF-8 becomes U+FFFD first.
// limit must be at least len(suffix).
func truncateString(s string, limit int, suffix string) string {
	s = strings.ToValidUTF8(s, string(utf8.RuneError))
	if len(s) <= limit {
		return s
	}
	cut := limit - len(suffix)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:max(cut, 0)] + suffix
}

// formatTime renders t as stored: event.TimeLayout, so that stored times
// sort as strings.
func formatTime(t time.Time) string {
	return t.UTC().Format(event.TimeLayout)
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

// number returns number attribute name, or absent when the item has none.
func (r *reader) number(name string, absent int) int {
	if r.err != nil {
		return 0
	}
	switch v := r.item[name].(type) {
	case nil:
		return absent
	case *types.AttributeValueMemberN:
		n, err := strconv.Atoi(v.Value)
		if err != nil {
			r.err = fmt.Errorf("attribute %s: %w", name, err)
		}
		return n
	default:
		r.err = fmt.Errorf("attribute %s is not a number", name)
		return 0
	}
}

// boolean returns boolean attribute name, or false when the item has none.
func (r *reader) boolean(name string) bool {
	if r.err != nil {
		return false
	}
	switch v := r.item[name].(type) {
	case nil:
		return false
	case *types.AttributeValueMemberBOOL:
		return v.Value
	default:
		r.err = fmt.Errorf("attribute %s is not a boolean", name)
		return false
	}
}

// attrS is a string attribute value.
func attrS(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }

// attrN is a number attribute value.
func attrN(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}

// itemPutter is the part of the DynamoDB API that putIfAbsent uses.
// *dynamodb.Client and agentItems satisfy it.
type itemPutter interface {
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
}

// putIfAbsent writes item into table unless an item with its key is there
// already, and reports whether it wrote it. key names one of the table's
// key attributes. The error is DynamoDB's, unwrapped, for the caller to
// wrap with the ids it wrote: the write may have landed all the same.
func putIfAbsent(ctx context.Context, db itemPutter, table string, item map[string]types.AttributeValue, key string) (created bool, err error) {
	_, err = db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                aws.String(table),
		Item:                     item,
		ConditionExpression:      aws.String("attribute_not_exists(#k)"),
		ExpressionAttributeNames: map[string]string{"#k": key},
	})
	switch {
	case err == nil:
		return true, nil
	case hasCode(err, codeConditionalCheckFailed):
		return false, nil
	}
	return false, err
}

// pages is what DynamoDB's Query and Scan paginators have in common; P is
// the type of their pages.
type pages[P any] interface {
	HasMorePages() bool
	NextPage(ctx context.Context, optFns ...func(*dynamodb.Options)) (P, error)
}

// queryAll runs in over every page and returns the items decoded, in
// order. A page's error names the table; an item's is decode's own.
func queryAll[T any](ctx context.Context, s *Store, in *dynamodb.QueryInput, decode func(map[string]types.AttributeValue) (T, error)) ([]T, error) {
	in.Limit = s.pageLimit()
	items := func(p *dynamodb.QueryOutput) []map[string]types.AttributeValue { return p.Items }
	return decodePages(ctx, dynamodb.NewQueryPaginator(s.db, in), items, decode, "query table "+aws.ToString(in.TableName))
}

// scanAll is queryAll for a Scan.
func scanAll[T any](ctx context.Context, s *Store, in *dynamodb.ScanInput, decode func(map[string]types.AttributeValue) (T, error)) ([]T, error) {
	in.Limit = s.pageLimit()
	items := func(p *dynamodb.ScanOutput) []map[string]types.AttributeValue { return p.Items }
	return decodePages(ctx, dynamodb.NewScanPaginator(s.db, in), items, decode, "scan table "+aws.ToString(in.TableName))
}

// pageLimit is the Limit of one Query or Scan page: s.pageSize, or none
// (DynamoDB's 1 MB pages) when that is 0.
func (s *Store) pageLimit() *int32 {
	if s.pageSize > 0 {
		return aws.Int32(s.pageSize)
	}
	return nil
}

// decodePages reads every page of ps and decodes the items (picked out of a
// page by items), in order; it never returns nil on success. A page's
// error is wrapped with what, saying what was read.
func decodePages[P, T any](ctx context.Context, ps pages[P], items func(P) []map[string]types.AttributeValue, decode func(map[string]types.AttributeValue) (T, error), what string) ([]T, error) {
	all := []T{}
	for ps.HasMorePages() {
		page, err := ps.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		for _, it := range items(page) {
			v, err := decode(it)
			if err != nil {
				return nil, err
			}
			all = append(all, v)
		}
	}
	return all, nil
}
