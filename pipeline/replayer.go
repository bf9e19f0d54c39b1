package pipeline

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/smithy-go"
	"go.uber.org/zap"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/metrics"
	"github.com/fanout/fanout/store"
)

// Bounds of replaying, per task. Every task runs a Replayer, so a
// deployment of n tasks replays at up to n times these.
const (
	// maxRunningReplays is how many replays one task runs at once: they
	// share its rates, so more at once would only make each slower, and
	// a replay past this waits (running, unowned) for a free slot on
	// any task.
	maxRunningReplays = 4
	// DefaultReplayRate is how many events a second one task re-delivers,
	// all its replays together: 100 messages/s is 10 SendMessageBatch
	// calls/s, far below what one FIFO queue takes (300 calls/s per
	// group), so live delivery into the same queue keeps its pace.
	DefaultReplayRate = 100
	// DefaultReplayReads is how many SubscriberEvents Query pages a second
	// one task reads: a 1 MB strongly consistent page costs 256 read
	// units, so 2 pages/s caps replay reads at about 512 RCU/s per task;
	// at 1 KB events a page feeds DefaultReplayRate for 10 s.
	DefaultReplayReads = 2
	// replayLease is how long a task holds a replay without saving its
	// progress; after that another task takes it over. It saves after
	// every batch (at least every 10 events), so only a task that stopped
	// or is stuck on a call loses it. 10 s, like KCL's lease failover.
	replayLease = 10 * time.Second
	// replayPoll is how often a task looks for replays to run: a new one
	// starts within about a second (the index is eventually consistent),
	// an abandoned one within replayLease + replayPoll.
	replayPoll = time.Second
	// releaseTimeout bounds the last write of a replay at shutdown, which
	// hands it to another task at once.
	releaseTimeout = 5 * time.Second
)

// replayStore is satisfied by *store.Store (see its methods for the
// contracts).
type replayStore interface {
	RunningReplays(ctx context.Context) ([]store.Replay, error)
	Replay(ctx context.Context, subscriber, id string) (store.Replay, error)
	ClaimReplay(ctx context.Context, subscriber, id, owner string, until, now time.Time) (store.Replay, error)
	SaveReplay(ctx context.Context, r store.Replay) error
	ReplayEvents(ctx context.Context, q store.ReplayQuery) ([]store.LoggedEvent, string, error)
}

// ReplayRecorder counts what a Replayer does. *metrics.Metrics satisfies
// it (a nil one records nothing). Methods must be safe for concurrent use.
type ReplayRecorder interface {
	// ReplayStarted counts one replay this task began to run (new, or
	// taken over).
	ReplayStarted()
	// ReplayFinished counts one replay that ended in state (done or
	// failed: this task ended it; cancelled: seen while this task ran it).
	ReplayFinished(state string)
	// Replayed counts n messages SQS accepted for replays.
	Replayed(n int)
}

// ReplayerDeps is what a Replayer reads and writes. *store.Store serves
// every field but Metrics, which *metrics.Metrics serves (nil counts
// nothing).
type ReplayerDeps struct {
	Replays replayStore
	Agents  agentGetter
	Queues  messageSender
	Metrics ReplayRecorder
}

// ReplayerConfig tunes a Replayer. A zero field takes its default.
type ReplayerConfig struct {
	// Owner names this task in the replays' leases (the worker id).
	Owner string
	// Rate is events re-delivered per second (DefaultReplayRate).
	Rate float64
	// Reads is Query pages read per second (DefaultReplayReads).
	Reads float64
	// PageItems caps the items of one Query page; 0 leaves DynamoDB's
	// 1 MB pages. Tests set a few to cross many page edges.
	PageItems int32
}

// Replayer runs replays: it polls for running replays no task holds,
// claims up to maxRunningReplays, and re-delivers each one's window from
// SubscriberEvents into its subscriber's queue, in log order (so each
// producer's events in their order), marked replayed, at its rates,
// saving its position after every batch. Safe for concurrent use.
type Replayer struct {
	replays replayStore
	agents  agentGetter
	queues  messageSender
	rec     ReplayRecorder
	cfg     ReplayerConfig
	watch   *Watchdog
	log     *zap.Logger
	sends   *pacer
	reads   *pacer
	now     func() time.Time

	mu      sync.Mutex
	running map[string]bool // subscriber + "/" + replay id
}

// NewReplayer returns a Replayer over deps.
func NewReplayer(deps ReplayerDeps, cfg ReplayerConfig, log *zap.Logger) *Replayer {
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultReplayRate
	}
	if cfg.Reads <= 0 {
		cfg.Reads = DefaultReplayReads
	}
	rec := deps.Metrics
	if rec == nil {
		rec = (*metrics.Metrics)(nil)
	}
	return &Replayer{
		replays: deps.Replays, agents: deps.Agents, queues: deps.Queues, rec: rec, cfg: cfg,
		watch: NewWatchdog(log), log: log, sends: newPacer(cfg.Rate), reads: newPacer(cfg.Reads),
		now: time.Now, running: map[string]bool{},
	}
}

// Stuck returns the calls replays have been retrying for longer than
// StuckAfter.
func (r *Replayer) Stuck() []Stuck { return r.watch.Stuck() }

// Run polls for replays and runs them until ctx is done; then each
// running replay finishes the batch in hand, saves its position and
// releases its lease (another task takes it at its next poll), within
// shutdown. It returns nil.
func (r *Replayer) Run(ctx context.Context, shutdown time.Duration) error {
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	var wg sync.WaitGroup
	tick := time.NewTicker(replayPoll)
	defer tick.Stop()
	for {
		r.startClaimable(ctx, work, &wg)
		select {
		case <-ctx.Done():
			stop := time.AfterFunc(shutdown, cancelWork)
			wg.Wait()
			stop.Stop()
			return nil
		case <-tick.C:
		}
	}
}

// startClaimable claims running replays no task holds, up to the free
// slots, and starts each. stop ends them between batches; their AWS calls
// run under work.
func (r *Replayer) startClaimable(stop, work context.Context, wg *sync.WaitGroup) {
	list, err := r.replays.RunningReplays(stop)
	if err != nil {
		if stop.Err() == nil {
			r.log.Warn("list running replays failed, retrying at the next poll", zap.Error(err))
		}
		return
	}
	now := r.now()
	for _, rep := range list {
		key := rep.SubscriberID + "/" + rep.ID
		r.mu.Lock()
		full, mine := len(r.running) >= maxRunningReplays, r.running[key]
		r.mu.Unlock()
		if full {
			return
		}
		if mine || (rep.Owner != "" && rep.Owner != r.cfg.Owner && !rep.LeaseUntil.Before(now)) {
			continue
		}
		claimed, err := r.replays.ClaimReplay(stop, rep.SubscriberID, rep.ID, r.cfg.Owner, r.now().Add(replayLease), r.now())
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			continue // another task was first, or it ended meanwhile
		}
		if err != nil {
			if stop.Err() == nil {
				r.log.Warn("claim replay failed, retrying at the next poll", zap.String("replay_id", rep.ID), zap.String("subscriber_id", rep.SubscriberID), zap.Error(err))
			}
			continue
		}
		r.mu.Lock()
		r.running[key] = true
		r.mu.Unlock()
		wg.Go(func() {
			defer func() {
				r.mu.Lock()
				delete(r.running, key)
				r.mu.Unlock()
			}()
			r.run(stop, work, claimed)
		})
	}
}

// replayRun is one replay being run by this task.
type replayRun struct {
	r   *Replayer
	rep store.Replay
	log *zap.Logger
	// pending counts events sent that the saved cursor has not passed
	// yet (their millisecond's group is not all sent).
	pending int
	// lastSent is the Position of the last event this run sent.
	lastSent string
}

// run re-delivers rep from its cursor to the end of its window, or until
// stop is done, it is cancelled, or another task took it over.
func (r *Replayer) run(stop, work context.Context, rep store.Replay) {
	// Found counts what this run reads from the cursor on; what lay
	// before the cursor was sent or set aside.
	rep.Found = rep.Sent + rep.ErrorCount
	run := &replayRun{r: r, rep: rep, log: r.log.With(zap.String("replay_id", rep.ID), zap.String("subscriber_id", rep.SubscriberID))}
	run.log.Info("replay running", zap.String("cursor", rep.Cursor), zap.Int("sent", rep.Sent))
	r.rec.ReplayStarted()
	if err := run.loop(stop, work); err != nil {
		run.end(err)
	}
}

// errReleased ends a run that handed its replay back (shutdown) or lost it
// (cancelled, taken over): nothing more to write.
var errReleased = errors.New("replay released")

// loop reads page after page and sends in batches; it returns nil once
// the replay is done, errReleased once it is no longer this run's, or the
// reason it failed.
//
// Log order is the order of items by their first event's timestamp (the
// millisecond of their Position), but items of one millisecond sort by
// producer and event id there, not in the order the producer published
// them. So the events of a millisecond's items are sent together, in the
// producer's order (Kinesis sequence number, then place in the record:
// which keeps a packed item's events in its order, whatever their own
// timestamps), and those of a page's last millisecond wait for the next
// page, which may hold more of them. The saved cursor only passes items
// whose events were all handled, never part of one: a task taking over
// resends at most part of one millisecond's items, with the same
// deduplication ids.
func (run *replayRun) loop(stop, work context.Context) error {
	agent, err := run.agent(work)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("subscriber agent %s does not exist: register it again (POST /agents with its resourceArn gives back its id and queue), then start a new replay from %s", run.rep.SubscriberID, run.resumeFrom())
	}
	if err != nil {
		return run.failed(work, err, "finding its subscriber")
	}
	var held []store.LoggedEvent // read, in log order, not sent yet
	readAfter, more := run.rep.Cursor, true
	for {
		for more && (len(held) == 0 || itemTime(held[0]) == itemTime(held[len(held)-1])) {
			if !run.r.reads.wait(stop, 1) {
				return run.release()
			}
			events, next, err := run.read(work, readAfter)
			if err != nil {
				return run.failed(work, err, "reading its events")
			}
			held = append(held, events...)
			if more = next != ""; more {
				readAfter = next
			} else if len(events) > 0 {
				readAfter = events[len(events)-1].Position
			}
		}
		ready := len(held)
		if more { // the last millisecond may go on in the next page
			for ready > 0 && itemTime(held[ready-1]) == itemTime(held[len(held)-1]) {
				ready--
			}
		}
		group := slices.Clone(held[:ready])
		groupEnd := ""
		if ready > 0 {
			groupEnd = held[ready-1].Position
		}
		held = held[ready:]
		slices.SortStableFunc(group, producerOrder)
		for len(group) > 0 {
			if stop.Err() != nil {
				return run.release()
			}
			batch := nextBatch(run.rep.ID, group)
			if !run.r.sends.wait(stop, len(batch)) {
				return run.release()
			}
			sent, err := run.send(work, agent, group[:len(batch)], batch)
			if err != nil {
				return run.failed(work, err, "sending its events")
			}
			run.pending += sent
			run.rep.LastTimestamp = group[len(batch)-1].Timestamp
			run.lastSent = group[len(batch)-1].Position
			group = group[len(batch):]
			if len(group) == 0 { // the whole group is handled: the cursor may pass it
				run.rep.Sent, run.pending = run.rep.Sent+run.pending, 0
				run.rep.Cursor = groupEnd
			}
			run.rep.Found = run.rep.Sent + run.pending + run.rep.ErrorCount + len(group) + len(held)
			if err := run.save(work, store.ReplayRunning); err != nil {
				return err
			}
		}
		if !more && len(held) == 0 {
			run.rep.Cursor = readAfter
			if err := run.save(work, store.ReplayDone); err != nil {
				return err
			}
			run.log.Info("replay done", zap.Int("sent", run.rep.Sent), zap.Int("found", run.rep.Found), zap.Int("errors", run.rep.ErrorCount))
			run.r.rec.ReplayFinished(store.ReplayDone)
			return nil
		}
	}
}

// read reads one page of the replay's window after position after.
func (run *replayRun) read(ctx context.Context, after string) (events []store.LoggedEvent, next string, err error) {
	q := store.ReplayQuery{SubscriberID: run.rep.SubscriberID, From: run.rep.From, To: run.rep.To,
		ProducerID: run.rep.ProducerID, After: after, Limit: run.r.cfg.PageItems}
	err = run.r.watch.retry(ctx, "replay", func() error {
		var err error
		events, next, err = run.r.replays.ReplayEvents(ctx, q)
		return err
	}, "replay "+run.rep.ID+" read events of subscriber "+run.rep.SubscriberID+" after "+after, zap.String("replay_id", run.rep.ID))
	return events, next, err
}

// itemTime is the millisecond of e's item: its first event's timestamp,
// shared by all its events.
func itemTime(e store.LoggedEvent) string { return store.PositionTime(e.Position) }

// producerOrder orders events of one window by their items' time, and
// those of one millisecond's items in the order their producer published
// them.
func producerOrder(a, b store.LoggedEvent) int {
	if c := strings.Compare(itemTime(a), itemTime(b)); c != 0 {
		return c
	}
	if c := strings.Compare(a.AgentID, b.AgentID); c != 0 {
		return c
	}
	if c := cmp.Compare(len(a.Seq), len(b.Seq)); c != 0 { // sequence numbers are decimal, of any length
		return c
	}
	if c := strings.Compare(a.Seq, b.Seq); c != 0 {
		return c
	}
	return cmp.Compare(a.Index, b.Index)
}

// agent finds the replay's subscriber; the error wraps store.ErrNotFound
// when there is none.
func (run *replayRun) agent(ctx context.Context) (store.Agent, error) {
	var a store.Agent
	err := run.r.watch.retry(ctx, "replay", func() error {
		var err error
		a, err = run.r.agents.Agent(ctx, run.rep.SubscriberID)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %w", store.ErrRejected, err) // retrying will not bring it back
		}
		return err
	}, "replay "+run.rep.ID+" look up subscriber "+run.rep.SubscriberID, zap.String("replay_id", run.rep.ID))
	return a, err
}

// nextBatch is the messages of the first events that fit one
// SendMessageBatch (maxBatchEntries, maxBatchBytes).
func nextBatch(replayID string, events []store.LoggedEvent) []store.QueueMessage {
	msgs := make([]store.QueueMessage, 0, maxBatchEntries)
	size := 0
	for i, e := range events {
		if i == maxBatchEntries {
			break
		}
		m := replayMessage(replayID, e.SubscriberEvent, i)
		if i > 0 && size+len(m.Body) > maxBatchBytes {
			break
		}
		size += len(m.Body)
		msgs = append(msgs, m)
	}
	return msgs
}

// replayMessage is the message of e re-delivered by replay replayID: the
// live body marked replayed, in the producer's group, with a
// deduplication id of its own.
func replayMessage(replayID string, e store.SubscriberEvent, i int) store.QueueMessage {
	m := event.NewMessage(e.Event, e.SubscriberID)
	m.Replayed, m.ReplayID = true, replayID
	body, _ := json.Marshal(m) // cannot fail: Data is valid JSON from the store
	return store.QueueMessage{
		ID:      strconv.Itoa(i),
		GroupID: e.AgentID,
		DedupID: event.ReplayDeduplicationID(replayID, e.AgentID, e.EventID),
		Body:    string(body),
	}
}

// send delivers one batch and returns how many SQS took: it retries what
// fails because SQS fails, records as an error of the replay (and skips)
// what SQS refuses, and returns an error only when the queue is gone or
// ctx is done.
func (run *replayRun) send(ctx context.Context, agent store.Agent, events []store.LoggedEvent, msgs []store.QueueMessage) (int, error) {
	byID := map[string]store.LoggedEvent{}
	for i, m := range msgs {
		byID[m.ID] = events[i]
	}
	pending := msgs
	sent := 0
	err := run.r.watch.retry(ctx, "replay", func() error {
		failed, err := run.r.queues.SendMessages(ctx, agent.QueueURL, pending)
		if errors.Is(err, store.ErrQueueMissing) {
			return fmt.Errorf("%w: %w", store.ErrRejected, err)
		}
		if err != nil {
			return err
		}
		run.r.rec.Replayed(len(pending) - len(failed))
		failedIDs := map[string]store.BatchFailure{}
		for _, f := range failed {
			failedIDs[f.ID] = f
		}
		var again []store.QueueMessage
		for _, m := range pending {
			f, ok := failedIDs[m.ID]
			switch {
			case !ok:
				sent++
			case store.ServiceFaultCode(f.Code):
				// Throttling, KMS or SQS failing: retried, whatever
				// SenderFault says (as the publisher does).
				again = append(again, m)
			case f.SenderFault:
				run.skip(byID[m.ID], "SQS refused it: "+f.Code+": "+f.Message)
			default:
				again = append(again, m)
			}
		}
		if pending = again; len(pending) > 0 {
			return entriesFailed(pending, failedIDs)
		}
		return nil
	}, "replay "+run.rep.ID+" send to subscriber "+run.rep.SubscriberID+" from event "+events[0].EventID,
		zap.String("replay_id", run.rep.ID), zap.String("event_id", events[0].EventID))
	switch {
	case errors.Is(err, store.ErrQueueMissing):
		return sent, fmt.Errorf("queue %s does not exist: recreate it, then start a new replay from %s", agent.QueueURL, run.resumeFrom())
	case gaveUp(err):
		for _, m := range pending {
			run.skip(byID[m.ID], err.Error())
		}
		return sent, nil
	}
	return sent, err
}

// entriesFailed is the error of a batch whose entries pending failed
// without SQS refusing them: a service fault, which retry repeats for as
// long as it takes, when SQS failed any of them for a reason of the
// service's (throttling); otherwise the entries' own, given up after
// maxEntryAttempts.
func entriesFailed(pending []store.QueueMessage, failed map[string]store.BatchFailure) error {
	f := failed[pending[0].ID]
	for _, m := range pending {
		if store.ServiceFaultCode(failed[m.ID].Code) {
			f = failed[m.ID]
			break
		}
	}
	return fmt.Errorf("%d entries failed: %w", len(pending), &smithy.GenericAPIError{Code: f.Code, Message: f.Message})
}

// resumeFrom is where a new replay should start to go on where this one
// stopped: the time of the item of the last event it sent (or of the one
// its cursor passed last), as every event not sent yet is at or after it
// (its item's events are at or after the item's time, and items come in
// time order). Events between that and the last sent are sent again.
func (run *replayRun) resumeFrom() string {
	from := run.rep.From.UTC().Format(event.TimeLayout)
	switch {
	case run.lastSent != "":
		return max(from, store.PositionTime(run.lastSent))
	case run.rep.Cursor != "":
		return max(from, store.PositionTime(run.rep.Cursor))
	}
	return from
}

// skip records that e was not re-delivered, and why.
func (run *replayRun) skip(e store.LoggedEvent, why string) {
	run.log.Warn("replay skipped an event", zap.String("event_id", e.EventID), zap.String("producer_id", e.AgentID), zap.String("reason", why))
	run.rep.ErrorCount++
	if len(run.rep.Errors) < store.MaxReplayErrors {
		run.rep.Errors = append(run.rep.Errors, fmt.Sprintf("event %s of producer %s at %s not re-delivered: %s", e.EventID, e.AgentID, e.Timestamp, why))
	}
}

// save writes the replay's progress with state, renewing the lease while
// it runs. It returns errReleased when the replay is no longer this run's.
func (run *replayRun) save(ctx context.Context, state string) error {
	run.rep.State, run.rep.UpdatedAt = state, run.r.now()
	run.rep.LeaseUntil = time.Time{}
	if state == store.ReplayRunning {
		run.rep.LeaseUntil = run.rep.UpdatedAt.Add(replayLease)
	}
	err := run.r.watch.retry(ctx, "replay", func() error {
		err := run.r.replays.SaveReplay(ctx, run.rep)
		if errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("%w: %w", store.ErrRejected, err)
		}
		return err
	}, "replay "+run.rep.ID+" save progress", zap.String("replay_id", run.rep.ID))
	if errors.Is(err, store.ErrConflict) {
		run.lost(ctx)
		return errReleased
	}
	return err
}

// lost logs, and counts when it was cancelled, that the replay is no
// longer this run's: a write of it lost its condition.
func (run *replayRun) lost(ctx context.Context) {
	cur, err := run.r.replays.Replay(ctx, run.rep.SubscriberID, run.rep.ID)
	switch {
	case err != nil:
		run.log.Info("replay no longer ours: cancelled, or taken over by another task", zap.Int("sent", run.rep.Sent), zap.NamedError("read_error", err))
	case cur.State == store.ReplayCancelled:
		run.log.Info("replay cancelled", zap.Int("sent", run.rep.Sent+run.pending))
		run.r.rec.ReplayFinished(store.ReplayCancelled)
	default:
		run.log.Info("replay taken over by another task", zap.String("owner", cur.Owner), zap.String("state", cur.State), zap.Int("sent", run.rep.Sent))
	}
}

// release hands the replay back at its position so that another task
// takes it over at once (shutdown).
func (run *replayRun) release() error {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	run.rep.State, run.rep.UpdatedAt, run.rep.LeaseUntil = store.ReplayRunning, run.r.now(), time.Time{}
	if err := run.r.replays.SaveReplay(ctx, run.rep); err != nil && !errors.Is(err, store.ErrConflict) {
		run.log.Warn("replay not released: another task takes it over when its lease expires", zap.Error(err))
		return errReleased
	}
	run.log.Info("replay released", zap.String("cursor", run.rep.Cursor), zap.Int("sent", run.rep.Sent))
	return errReleased
}

// failed ends the replay as failed with why, unless ctx is done (the task
// is stopping past its shutdown time: the lease then lapses and another
// task goes on).
func (run *replayRun) failed(ctx context.Context, err error, doing string) error {
	if ctx.Err() != nil || errors.Is(err, errReleased) {
		return errReleased
	}
	return fmt.Errorf("%s: %w", doing, err)
}

// end records the replay as failed with err, unless err is errReleased.
func (run *replayRun) end(err error) {
	if errors.Is(err, errReleased) {
		return
	}
	run.log.Error("replay failed", zap.Error(err))
	// Its end is final: what reached the queue counts as sent, whether
	// or not the cursor passed it.
	run.rep.Sent, run.pending = run.rep.Sent+run.pending, 0
	run.rep.ErrorCount++
	msg := err.Error()
	if len(run.rep.Errors) >= store.MaxReplayErrors {
		run.rep.Errors = run.rep.Errors[:store.MaxReplayErrors-1]
	}
	run.rep.Errors = append(run.rep.Errors, msg)
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	run.rep.State, run.rep.UpdatedAt, run.rep.LeaseUntil = store.ReplayFailed, run.r.now(), time.Time{}
	switch err := run.r.replays.SaveReplay(ctx, run.rep); {
	case err == nil:
		run.r.rec.ReplayFinished(store.ReplayFailed)
	case errors.Is(err, store.ErrConflict):
		run.lost(ctx)
	default:
		run.log.Warn("replay failure not recorded: another task retries it when its lease expires", zap.Error(err))
	}
}

// pacer spreads units of work evenly at a rate shared by its callers.
type pacer struct {
	every time.Duration

	mu   sync.Mutex
	next time.Time
}

func newPacer(perSecond float64) *pacer {
	return &pacer{every: time.Duration(float64(time.Second) / perSecond)}
}

// wait blocks until n more units may start, and reports false when ctx
// ends first.
func (p *pacer) wait(ctx context.Context, n int) bool {
	p.mu.Lock()
	now := time.Now()
	at := p.next
	if at.Before(now) {
		at = now
	}
	p.next = at.Add(time.Duration(n) * p.every)
	p.mu.Unlock()
	if d := time.Until(at); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return ctx.Err() == nil
}
