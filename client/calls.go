package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/google/uuid"

	"github.com/fanout/fanout/event"
)

// The API's values.
type (
	// Event is an event to publish. Publish fills in an empty EventID (a
	// random UUID) and Timestamp (now) before its first attempt.
	Event = event.Event
	// Receipt says where an accepted event landed.
	Receipt = event.Receipt
	// Message is what an agent receives for one event.
	Message = event.Message
)

// Agent is a registered agent.
type Agent struct {
	AgentID     string `json:"agentId"`
	QueueURL    string `json:"queueUrl"`
	ResourceARN string `json:"resourceArn"`
	CreatedAt   string `json:"createdAt"`
}

// Subscription is a producer an agent follows.
type Subscription struct {
	ProducerID string `json:"producerId"`
	CreatedAt  string `json:"createdAt"`
	// Filter is the subscription's SNS-style filter policy; nil when it
	// has none (every event).
	Filter json.RawMessage `json:"filter,omitempty"`
}

// Ended is a subscription a narrowed subscribers-policy ended.
type Ended struct {
	ListenerID  string `json:"listenerId"`
	ResourceARN string `json:"resourceArn"`
}

// publishAttempts and the pause bounds are how long Publish keeps at a
// 503: about a minute of Kinesis throttling or an STS outage.
const (
	publishAttempts = 8
	minPause        = 200 * time.Millisecond
	maxPause        = 10 * time.Second
)

// Register registers resourceARN (the caller's own principal, unless the
// caller is an admin) and returns its agent, existing or new.
func (c *Client) Register(ctx context.Context, resourceARN string) (Agent, error) {
	var a Agent
	err := c.do(ctx, http.MethodPost, "/agents", map[string]string{"resourceArn": resourceARN}, &a, http.StatusOK)
	return a, err
}

// Agent returns agent id.
func (c *Client) Agent(ctx context.Context, id string) (Agent, error) {
	var a Agent
	err := c.do(ctx, http.MethodGet, "/agents/"+url.PathEscape(id), nil, &a, http.StatusOK)
	return a, err
}

// Subscribe makes listener follow producer (idempotent), with no filter:
// every event.
func (c *Client) Subscribe(ctx context.Context, listener, producer string) error {
	return c.do(ctx, http.MethodPut, subscriptionPath(listener, producer), nil, nil, http.StatusNoContent)
}

// SubscribeFiltered makes listener follow producer's events that pass
// filter, an SNS-style filter policy on eventType and data fields (see
// the README); a repeat replaces the filter.
func (c *Client) SubscribeFiltered(ctx context.Context, listener, producer string, filter json.RawMessage) error {
	return c.do(ctx, http.MethodPut, subscriptionPath(listener, producer), map[string]json.RawMessage{"filter": filter}, nil, http.StatusNoContent)
}

// Unsubscribe makes listener stop following producer (idempotent).
func (c *Client) Unsubscribe(ctx context.Context, listener, producer string) error {
	return c.do(ctx, http.MethodDelete, subscriptionPath(listener, producer), nil, nil, http.StatusNoContent)
}

func subscriptionPath(listener, producer string) string {
	return "/agents/" + url.PathEscape(listener) + "/subscriptions/" + url.PathEscape(producer)
}

// Subscriptions lists the producers listener follows.
func (c *Client) Subscriptions(ctx context.Context, listener string) ([]Subscription, error) {
	var out struct {
		Subscriptions []Subscription `json:"subscriptions"`
	}
	err := c.do(ctx, http.MethodGet, "/agents/"+url.PathEscape(listener)+"/subscriptions", nil, &out, http.StatusOK)
	return out.Subscriptions, err
}

// SubscribersPolicy returns who may subscribe to producer: account ids,
// principal ARNs or "*".
func (c *Client) SubscribersPolicy(ctx context.Context, producer string) ([]string, error) {
	var out struct {
		Allow []string `json:"allow"`
	}
	err := c.do(ctx, http.MethodGet, policyPath(producer), nil, &out, http.StatusOK)
	return out.Allow, err
}

// SetSubscribersPolicy sets who may subscribe to producer and returns the
// subscriptions the new policy ended.
func (c *Client) SetSubscribersPolicy(ctx context.Context, producer string, allow []string) ([]Ended, error) {
	var out struct {
		Ended []Ended `json:"ended"`
	}
	err := c.do(ctx, http.MethodPut, policyPath(producer), map[string][]string{"allow": allow}, &out, http.StatusOK)
	return out.Ended, err
}

func policyPath(producer string) string {
	return "/agents/" + url.PathEscape(producer) + "/subscribers-policy"
}

// Publish posts events (1 to 500, each of the caller's own agent unless
// it is an admin) and returns a receipt per event, in order. It fills in
// missing eventIds and timestamps once, then retries a 503 or a lost answer
// with the very same events, so a retry that follows an attempt which did
// land is dropped downstream, delivered to no one twice. It gives up when
// ctx is done or after about a minute; other errors it returns at once.
func (c *Client) Publish(ctx context.Context, events ...Event) ([]Receipt, error) {
	now := time.Now().UTC().Format(event.TimeLayout)
	batch := make([]Event, len(events))
	for i, e := range events {
		if e.EventID == "" {
			e.EventID = uuid.NewString()
		}
		if e.Timestamp == "" {
			e.Timestamp = now
		}
		if len(e.Data) == 0 {
			e.Data = json.RawMessage("null")
		}
		batch[i] = e
	}
	pause := minPause
	for attempt := 1; ; attempt++ {
		var out struct {
			Events []Receipt `json:"events"`
		}
		err := c.do(ctx, http.MethodPost, "/events", batch, &out, http.StatusAccepted)
		if err == nil {
			return out.Events, nil
		}
		var fe *Error
		retryable := !errors.As(err, &fe) || fe.Status == http.StatusServiceUnavailable
		if !retryable || attempt == publishAttempts || ctx.Err() != nil {
			return nil, err
		}
		wait := pause
		if fe != nil && fe.RetryAfter > wait {
			wait = fe.RetryAfter
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last attempt: %w)", ctx.Err(), err)
		case <-time.After(wait):
		}
		pause = min(2*pause, maxPause)
	}
}
