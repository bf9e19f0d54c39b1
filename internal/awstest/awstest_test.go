package awstest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/logging"
)

func TestName(t *testing.T) {
	t.Parallel()
	valid := regexp.MustCompile(`^[A-Za-z0-9_-]{3,64}$`)
	for _, tc := range []struct {
		prefix, wantPrefix string
	}{
		{"agents", "agents-"},
		{"Table_1-x", "Table_1-x-"},
		{"a/b c.d", "a-b-c-d-"},
		{"", "-"},
		{strings.Repeat("p", 200), strings.Repeat("p", 47) + "-"},
	} {
		a, b := Name(t, tc.prefix), Name(t, tc.prefix)
		if !valid.MatchString(a) {
			t.Errorf("Name(%q) = %q, want [A-Za-z0-9_-]{3,64}", tc.prefix, a)
		}
		if !strings.HasPrefix(a, tc.wantPrefix) {
			t.Errorf("Name(%q) = %q, want prefix %q", tc.prefix, a, tc.wantPrefix)
		}
		if a == b {
			t.Errorf("Name(%q) twice = %q both times, want different names", tc.prefix, a)
		}
	}
}

// TestClientsReachEndpoint makes one call per service through the
// constructors; each fails unless Config points at a working endpoint.
func TestClientsReachEndpoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if _, err := DynamoDB(t).ListTables(ctx, &dynamodb.ListTablesInput{}); err != nil {
		t.Errorf("DynamoDB ListTables: %v", err)
	}
	if _, err := SQS(t).ListQueues(ctx, &sqs.ListQueuesInput{}); err != nil {
		t.Errorf("SQS ListQueues: %v", err)
	}
	if _, err := Kinesis(t).ListStreams(ctx, &kinesis.ListStreamsInput{}); err != nil {
		t.Errorf("Kinesis ListStreams: %v", err)
	}
	if Endpoint(t) != Endpoint(t) {
		t.Errorf("Endpoint changed between calls")
	}
}

// TestConfigSilencesChecksumWarnings checks that DynamoDB calls through
// Config log nothing, and (against the in-process emulator, which sends no
// checksum header) that they do log the SDK's warning without the fix, so
// the first half cannot pass by accident.
func TestConfigSilencesChecksumWarnings(t *testing.T) {
	t.Parallel()
	inProcess := containerEndpoint(t) == "" && os.Getenv("AWS_ENDPOINT_URL") == ""
	for _, tc := range []struct {
		name         string
		keepChecksum bool
		wantWarnings bool
	}{
		{name: "Config", keepChecksum: false, wantWarnings: false},
		{name: "checksum middleware kept", keepChecksum: true, wantWarnings: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.wantWarnings && !inProcess {
				t.Skip("only the in-process emulator is known to omit DynamoDB checksums")
			}
			cfg := Config(t)
			if tc.keepChecksum {
				cfg.APIOptions = nil
			}
			var logs logBuffer
			cfg.Logger = &logs
			db := dynamodb.NewFromConfig(cfg)
			callDynamoDB(t, db, Name(t, "awstest"))
			if got := logs.String(); (got != "") != tc.wantWarnings {
				t.Errorf("logged %q, want warnings: %v", got, tc.wantWarnings)
			}
		})
	}
}

// callDynamoDB creates table, writes and reads an item.
func callDynamoDB(t *testing.T, db *dynamodb.Client, table string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		BillingMode:          types.BillingModePayPerRequest,
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("k"), KeyType: types.KeyTypeHash}},
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("k"), AttributeType: types.ScalarAttributeTypeS}},
	})
	if err != nil {
		t.Fatalf("create table %s: %v", table, err)
	}
	if err := dynamodb.NewTableExistsWaiter(db).Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, time.Minute); err != nil {
		t.Fatalf("wait for table %s: %v", table, err)
	}
	key := map[string]types.AttributeValue{"k": &types.AttributeValueMemberS{Value: "v"}}
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: key}); err != nil {
		t.Fatalf("put item: %v", err)
	}
	if _, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: key}); err != nil {
		t.Fatalf("get item: %v", err)
	}
}

// logBuffer is an SDK logger that keeps what it is given.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Logf(c logging.Classification, format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, "%s "+format+"\n", append([]any{c}, v...)...)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestProxyForwardsWholeRequests checks that the proxy in front of the
// emulator holds a request until its body has fully arrived and forwards all
// of it. A proxy that streamed bodies could have its connection to the
// emulator closed under it mid-answer (see readBody).
func TestProxyForwardsWholeRequests(t *testing.T) {
	t.Parallel()
	const half = 1000
	called := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(called)
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("emulator side: read body: %v", err)
		}
		fmt.Fprint(w, len(b))
	}))
	defer backend.Close()

	body, write := io.Pipe()
	defer write.Close() // first, so that a failing run's handler finishes
	req, err := http.NewRequest(http.MethodPost, serializeTableCalls(backend.URL), body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = 2 * half
	type result struct {
		body string
		err  error
	}
	answer := make(chan result, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answer <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		answer <- result{body: string(b), err: err}
	}()

	if _, err := write.Write(make([]byte, half)); err != nil {
		t.Fatal(err)
	}
	// Half the body is in. The emulator must not have been called yet; the
	// window is short, so a regression may slip past once but not for long.
	select {
	case <-called:
		t.Fatal("the proxy called the emulator before the request body was complete")
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := write.Write(make([]byte, half)); err != nil {
		t.Fatal(err)
	}
	write.Close()
	got := <-answer
	if got.err != nil || got.body != fmt.Sprint(2*half) {
		t.Fatalf("answer %q, %v; want the emulator to have read %d bytes", got.body, got.err, 2*half)
	}
}
