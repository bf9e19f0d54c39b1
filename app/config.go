package app

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"
)

// Defaults for Config. Resource names are the ones deploy/ creates.
const (
	defaultAddr                  = ":8080"
	defaultStream                = "fanout-events"
	defaultAgentsTable           = "fanout-agents"
	defaultSubscribersTable      = "fanout-subscribers"
	defaultSubscriberEventsTable = "fanout-subscriber-events"
	defaultDeadLettersTable      = "fanout-dead-letters"
	defaultEventIDsTable         = "fanout-event-ids"
	defaultReplaysTable          = "fanout-replays"
	defaultAggregatorLeaseTable  = "fanout-aggregator-leases"
	defaultPublisherLeaseTable   = "fanout-publisher-leases"
	// defaultStreamShards applies only when fanout creates the stream itself
	// (local runs): two shards exercise lease sharing without costing much.
	defaultStreamShards = 2
	// defaultKinesisMaxRecords is KCL's usual batch.
	defaultKinesisMaxRecords = 1000
	// defaultShutdownTimeout leaves 5 s of ECS's default 30 s stop timeout
	// for the runtime to exit after draining HTTP and releasing leases.
	defaultShutdownTimeout = 25 * time.Second
)

// Config is fanout's configuration, read from the environment. AWS settings
// (region, credentials, AWS_ENDPOINT_URL and the per-service
// AWS_ENDPOINT_URL_<SERVICE>) are read by the AWS SDK itself, not here.
type Config struct {
	Addr                  string
	Stream                string
	AgentsTable           string
	SubscribersTable      string
	SubscriberEventsTable string
	DeadLettersTable      string
	EventIDsTable         string
	ReplaysTable          string
	AggregatorLeaseTable  string
	PublisherLeaseTable   string
	CreateResources       bool
	StreamShards          int
	ShutdownTimeout       time.Duration
	LogLevel              zapcore.Level
	// EMFNamespace, when set, makes the task write its alarmed metrics to
	// stdout every minute (and at stop) as CloudWatch Embedded Metric
	// Format lines in that namespace; empty writes none.
	EMFNamespace string
	// WorkerID names this task in the KCL lease tables; empty means the
	// host name plus a random suffix.
	WorkerID string
	// Auth is AuthIAM or AuthNone (see auth.go).
	Auth string
	// Audience is what every token must have signed in x-fanout-audience.
	Audience string
	// Admins are the principal ARNs that may act for any agent.
	Admins []string
	// ReplayRate (events/s per task) and ReplayPageItems (items per Query
	// page) tune replays; zero takes pipeline's defaults (100/s, 1 MB
	// pages). No variable sets them: tests slow replays down and cut
	// pages small.
	ReplayRate      float64
	ReplayPageItems int32
	// PackEvents makes the aggregator pack each subscriber's run of a
	// producer's events into one SubscriberEvents item; false writes one
	// item per event, which versions before packing read (a rolling
	// update from one of them runs with false first).
	PackEvents bool
	// KinesisMaxRecords is how many records one Kinesis read returns at
	// most: the aggregator's batch.
	KinesisMaxRecords int
}

// Variable documents one environment variable fanout reads.
type Variable struct {
	Name    string
	Default string
	Doc     string
}

// Variables lists every environment variable fanout reads (besides the AWS
// SDK's own). The README's configuration table and deploy/ follow it.
func Variables() []Variable {
	return []Variable{
		{"FANOUT_ADDR", defaultAddr, "HTTP listen address."},
		{"FANOUT_STREAM", defaultStream, "Kinesis stream producers publish to."},
		{"FANOUT_AGENTS_TABLE", defaultAgentsTable, "DynamoDB table of agents."},
		{"FANOUT_SUBSCRIBERS_TABLE", defaultSubscribersTable, "DynamoDB table of subscriptions."},
		{"FANOUT_SUBSCRIBER_EVENTS_TABLE", defaultSubscriberEventsTable, "DynamoDB table of per-subscriber events (stream NEW_IMAGE, TTL)."},
		{"FANOUT_DEAD_LETTERS_TABLE", defaultDeadLettersTable, "DynamoDB table where records that cannot be processed are set aside."},
		{"FANOUT_EVENT_IDS_TABLE", defaultEventIDsTable, "DynamoDB table of producer-chosen eventIds seen in the last 24 h (TTL), so a repeated eventId is delivered to no one."},
		{"FANOUT_REPLAYS_TABLE", defaultReplaysTable, "DynamoDB table of replays: each one's window, state, progress and the lease of the task running it."},
		{"FANOUT_AGGREGATOR_LEASE_TABLE", defaultAggregatorLeaseTable, "KCL lease table (and application name) of the aggregator."},
		{"FANOUT_PUBLISHER_LEASE_TABLE", defaultPublisherLeaseTable, "KCL lease table (and application name) of the publisher."},
		{"FANOUT_CREATE_RESOURCES", "false", "true: create missing stream and tables at start and wait until active (local runs; production resources come from deploy/)."},
		{"FANOUT_STREAM_SHARDS", strconv.Itoa(defaultStreamShards), "Shard count when fanout creates the stream."},
		{"FANOUT_SHUTDOWN_TIMEOUT", defaultShutdownTimeout.String(), "How long SIGTERM may take: drain HTTP, finish batches, checkpoint, release leases."},
		{"FANOUT_LOG_LEVEL", "info", "debug, info, warn or error."},
		{"FANOUT_EMF_NAMESPACE", "", "CloudWatch namespace of the Embedded Metric Format lines written to stdout every minute (deploy/ sets it; empty: none)."},
		{"FANOUT_WORKER_ID", "host name + random suffix", "Name of this task in the KCL lease tables."},
		{"FANOUT_AUTH", AuthIAM, "iam: callers prove their IAM principal with a bearer token (a presigned sts:GetCallerIdentity) and act only as themselves; none: no authentication, anyone may do anything (logged as a warning at start)."},
		{"FANOUT_AUDIENCE", defaultAudience, "What every token must have signed in its x-fanout-audience header: a name for this deployment, so a token for another one is refused."},
		{"FANOUT_PACK_EVENTS", "true", "true: pack each subscriber's run of a producer's events into one SubscriberEvents item (fewer, larger writes); false: one item per event, which fanout versions before packing read: set it while updating from such a version, then remove it."},
		{"FANOUT_KINESIS_MAX_RECORDS", strconv.Itoa(defaultKinesisMaxRecords), "Most records one Kinesis read returns (1 to 10000): the aggregator's batch."},
		{"FANOUT_ADMINS", "(none)", "Comma-separated IAM role, user or account root ARNs that may act for any agent (an operator role, CI)."},
	}
}

// ConfigFromEnv reads Config through getenv (os.Getenv in production). The
// error names every variable that is wrong and what to put there.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	str := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	c := Config{
		Addr:                  str("FANOUT_ADDR", defaultAddr),
		Stream:                str("FANOUT_STREAM", defaultStream),
		AgentsTable:           str("FANOUT_AGENTS_TABLE", defaultAgentsTable),
		SubscribersTable:      str("FANOUT_SUBSCRIBERS_TABLE", defaultSubscribersTable),
		SubscriberEventsTable: str("FANOUT_SUBSCRIBER_EVENTS_TABLE", defaultSubscriberEventsTable),
		DeadLettersTable:      str("FANOUT_DEAD_LETTERS_TABLE", defaultDeadLettersTable),
		EventIDsTable:         str("FANOUT_EVENT_IDS_TABLE", defaultEventIDsTable),
		ReplaysTable:          str("FANOUT_REPLAYS_TABLE", defaultReplaysTable),
		AggregatorLeaseTable:  str("FANOUT_AGGREGATOR_LEASE_TABLE", defaultAggregatorLeaseTable),
		PublisherLeaseTable:   str("FANOUT_PUBLISHER_LEASE_TABLE", defaultPublisherLeaseTable),
		StreamShards:          defaultStreamShards,
		ShutdownTimeout:       defaultShutdownTimeout,
		LogLevel:              zapcore.InfoLevel,
		WorkerID:              str("FANOUT_WORKER_ID", ""),
		EMFNamespace:          str("FANOUT_EMF_NAMESPACE", ""),
		PackEvents:            true,
		KinesisMaxRecords:     defaultKinesisMaxRecords,
	}
	var errs []error
	if v := getenv("FANOUT_CREATE_RESOURCES"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("FANOUT_CREATE_RESOURCES=%q: use true or false", v))
		}
		c.CreateResources = b
	}
	if v := getenv("FANOUT_PACK_EVENTS"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("FANOUT_PACK_EVENTS=%q: use true or false", v))
		}
		c.PackEvents = b
	}
	if v := getenv("FANOUT_KINESIS_MAX_RECORDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			errs = append(errs, fmt.Errorf("FANOUT_KINESIS_MAX_RECORDS=%q: use a whole number from 1 to 10000", v))
		}
		c.KinesisMaxRecords = n
	}
	if v := getenv("FANOUT_STREAM_SHARDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			errs = append(errs, fmt.Errorf("FANOUT_STREAM_SHARDS=%q: use a whole number from 1 to 500", v))
		}
		c.StreamShards = n
	}
	if v := getenv("FANOUT_SHUTDOWN_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			errs = append(errs, fmt.Errorf("FANOUT_SHUTDOWN_TIMEOUT=%q: use a duration of at least 1s, e.g. 25s", v))
		}
		c.ShutdownTimeout = d
	}
	if v := getenv("FANOUT_LOG_LEVEL"); v != "" {
		if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
			errs = append(errs, fmt.Errorf("FANOUT_LOG_LEVEL=%q: use debug, info, warn or error", v))
		}
	}
	errs = append(errs, checkEndpoints(getenv)...)
	errs = append(errs, readAuth(getenv, &c)...)
	names := map[string]string{}
	for _, n := range []struct{ v, name string }{
		{c.AgentsTable, "FANOUT_AGENTS_TABLE"}, {c.SubscribersTable, "FANOUT_SUBSCRIBERS_TABLE"},
		{c.SubscriberEventsTable, "FANOUT_SUBSCRIBER_EVENTS_TABLE"}, {c.DeadLettersTable, "FANOUT_DEAD_LETTERS_TABLE"},
		{c.EventIDsTable, "FANOUT_EVENT_IDS_TABLE"}, {c.ReplaysTable, "FANOUT_REPLAYS_TABLE"},
		{c.AggregatorLeaseTable, "FANOUT_AGGREGATOR_LEASE_TABLE"}, {c.PublisherLeaseTable, "FANOUT_PUBLISHER_LEASE_TABLE"},
	} {
		if other, dup := names[n.v]; dup {
			errs = append(errs, fmt.Errorf("%s and %s both name table %q: each table needs its own name", other, n.name, n.v))
		}
		names[n.v] = n.name
	}
	return c, errors.Join(errs...)
}
