// Package awstest gives tests a real AWS endpoint: a container
// (FANOUT_TEST_CONTAINERS=1), the endpoint in AWS_ENDPOINT_URL (LocalStack,
// say), or else one in-process kumo emulator per test binary. Only _test
// files import it.
package awstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	neturl "net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"
	"github.com/sivchari/kumo"

	"github.com/fanout/fanout/internal/sdkbody"
)

const (
	// region and the static credentials are what emulators accept; they
	// check neither.
	region    = "us-east-1"
	accessKey = "test"
	secretKey = "test"

	// dynamoDBChecksumMiddleware is the ID of the DynamoDB client's
	// response CRC32 check. kumo sends no X-Amz-Crc32 header, so the check
	// fails on close and the SDK logs a warning for every response.
	dynamoDBChecksumMiddleware = "DynamoDB:ResponseChecksumValidation"

	// maxNameLen keeps Name within SQS's 80-character limit, the tightest
	// of the services, with room for a suffix such as ".fifo" or "-leases".
	maxNameLen = 64
	// suffixBytes random bytes (16 hex digits) make names from parallel
	// tests and repeated runs against one endpoint collide practically never.
	suffixBytes = 8
)

// emulator is the in-process kumo server of this test binary, started on
// first use and never closed: the process exit ends it. Package state on
// purpose, as kumo's own state is process-wide anyway.
var emulator = struct {
	once sync.Once
	url  string
}{}

// Endpoint returns the AWS endpoint URL the tests of this binary use (to
// hand to a subprocess as AWS_ENDPOINT_URL, for example): the container's,
// else AWS_ENDPOINT_URL, else the in-process emulator's, started if need be.
func Endpoint(tb testing.TB) string {
	tb.Helper()
	if url := containerEndpoint(tb); url != "" {
		return url
	}
	if url := os.Getenv("AWS_ENDPOINT_URL"); url != "" {
		return url
	}
	emulator.once.Do(func() { emulator.url = serializeTableCalls(kumo.NewServer().URL) })
	return emulator.url
}

// ProcessEnv returns os.Environ() plus what points a fanout process at
// Endpoint(tb): AWS_ENDPOINT_URL, region us-east-1 and static credentials
// (emulators check neither).
func ProcessEnv(tb testing.TB) []string {
	tb.Helper()
	return append(os.Environ(),
		"AWS_ENDPOINT_URL="+Endpoint(tb),
		"AWS_REGION="+region, "AWS_ACCESS_KEY_ID="+accessKey, "AWS_SECRET_ACCESS_KEY="+secretKey)
}

// FreeAddr returns a loopback host:port that was free a moment ago, for a
// process under test to listen on.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Config returns an aws.Config for the endpoint Endpoint names. For a
// container or the in-process emulator: region us-east-1, static
// credentials, BaseEndpoint set to it. With AWS_ENDPOINT_URL: the SDK's
// default chain (which reads that variable and the credentials), region
// defaulting to us-east-1. In every case DynamoDB clients built from it skip
// the response CRC32 check, which against kumo only logs a warning per
// response; and every client sends request bodies through
// sdkbody.HideWriterTo, as fanout's own clients do.
func Config(tb testing.TB) aws.Config {
	tb.Helper()
	var cfg aws.Config
	switch url := containerEndpoint(tb); {
	case url != "":
		cfg = staticConfig(url)
	case os.Getenv("AWS_ENDPOINT_URL") != "":
		var err error
		if cfg, err = config.LoadDefaultConfig(context.Background()); err != nil {
			tb.Fatalf("load AWS config for AWS_ENDPOINT_URL=%s: %v", os.Getenv("AWS_ENDPOINT_URL"), err)
		}
		if cfg.Region == "" {
			cfg.Region = region
		}
	default:
		cfg = staticConfig(Endpoint(tb))
	}
	cfg.APIOptions = append(cfg.APIOptions, skipDynamoDBChecksum, sdkbody.HideWriterTo)
	return cfg
}

// staticConfig is the configuration for an emulator at url.
func staticConfig(url string) aws.Config {
	return aws.Config{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
		BaseEndpoint: aws.String(url),
	}
}

// skipDynamoDBChecksum removes the DynamoDB response checksum middleware
// from an operation's stack; other services' stacks lack it and pass
// unchanged.
func skipDynamoDBChecksum(stack *middleware.Stack) error {
	if _, ok := stack.Deserialize.Get(dynamoDBChecksumMiddleware); !ok {
		return nil
	}
	_, err := stack.Deserialize.Remove(dynamoDBChecksumMiddleware)
	return err
}

// DynamoDB returns a DynamoDB client for Config(tb).
func DynamoDB(tb testing.TB) *dynamodb.Client {
	tb.Helper()
	return dynamodb.NewFromConfig(Config(tb))
}

// Streams returns a DynamoDB Streams client for Config(tb).
func Streams(tb testing.TB) *dynamodbstreams.Client {
	tb.Helper()
	return dynamodbstreams.NewFromConfig(Config(tb))
}

// Kinesis returns a Kinesis client for Config(tb).
func Kinesis(tb testing.TB) *kinesis.Client {
	tb.Helper()
	return kinesis.NewFromConfig(Config(tb))
}

// SQS returns an SQS client for Config(tb).
func SQS(tb testing.TB) *sqs.Client {
	tb.Helper()
	return sqs.NewFromConfig(Config(tb))
}

// Name returns prefix, a dash and a random suffix: a resource name unique to
// the calling test, valid as a DynamoDB table, Kinesis stream or SQS queue
// name. Characters outside [A-Za-z0-9_-] in prefix become '-', and prefix is
// cut so the name has at most 64 characters, leaving room for ".fifo".
func Name(tb testing.TB, prefix string) string {
	tb.Helper()
	b := make([]byte, suffixBytes)
	if _, err := rand.Read(b); err != nil {
		tb.Fatalf("random name suffix: %v", err)
	}
	suffix := "-" + hex.EncodeToString(b)
	clean := strings.Map(func(r rune) rune {
		if r == '_' || r == '-' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
			return r
		}
		return '-'
	}, prefix)
	if keep := maxNameLen - len(suffix); len(clean) > keep {
		clean = clean[:keep]
	}
	return clean + suffix
}

// tableCalls are the DynamoDB operations serializeTableCalls runs one at a
// time.
var tableCalls = map[string]bool{
	"DynamoDB_20120810.CreateTable":   true,
	"DynamoDB_20120810.DescribeTable": true,
	"DynamoDB_20120810.UpdateTable":   true,
	"DynamoDB_20120810.DeleteTable":   true,
}

// serializeTableCalls fronts the emulator at url with a proxy that lets one
// table-level DynamoDB call through at a time, and returns the proxy's URL.
// Emulator gap: kumo's DescribeTable writes the table's ItemCount under a
// read lock while CreateTable, UpdateTable and DescribeTable answers read
// it, a data race inside the emulator that -race reports in whichever test
// happens to run (concurrent CreateTables, KCL checking its lease table).
// Nothing of fanout's is serialized: only these calls, only in tests.
func serializeTableCalls(url string) string {
	target, err := neturl.Parse(url)
	if err != nil {
		panic(err) // kumo's own httptest URL
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := readBody(r); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if tableCalls[r.Header.Get("X-Amz-Target")] {
			mu.Lock()
			defer mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	return srv.URL
}

// readBody reads r's whole body into memory and puts a reader over that in
// its place, so the proxy forwards a request only once it has all of it.
// Streamed instead, the proxy's transport may still be making its last read
// of the body (the one that sees EOF) when the emulator's answer comes back
// and the proxy starts writing it; the server then closes the request body,
// that read fails, the transport closes the connection mid-answer, and the
// SDK sees "unexpected EOF" (golang/go#40747). Under -race on two cores that
// cut about one answer in 12,000, enough to fail a suite now and then.
func readBody(r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return fmt.Errorf("read request body: %w", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return nil
}
