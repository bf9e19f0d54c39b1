// Package server is fanout's HTTP API: routing, request decoding and
// validation, and the mapping of outcomes to status codes. It does no AWS
// calls itself; it drives the agents, subscriptions and event stream
// through the small interfaces below.
package server

import (
	"context"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"go.uber.org/zap"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/metrics"
	"github.com/fanout/fanout/store"
)

// Defaults for Config.
const (
	// defaultRequestTimeout stays below the ALB's default 60 s idle timeout,
	// so a caller stuck behind a slow AWS call gets our 503 (and Retry-After),
	// not the load balancer's 504.
	defaultRequestTimeout = 30 * time.Second
	// defaultReadyTimeout stays below the ALB health check's default 5 s
	// timeout, so /readyz answers 503 rather than being cut off.
	defaultReadyTimeout = 3 * time.Second
	// defaultRetryAfter is long enough for Kinesis' per-second shard limits
	// to refill and short enough not to stall producers.
	defaultRetryAfter = 2 * time.Second
)

// Config holds the API's tunable limits and who may call it. A zero field
// takes its default. Limits fixed by AWS (batch size, body and record
// sizes) are constants, not configuration.
type Config struct {
	// Auth authenticates callers; the zero Auth lets anyone do anything
	// (FANOUT_AUTH=none).
	Auth Auth
	// RequestTimeout bounds the work one request may do (AWS calls included).
	RequestTimeout time.Duration
	// ReadyTimeout bounds one readiness check behind GET /readyz.
	ReadyTimeout time.Duration
	// RetryAfter is what 503 answers put in their Retry-After header
	// (rounded up to whole seconds).
	RetryAfter time.Duration
	// Metrics records requests and posted events, and is served at
	// GET /metrics; nil records nothing and serves an empty registry.
	Metrics *metrics.Metrics
}

func (c Config) withDefaults() Config {
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = defaultRequestTimeout
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = defaultReadyTimeout
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = defaultRetryAfter
	}
	return c
}

// agents registers and looks up agents. *store.Store satisfies it.
type agents interface {
	// RegisterAgent returns the agent of resourceARN, creating it and its
	// queue when there is none. Concurrent calls with one ARN yield one agent.
	RegisterAgent(ctx context.Context, resourceARN string) (store.Agent, error)
	// Agent returns the agent agentID, or an error wrapping store.ErrNotFound.
	Agent(ctx context.Context, agentID string) (store.Agent, error)
	// SubscribersPolicy returns who may subscribe to agentID, as last set
	// (never stale), and set=false when it set none.
	SubscribersPolicy(ctx context.Context, agentID string) (allow []string, set bool, err error)
	// SetSubscribersPolicy replaces who may subscribe to agentID.
	SetSubscribersPolicy(ctx context.Context, agentID string, allow []string) error
}

// subscriptions records who follows whom. *store.Store satisfies it. All
// methods are idempotent.
type subscriptions interface {
	Subscribe(ctx context.Context, producerID, subscriberID string, filter []byte) error
	Unsubscribe(ctx context.Context, producerID, subscriberID string) error
	// Producers lists the subscriptions of subscriberID (empty when none).
	Producers(ctx context.Context, subscriberID string) ([]store.Subscription, error)
	// Subscribers lists the subscriptions to producerID, read
	// consistently, ended ones (DeletedAt set) included.
	Subscribers(ctx context.Context, producerID string) ([]store.Subscription, error)
}

// publisher puts events into the event stream. *event.Ingest satisfies it.
type publisher interface {
	// Publish puts the events into the stream, all or nothing from the
	// caller's view: it returns a receipt per event, in order, only when
	// every event is durably in Kinesis; event.ErrUnavailable (wrapped)
	// when Kinesis cannot take them.
	Publish(ctx context.Context, events []event.Event) ([]event.Receipt, error)
}

// readiness reports whether this task can do its work. The app satisfies it.
type readiness interface {
	// Ready returns nil when AWS is reachable and the workers run, else
	// the reason it is not ready.
	Ready(ctx context.Context) error
}

// api holds the handlers' dependencies. Its methods are safe for
// concurrent use as long as the dependencies are.
type api struct {
	cfg      Config
	auth     Auth
	agents   agents
	subs     subscriptions
	pub      publisher
	ready    readiness
	dead     deadLetters
	redriver redriver
	replays  replays
	log      *zap.Logger
}

// Deps is what the API drives. *store.Store serves Agents, Subscriptions
// and DeadLetters; *pipeline.Ingest Events; *pipeline.Redriver Redriver;
// the app Ready. Named, so that no two can be swapped.
type Deps struct {
	Agents        agents
	Subscriptions subscriptions
	Events        publisher
	Ready         readiness
	DeadLetters   deadLetters
	Redriver      redriver
	Replays       replays
}

// New returns the HTTP API of fanout (see the routes below, the README's
// API section and server/openapi.json). Every answer is JSON; every error
// body is {"error": "..."}. The handler is safe for concurrent use; it
// keeps no state between requests.
func New(cfg Config, deps Deps, log *zap.Logger) http.Handler {
	h := &api{cfg: cfg.withDefaults(), auth: cfg.Auth, agents: deps.Agents, subs: deps.Subscriptions, pub: deps.Events,
		ready: deps.Ready, dead: deps.DeadLetters, redriver: deps.Redriver, replays: deps.Replays, log: log}
	mux := chi.NewRouter()
	mux.Use(withRequestID, h.logRequests, h.countRequests, h.recoverPanics, h.withTimeout)
	mux.NotFound(h.notFound)
	mux.MethodNotAllowed(h.methodNotAllowed(mux))

	mux.Get("/healthz", h.healthz)
	mux.Get("/readyz", h.readyz)
	mux.Group(func(mux chi.Router) {
		mux.Use(h.authenticate)
		mux.Post("/agents", h.registerAgent)
		mux.Get("/agents/{agentId}", h.getAgent)
		mux.Get("/agents/{listenerId}/subscriptions", h.listSubscriptions)
		mux.Put("/agents/{listenerId}/subscriptions/{producerId}", h.subscribe)
		mux.Delete("/agents/{listenerId}/subscriptions/{producerId}", h.unsubscribe)
		mux.Get("/agents/{producerId}/subscribers-policy", h.getPolicy)
		mux.Put("/agents/{producerId}/subscribers-policy", h.putPolicy)
		mux.Post("/events", h.postEvents)
		mux.Post("/agents/{listenerId}/replays", h.postReplay)
		mux.Get("/agents/{listenerId}/replays/{replayId}", h.getReplay)
		mux.Delete("/agents/{listenerId}/replays/{replayId}", h.cancelReplay)
		mux.Get("/deadletters", h.listDeadLetters)
		mux.Get("/deadletters/{id}", h.getDeadLetter)
		mux.Post("/deadletters/{id}/redrive", h.redriveDeadLetter)
		mux.Delete("/deadletters/{id}", h.deleteDeadLetter)
	})
	// Open like /healthz: scrapers and API tools carry no token, and
	// neither answer holds an id or a secret.
	mux.Method(http.MethodGet, "/metrics", h.cfg.Metrics.Handler())
	mux.Get("/openapi.json", serveOpenAPI)

	for _, op := range documentedOperations() {
		h.cfg.Metrics.HTTPRoute(op.method, op.path, op.statuses)
	}
	return mux
}
