package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// ReplayWindow is what a replay re-delivers: the listener's events with
// From <= timestamp < To (zero To: up to now), of ProducerID only when
// set.
type ReplayWindow struct {
	From, To   time.Time
	ProducerID string
}

// Replay is a replay's state, as the API shows it.
type Replay struct {
	ReplayID   string `json:"replayId"`
	ListenerID string `json:"listenerId"`
	// State is running, done, cancelled or failed.
	State      string `json:"state"`
	From       string `json:"from"`
	To         string `json:"to"`
	ProducerID string `json:"producerId,omitempty"`
	Progress   struct {
		Sent          int    `json:"sent"`
		Found         int    `json:"found"`
		LastTimestamp string `json:"lastTimestamp,omitempty"`
	} `json:"progress"`
	Errors     []string `json:"errors"`
	ErrorCount int      `json:"errorCount"`
}

// Replay starts re-delivering w of listener's events into its queue
// (marked Replayed, with the replay's id) and returns the replay, running.
func (c *Client) Replay(ctx context.Context, listener string, w ReplayWindow) (Replay, error) {
	body := map[string]string{"from": w.From.UTC().Format(time.RFC3339Nano)}
	if !w.To.IsZero() {
		body["to"] = w.To.UTC().Format(time.RFC3339Nano)
	}
	if w.ProducerID != "" {
		body["producerId"] = w.ProducerID
	}
	var r Replay
	err := c.do(ctx, http.MethodPost, "/agents/"+url.PathEscape(listener)+"/replays", body, &r, http.StatusAccepted)
	return r, err
}

// ReplayStatus returns replay id of listener.
func (c *Client) ReplayStatus(ctx context.Context, listener, id string) (Replay, error) {
	var r Replay
	err := c.do(ctx, http.MethodGet, replayPath(listener, id), nil, &r, http.StatusOK)
	return r, err
}

// CancelReplay cancels replay id of listener (idempotent) and returns it.
func (c *Client) CancelReplay(ctx context.Context, listener, id string) (Replay, error) {
	var r Replay
	err := c.do(ctx, http.MethodDelete, replayPath(listener, id), nil, &r, http.StatusOK)
	return r, err
}

func replayPath(listener, id string) string {
	return "/agents/" + url.PathEscape(listener) + "/replays/" + url.PathEscape(id)
}
