package client_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"go.uber.org/zap"

	"github.com/fanout/fanout/client"
	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/server"
	"github.com/fanout/fanout/store"
	"github.com/fanout/fanout/store/memstore"
)

type noEvents struct{}

func (noEvents) Publish(context.Context, []event.Event) ([]event.Receipt, error) {
	return nil, event.ErrUnavailable
}

type ready struct{}

func (ready) Ready(context.Context) error { return nil }

type noRedrive struct{}

func (noRedrive) Redrive(context.Context, string) (store.DeadLetter, error) {
	return store.DeadLetter{}, store.ErrNotFound
}

// TestControlsRoundTrip: the client's filter and dead-letter calls against
// fanout's own HTTP API (over the in-memory store, authentication off).
func TestControlsRoundTrip(t *testing.T) {
	t.Parallel()
	st := memstore.New(nil)
	for _, id := range []string{"p", "l"} {
		st.AddAgent(store.Agent{ID: id, QueueURL: "https://sqs.test/" + id, ResourceARN: "arn:aws:iam::123456789012:role/" + id})
	}
	h := server.New(server.Config{}, server.Deps{Agents: st, Subscriptions: st, Events: noEvents{}, Ready: ready{}, DeadLetters: st, Redriver: noRedrive{}}, zap.NewNop())
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := client.New(client.Config{URL: srv.URL, AWS: aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKIAEXAMPLE", "secret", "")}})
	ctx := context.Background()

	filter := json.RawMessage(`{"eventType":["order"]}`)
	if err := c.SubscribeFiltered(ctx, "l", "p", filter); err != nil {
		t.Fatal(err)
	}
	subs, err := c.Subscriptions(ctx, "l")
	if err != nil || len(subs) != 1 || string(subs[0].Filter) != string(filter) {
		t.Fatalf("Subscriptions = %+v, %v; want p with filter %s", subs, err, filter)
	}
	if err := c.SubscribeFiltered(ctx, "l", "p", json.RawMessage(`{"eventType":"order"}`)); client.StatusOf(err) != http.StatusBadRequest {
		t.Errorf("SubscribeFiltered(bad filter) = %v, want a 400", err)
	}

	id := "publisher/l/p/e1"
	if _, err := st.PutDeadLetter(ctx, store.DeadLetter{ID: id, Stage: "publisher", SubscriberID: "l", ProducerID: "p", Reason: "queue gone", ShardID: "s", Seq: "1", Data: []byte(`{"n":1}`)}); err != nil {
		t.Fatal(err)
	}
	page, next, err := c.DeadLetters(ctx, client.DeadLetterQuery{SubscriberID: "l", Limit: 10})
	if err != nil || len(page) != 1 || page[0].ID != id || next != "" {
		t.Fatalf("DeadLetters = %+v, %q, %v; want the one letter", page, next, err)
	}
	d, err := c.DeadLetter(ctx, id)
	if err != nil || d.Data == nil || *d.Data != `{"n":1}` {
		t.Fatalf("DeadLetter(%s) = %+v, %v; want it with its data", id, d, err)
	}
	if _, err := c.RedriveDeadLetter(ctx, "publisher/none"); client.StatusOf(err) != http.StatusNotFound {
		t.Errorf("RedriveDeadLetter(unknown) = %v, want a 404", err)
	}
	if err := c.DeleteDeadLetter(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeadLetter(ctx, id); client.StatusOf(err) != http.StatusNotFound {
		t.Errorf("DeadLetter after delete = %v, want a 404", err)
	}
}
