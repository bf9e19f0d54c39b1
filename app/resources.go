package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/smithy-go"

	"github.com/fanout/fanout/store"
)

// endpointVariables are the AWS SDK's endpoint overrides fanout's clients
// read; each must be a URL with its scheme.
var endpointVariables = []string{
	"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL_DYNAMODB",
	"AWS_ENDPOINT_URL_DYNAMODB_STREAMS", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_STS",
}

// checkEndpoints returns an error for each endpoint override that lacks
// its scheme: the SDK would fail every call with an error that reads like
// a credentials problem.
func checkEndpoints(getenv func(string) string) []error {
	var errs []error
	for _, name := range endpointVariables {
		v := strings.TrimSpace(getenv(name))
		if v != "" && !strings.HasPrefix(v, "http://") && !strings.HasPrefix(v, "https://") {
			errs = append(errs, fmt.Errorf("%s=%q: an endpoint URL starts with http:// or https://, e.g. http://%s", name, v, v))
		}
	}
	return errs
}

// unreachable reports whether err is a failure to reach the endpoint at
// all (refused, unresolvable, timed out), as opposed to an answer from it.
func unreachable(err error) bool {
	var (
		op  *net.OpError
		dns *net.DNSError
		api smithy.APIError
	)
	return !errors.As(err, &api) && (errors.As(err, &op) || errors.As(err, &dns))
}

// checkResources returns an error naming every table and stream of cfg that
// does not exist: fanout cannot work without them, and would otherwise
// answer /healthz 200 and every request 503 for ever.
func checkResources(ctx context.Context, cfg Config, st *store.Store, kc *kinesis.Client) error {
	missing, err := st.MissingTables(ctx, cfg.AggregatorLeaseTable, cfg.PublisherLeaseTable)
	if err != nil {
		return err
	}
	variable := map[string]string{
		cfg.AgentsTable: "FANOUT_AGENTS_TABLE", cfg.SubscribersTable: "FANOUT_SUBSCRIBERS_TABLE",
		cfg.SubscriberEventsTable: "FANOUT_SUBSCRIBER_EVENTS_TABLE", cfg.DeadLettersTable: "FANOUT_DEAD_LETTERS_TABLE",
		cfg.EventIDsTable: "FANOUT_EVENT_IDS_TABLE", cfg.ReplaysTable: "FANOUT_REPLAYS_TABLE", cfg.AggregatorLeaseTable: "FANOUT_AGGREGATOR_LEASE_TABLE",
		cfg.PublisherLeaseTable: "FANOUT_PUBLISHER_LEASE_TABLE",
	}
	var names []string
	for _, t := range missing {
		names = append(names, fmt.Sprintf("table %s (%s)", t, variable[t]))
	}
	_, err = kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(cfg.Stream)})
	var api smithy.APIError
	switch {
	case errors.As(err, &api) && api.ErrorCode() == "ResourceNotFoundException":
		names = append(names, fmt.Sprintf("stream %s (FANOUT_STREAM)", cfg.Stream))
	case err != nil:
		return fmt.Errorf("describe stream %s: %w", cfg.Stream, err)
	}
	if len(names) == 0 {
		return nil
	}
	return fmt.Errorf("missing %s: deploy them with deploy/fanout.yaml, point the variables at existing ones, or set FANOUT_CREATE_RESOURCES=true for a local run",
		strings.Join(names, ", "))
}
