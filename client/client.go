// Package client is fanout's Go client, for producers and agents: typed
// calls for every endpoint of the API, authenticated with the caller's own
// AWS credentials (a bearer token minted with the SDK's STS presigner), and
// a consumer of the agent's own queue.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/fanout/fanout/auth"
)

// Config says where fanout is and who calls it.
type Config struct {
	// URL is the API's base URL, e.g. https://fanout.internal.example.com.
	URL string
	// AWS holds the caller's credentials and region; its STS endpoint
	// (AWS_ENDPOINT_URL_STS, say) is what tokens are presigned for.
	AWS aws.Config
	// Audience is the deployment's FANOUT_AUDIENCE; "" means "fanout".
	Audience string
	// HTTPClient sends the requests; nil means http.DefaultClient.
	HTTPClient *http.Client
}

// Client calls one fanout deployment as one AWS principal. It is safe for
// concurrent use.
type Client struct {
	url    string
	http   *http.Client
	tokens *tokens
}

// New returns a Client for cfg. It makes no call: tokens are minted on the
// first request.
func New(cfg Config) *Client {
	if cfg.Audience == "" {
		cfg.Audience = auth.DefaultAudience
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	return &Client{url: strings.TrimRight(cfg.URL, "/"), http: cfg.HTTPClient, tokens: newTokens(cfg.AWS, cfg.Audience)}
}

// Token returns a bearer token for this client's principal and audience,
// valid for at least 5 more minutes: for calls the client does not make
// (curl -H "Authorization: Bearer $TOKEN"). The client mints one with the
// SDK's STS presigner, without any network call, and renews it as it
// nears expiry.
func (c *Client) Token(ctx context.Context) (string, error) { return c.tokens.get(ctx) }

// Error is an answer of fanout other than success: its status and the
// message fanout sent, which says what to fix.
type Error struct {
	Status  int
	Message string
	// RetryAfter is the wait fanout asked for with a 503, else 0.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	return fmt.Sprintf("fanout: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// StatusOf is the HTTP status of an *Error in err, 0 when there is none.
func StatusOf(err error) int {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Status
	}
	return 0
}

// do sends one authenticated request with body in (JSON, or none when nil)
// and decodes a success answer into out (when not nil). An answer other
// than want is an *Error.
func (c *Client) do(ctx context.Context, method, path string, in, out any, want int) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("fanout client: encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	token, err := c.Token(ctx)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url+path, body)
	if err != nil {
		return fmt.Errorf("fanout client: %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("fanout client: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("fanout client: %s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode != want {
		e := &Error{Status: resp.StatusCode, Message: strings.TrimSpace(string(data))}
		var eb struct{ Error string }
		if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
			e.Message = eb.Error
		}
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			e.RetryAfter = time.Duration(secs) * time.Second
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("fanout client: %s %s: decode answer: %w", method, path, err)
	}
	return nil
}
