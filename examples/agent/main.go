// Command agent is an example fanout agent built on package client: it
// registers its own IAM principal, follows a producer, consumes its own
// queue in order and publishes a derived event for each event it gets.
// With -send it plays a producer instead; with -token it prints a bearer
// token for curl. AWS credentials, region and endpoints come from the AWS
// SDK's usual chain (AWS_PROFILE, AWS_ENDPOINT_URL, ...).
//
//	go run ./examples/agent -follow <producerId>
//	go run ./examples/agent -send greeting
//	curl -H "Authorization: Bearer $(go run ./examples/agent -token)" localhost:8080/agents/<id>
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/fanout/fanout/auth"
	"github.com/fanout/fanout/client"
)

// derivedType is the type of the events the agent publishes; it derives
// nothing from them, so two agents following each other do not loop.
const derivedType = "derived"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err == nil {
		err = run(ctx, os.Args[1:], awsCfg, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
}

// run is the agent with command-line args, AWS configuration awsCfg and
// output out, until ctx is done.
func run(ctx context.Context, args []string, awsCfg aws.Config, out io.Writer) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	api := fs.String("api", envOr("FANOUT_URL", "http://localhost:8080"), "fanout's API URL ($FANOUT_URL)")
	audience := fs.String("audience", envOr("FANOUT_AUDIENCE", auth.DefaultAudience), "the deployment's FANOUT_AUDIENCE")
	arn := fs.String("arn", "", "principal to register as this agent (default: your own; an admin may name another)")
	follow := fs.String("follow", "", "agentId of a producer to follow")
	send := fs.String("send", "", "play a producer instead: publish an event of this type every second")
	token := fs.Bool("token", false, "print a bearer token and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c := client.New(client.Config{URL: *api, AWS: awsCfg, Audience: *audience})
	if *token {
		t, err := c.Token(ctx)
		if err == nil {
			fmt.Fprintln(out, t)
		}
		return err
	}
	if *arn == "" {
		own, err := ownPrincipal(ctx, awsCfg)
		if err != nil {
			return err
		}
		*arn = own
	}
	me, err := c.Register(ctx, *arn)
	if err != nil {
		return fmt.Errorf("register %s: %w", *arn, err)
	}
	fmt.Fprintf(out, "agent %s (%s), queue %s\n", me.AgentID, me.ResourceARN, me.QueueURL)
	if *send != "" {
		return produce(ctx, c, me, *send, out)
	}
	if *follow != "" {
		if err := c.Subscribe(ctx, me.AgentID, *follow); err != nil {
			return fmt.Errorf("follow %s: %w", *follow, err)
		}
		fmt.Fprintf(out, "following %s\n", *follow)
	}
	consumer := &client.Consumer{
		Queue:    sqs.NewFromConfig(awsCfg),
		QueueURL: me.QueueURL,
		Errors:   func(err error) { fmt.Fprintln(out, "retrying after:", err) },
	}
	return consumer.Run(ctx, func(ctx context.Context, m client.Message) error {
		fmt.Fprintf(out, "got %s %s from %s: %s\n", m.EventType, m.EventID, m.AgentID, m.Data)
		if m.EventType == derivedType {
			return nil
		}
		d, err := derive(me, m)
		if err != nil {
			return err
		}
		if _, err := c.Publish(ctx, d); err != nil {
			return err // the message comes again; its derived event keeps its id
		}
		fmt.Fprintf(out, "published %s %s\n", d.EventType, d.EventID)
		return nil
	})
}

// derive is the event the agent publishes for m. Its eventId comes from
// m's producer and eventId, so a redelivered m (a lost delete, a crash
// before it) derives the very same event, which fanout delivers once.
func derive(me client.Agent, m client.Message) (client.Event, error) {
	sum := sha256.Sum256([]byte(m.AgentID + "\x00" + m.EventID))
	data, err := json.Marshal(map[string]any{"from": m.EventID, "producer": m.AgentID, "original": m.Data})
	if err != nil {
		return client.Event{}, err
	}
	return client.Event{AgentID: me.AgentID, EventID: "derived-" + hex.EncodeToString(sum[:16]), EventType: derivedType, Data: data}, nil
}

// produce publishes an event of eventType as me every second until ctx is done.
func produce(ctx context.Context, c *client.Client, me client.Agent, eventType string, out io.Writer) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for n := 0; ; n++ {
		rs, err := c.Publish(ctx, client.Event{AgentID: me.AgentID, EventType: eventType, Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))})
		if errors.Is(err, context.Canceled) || ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "published %s %s\n", eventType, rs[0].EventID)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// ownPrincipal is the principal to register for the caller's credentials:
// a role session's role (without its path, which STS does not say: pass
// -arn with it if the role has one), else the user or account itself.
func ownPrincipal(ctx context.Context, awsCfg aws.Config) (string, error) {
	id, err := sts.NewFromConfig(awsCfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return "", fmt.Errorf("who am I (sts:GetCallerIdentity): %w", err)
	}
	p, err := auth.ParsePrincipal(aws.ToString(id.Arn))
	if err != nil {
		return "", err
	}
	if p.Kind == auth.Role {
		return fmt.Sprintf("arn:%s:iam::%s:role/%s", p.Partition, p.Account, p.Name), nil
	}
	return p.ARN, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
