package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
)

// DeadLetter is a record or message fanout set aside, and why.
type DeadLetter struct {
	ID           string `json:"id"`
	Stage        string `json:"stage"` // aggregator or publisher
	ProducerID   string `json:"producerId,omitempty"`
	SubscriberID string `json:"subscriberId,omitempty"`
	// Reason says what went wrong and what an operator can do.
	Reason         string `json:"reason"`
	ShardID        string `json:"shardId"`
	SequenceNumber string `json:"sequenceNumber"`
	CreatedAt      string `json:"createdAt"`
	RedrivenAt     string `json:"redrivenAt,omitempty"`
	DataBytes      int    `json:"dataBytes"`
	Truncated      bool   `json:"truncated"`
	// Data is the record or message body (DeadLetter only, not in lists).
	Data *string `json:"data,omitempty"`
}

// DeadLetterQuery narrows a listing; the zero value lists all (admins).
// An agent lists its own with SubscriberID set to its id.
type DeadLetterQuery struct {
	Stage, ProducerID, SubscriberID string
	Limit                           int    // 0: the server's default
	Cursor                          string // Next of the page before
}

// DeadLetters returns one page of dead letters, newest first, and the
// cursor of the next ("" on the last).
func (c *Client) DeadLetters(ctx context.Context, q DeadLetterQuery) (page []DeadLetter, next string, err error) {
	v := url.Values{}
	for k, val := range map[string]string{"stage": q.Stage, "producerId": q.ProducerID, "subscriberId": q.SubscriberID, "cursor": q.Cursor} {
		if val != "" {
			v.Set(k, val)
		}
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	path := "/deadletters"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var out struct {
		DeadLetters []DeadLetter `json:"deadLetters"`
		Next        string       `json:"next"`
	}
	err = c.do(ctx, http.MethodGet, path, nil, &out, http.StatusOK)
	return out.DeadLetters, out.Next, err
}

// DeadLetter returns dead letter id with its data.
func (c *Client) DeadLetter(ctx context.Context, id string) (DeadLetter, error) {
	var d DeadLetter
	err := c.do(ctx, http.MethodGet, deadLetterPath(id), nil, &d, http.StatusOK)
	return d, err
}

// RedriveDeadLetter puts dead letter id back into its stage once its cause
// is fixed (admins); a second redrive sends nothing. A 409 (StatusOf)
// means the cause is still there or it can never be redriven.
func (c *Client) RedriveDeadLetter(ctx context.Context, id string) (DeadLetter, error) {
	var d DeadLetter
	err := c.do(ctx, http.MethodPost, deadLetterPath(id)+"/redrive", nil, &d, http.StatusOK)
	return d, err
}

// DeleteDeadLetter discards dead letter id (admins; idempotent).
func (c *Client) DeleteDeadLetter(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, deadLetterPath(id), nil, nil, http.StatusNoContent)
}

// deadLetterPath escapes id's slashes: an id is one path segment.
func deadLetterPath(id string) string { return "/deadletters/" + url.PathEscape(id) }
