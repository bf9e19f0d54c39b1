package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/uuid"
)

// Waiting for a concurrent registration of the same ARN.
const (
	// agentPollInterval is the pause between two reads of a pending row:
	// an owner usually needs two AWS calls (tens of ms) to activate it, so
	// a waiter answers soon after without many reads.
	agentPollInterval = 100 * time.Millisecond
	// agentWaitTimeout bounds the wait for a pending row to become active:
	// it covers an owner's CreateQueue and UpdateItem with the SDK's
	// retries, and keeps a request within any client's timeout.
	agentWaitTimeout = 5 * time.Second
	// agentClaimStale is the age from which a pending row's claim counts as
	// abandoned (its owner died half-way) and another registration takes
	// it over. It exceeds the longest an owner can still be at work — the
	// API's 30 s request timeout, then compensationTimeout — plus clock
	// skew between tasks, so a live owner is never taken over; and an owner
	// renews its claim (under a new token) before it deletes its queue, so
	// no one can take the claim over, and re-create the queue, while the
	// deletion is still running.
	agentClaimStale = 60 * time.Second
)

// compensationTimeout bounds the clean-up after a failed registration
// (renewing its claim, deleting its queue and its pending row). It runs even
// when the caller's context is done, or a cancelled request would leave its
// queue and row behind.
const compensationTimeout = 10 * time.Second

// agentItems is the part of the DynamoDB API that registration uses.
// *dynamodb.Client satisfies it; tests wrap one to inject failures the
// emulator cannot produce.
type agentItems interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
}

// agentQueues is the part of the SQS API that registration uses.
// *sqs.Client satisfies it; tests wrap one to inject failures.
type agentQueues interface {
	CreateQueue(ctx context.Context, in *sqs.CreateQueueInput, optFns ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error)
	DeleteQueue(ctx context.Context, in *sqs.DeleteQueueInput, optFns ...func(*sqs.Options)) (*sqs.DeleteQueueOutput, error)
}

// RegisterAgent returns the agent of resourceARN, registering it with a new
// FIFO queue the first time. It is idempotent and race-free: any number of
// concurrent calls with one ARN, in any processes, yield one agent and one
// queue, and it returns an agent only once its row and queue are both
// written. resourceARN must be a valid IAM principal ARN (the caller
// checks).
//
// The error wraps ErrInvalidPrincipal, as a *PrincipalError, when
// resourceARN is in another partition than the Store's account (found
// before any AWS call) or when SQS rejects it in the queue policy (a role or
// user that does not exist); nothing is left behind then. It wraps
// ErrRetryLater when SQS still refuses to re-create a recently deleted
// queue, or when a concurrent registration of the ARN neither completes
// within agentWaitTimeout nor is old enough to take over. A registration
// that fails half-way deletes its queue and row again, also when ctx is
// done; only when that clean-up fails too do they stay, and a later
// registration takes them over and completes them.
func (s *Store) RegisterAgent(ctx context.Context, resourceARN string) (Agent, error) {
	if a, ok := s.known.get(agentID(resourceARN)); ok {
		return a, nil
	}
	a, err := s.agentRegistrar().register(ctx, resourceARN)
	if err == nil {
		s.known.put(a.ID, a)
	}
	return a, err
}

// agentRegistrar returns the registrar over the Store's clients.
func (s *Store) agentRegistrar() registrar {
	return registrar{db: s.db, queues: s.sqs, table: s.tables.Agents, account: s.account, now: s.now, sleep: pause}
}

// registrar registers agents (RegisterAgent without the cache) over narrow
// clients, with an injectable clock and pause.
//
// Protocol: one registration claims an agent's row by writing it pending
// under a random token, conditionally on no row existing; only the claim's
// owner creates the queue, makes the row active, or, failing, deletes the
// queue and the row, and every one of those writes is conditional on its
// claim. The others wait for the row to become active, or take over a claim
// abandoned for agentClaimStale. As the queue's name follows from the ARN,
// every owner finds the same queue; a queue is deleted only by an owner
// holding a claim it renewed just before, so never under an active agent.
type registrar struct {
	db      agentItems
	queues  agentQueues
	table   string
	account Account
	// now is the clock of createdAt and claimedAt, and of claims' ages.
	now func() time.Time
	// sleep pauses for d, or returns ctx's error when ctx is done first.
	sleep func(ctx context.Context, d time.Duration) error
}

// register is RegisterAgent without the cache.
func (r registrar) register(ctx context.Context, resourceARN string) (Agent, error) {
	id := agentID(resourceARN)
	policy, err := queuePolicy(r.account, resourceARN, queueName(id))
	if err != nil {
		return Agent{}, fmt.Errorf("register agent %s: policy of queue %s: %w", id, queueName(id), err)
	}
	token := newClaimToken()
	const maxPolls = int(agentWaitTimeout / agentPollInterval)
	for polls := 0; ; polls++ {
		row, err := readAgentRow(ctx, r.db, r.table, id)
		switch {
		case errors.Is(err, ErrNotFound):
			won, err := r.claim(ctx, id, resourceARN, token)
			if err != nil {
				return Agent{}, err
			}
			if won {
				return r.create(ctx, id, resourceARN, policy, token)
			}
			// Lost to a concurrent claim: wait for it like for any other.
		case err != nil:
			return Agent{}, err
		case row.status == statusActive:
			return row.agent, nil
		case row.claim == token:
			// This call's claim landed although its answer was lost (the
			// SDK's retry of it then failed its condition).
			return r.create(ctx, id, resourceARN, policy, token)
		case polls >= maxPolls && r.now().Sub(row.claimedAt) >= agentClaimStale:
			took, err := r.takeOver(ctx, id, row.claim, row.claimedAt, token)
			if err != nil {
				return Agent{}, err
			}
			if took {
				return r.create(ctx, id, resourceARN, policy, token)
			}
		}
		if polls >= maxPolls {
			return Agent{}, fmt.Errorf("register agent %s: %w: a concurrent registration of it did not complete within %v",
				id, ErrRetryLater, agentWaitTimeout)
		}
		if err := r.sleep(ctx, agentPollInterval); err != nil {
			return Agent{}, fmt.Errorf("register agent %s: wait for a concurrent registration: %w", id, err)
		}
	}
}

// claim writes agent id's row pending under token, unless a row exists. It
// reports whether it did. When the write fails otherwise it may still have
// landed, so the claim is released again before the error is returned.
func (r registrar) claim(ctx context.Context, id, resourceARN, token string) (bool, error) {
	won, err := putIfAbsent(ctx, r.db, r.table, map[string]types.AttributeValue{
		attrAgentID:     attrS(id),
		attrResourceARN: attrS(resourceARN),
		attrStatus:      attrS(statusPending),
		attrClaim:       attrS(token),
		attrClaimedAt:   attrS(formatTime(r.now())),
	}, attrAgentID)
	if err == nil {
		return won, nil
	}
	err = fmt.Errorf("register agent %s: claim it in table %s: %w", id, r.table, err)
	cctx, cancel := compensationContext(ctx)
	defer cancel()
	return false, errors.Join(err, r.release(cctx, id, token))
}

// takeOver moves agent id's pending row from the abandoned claim old, made
// or renewed at oldSince, to token. It reports whether the row is now
// pending under token: not when another registration took it over or
// completed it first, nor when its owner renewed the claim meanwhile.
func (r registrar) takeOver(ctx context.Context, id, old string, oldSince time.Time, token string) (bool, error) {
	err := r.moveClaim(ctx, id, old, &oldSince, token)
	switch {
	case err == nil:
		return true, nil
	case hasCode(err, codeConditionalCheckFailed):
		// Taken over or completed by another, or this very write landed
		// and the SDK's retry of it failed.
		row, err := readAgentRow(ctx, r.db, r.table, id)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return false, err
		}
		return err == nil && row.status == statusPending && row.claim == token, nil
	}
	return false, fmt.Errorf("register agent %s: take over abandoned claim %s in table %s: %w", id, old, r.table, err)
}

// moveClaim moves agent id's pending row from claim from (made or renewed
// at fromSince, when given) to claim to, stamped now. The error is
// DynamoDB's: a ConditionalCheckFailed one when the row is not pending
// under from (at fromSince) any more.
func (r registrar) moveClaim(ctx context.Context, id, from string, fromSince *time.Time, to string) error {
	cond := "#token = :from AND #status = :pending"
	values := map[string]types.AttributeValue{
		":to":      attrS(to),
		":since":   attrS(formatTime(r.now())),
		":from":    attrS(from),
		":pending": attrS(statusPending),
	}
	if fromSince != nil {
		cond += " AND #since = :fromSince"
		values[":fromSince"] = attrS(formatTime(*fromSince))
	}
	_, err := r.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(r.table),
		Key:                       agentKey(id),
		UpdateExpression:          aws.String("SET #token = :to, #since = :since"),
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeNames:  map[string]string{"#token": attrClaim, "#since": attrClaimedAt, "#status": attrStatus},
		ExpressionAttributeValues: values,
	})
	return err
}

// create runs as the owner of agent id's claim token: it creates (or, after
// an abandoned claim, finds) the queue and makes the row active. On failure
// it deletes what it created, unless its claim has moved on.
func (r registrar) create(ctx context.Context, id, resourceARN, policy, token string) (Agent, error) {
	queueURL, err := createQueue(ctx, r.queues, id, resourceARN, policy)
	if err != nil {
		cctx, cancel := compensationContext(ctx)
		defer cancel()
		return Agent{}, errors.Join(err, r.release(cctx, id, token))
	}
	a := Agent{ID: id, QueueURL: queueURL, ResourceARN: resourceARN, CreatedAt: r.now().UTC().Truncate(time.Millisecond)}
	_, err = r.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                aws.String(r.table),
		Key:                      agentKey(id),
		UpdateExpression:         aws.String("SET #status = :active, #url = :url, #created = :created"),
		ConditionExpression:      aws.String("#token = :token AND #status = :pending"),
		ExpressionAttributeNames: map[string]string{"#status": attrStatus, "#url": attrQueueURL, "#created": attrCreatedAt, "#token": attrClaim},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":active":  attrS(statusActive),
			":url":     attrS(a.QueueURL),
			":created": attrS(formatTime(a.CreatedAt)),
			":token":   attrS(token),
			":pending": attrS(statusPending),
		},
	})
	switch {
	case err == nil:
		return a, nil
	case hasCode(err, codeConditionalCheckFailed):
		// The claim moved on (taken over, so the queue is the taker's
		// too), or this very write landed and the SDK's retry of it failed.
		cctx, cancel := compensationContext(ctx)
		defer cancel()
		return r.afterClaimLost(cctx, id, fmt.Errorf("activate agent %s in table %s: %w", id, r.table, err))
	}
	err = fmt.Errorf("register agent %s: activate it in table %s: %w", id, r.table, err)
	return r.compensate(ctx, id, token, queueURL, err)
}

// compensate runs after the owner of claim token could not activate agent
// id's row (actErr): it deletes the queue and the pending row, under a
// context of its own that outlives ctx. It first renews the claim, which
// proves the row still pending and owned, and keeps takers away while the
// queue is deleted (see agentClaimStale); when the claim has moved on or
// the activation landed after all, it deletes nothing and returns the agent
// if there is one. When the renewal fails, queue and row stay: a later
// registration takes them over once the claim is stale.
func (r registrar) compensate(ctx context.Context, id, token, queueURL string, actErr error) (Agent, error) {
	ctx, cancel := compensationContext(ctx)
	defer cancel()
	// Renew the claim under a new token: an activation of this call still
	// on its way (its answer lost, not its request) then fails its
	// condition instead of activating an agent whose queue is going.
	renewed := newClaimToken()
	err := r.moveClaim(ctx, id, token, nil, renewed)
	switch {
	case hasCode(err, codeConditionalCheckFailed):
		return r.afterClaimLost(ctx, id, actErr)
	case err != nil:
		return Agent{}, errors.Join(actErr, fmt.Errorf("renew claim on agent %s to clean up: %w", id, err))
	}
	if _, err := r.queues.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(queueURL)}); err != nil {
		return Agent{}, errors.Join(actErr, fmt.Errorf("delete queue %s of unregistered agent %s: %w", queueURL, id, err))
	}
	return Agent{}, errors.Join(actErr, r.release(ctx, id, renewed))
}

// afterClaimLost runs when an owner's claim on agent id turned out to have
// moved on, cause saying how: it returns the agent if the row is active (a
// taker completed it, or the owner's own write landed), and otherwise an
// error wrapping ErrRetryLater. It deletes nothing.
func (r registrar) afterClaimLost(ctx context.Context, id string, cause error) (Agent, error) {
	row, err := readAgentRow(ctx, r.db, r.table, id)
	switch {
	case err == nil && row.status == statusActive:
		return row.agent, nil
	case err != nil && !errors.Is(err, ErrNotFound):
		return Agent{}, errors.Join(cause, err)
	}
	return Agent{}, fmt.Errorf("register agent %s: %w: its claim moved to a concurrent registration: %w", id, ErrRetryLater, cause)
}

// release deletes agent id's row if it is still pending under claim token;
// a row that is not (any more) is left alone.
func (r registrar) release(ctx context.Context, id, token string) error {
	_, err := r.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                aws.String(r.table),
		Key:                      agentKey(id),
		ConditionExpression:      aws.String("#token = :token AND #status = :pending"),
		ExpressionAttributeNames: map[string]string{"#token": attrClaim, "#status": attrStatus},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":token":   attrS(token),
			":pending": attrS(statusPending),
		},
	})
	if err == nil || hasCode(err, codeConditionalCheckFailed) {
		return nil
	}
	return fmt.Errorf("release claim on agent %s in table %s: %w", id, r.table, err)
}

// compensationContext returns the context of a clean-up after a failure in
// ctx: it keeps ctx's values but not its cancellation, and ends after
// compensationTimeout.
func compensationContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), compensationTimeout)
}

// pause sleeps for d, or returns ctx's error when ctx is done first.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// newClaimToken returns a fresh, unguessable claim token.
func newClaimToken() string { return uuid.NewString() }
