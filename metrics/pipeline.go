package metrics

import "time"

// Reason classes of dead letters (DeadLetters' reason label): what an
// operator does about one depends on its class, never on its details.
const (
	// ReasonUnparsable: the record is not an event (or not a stream change
	// fanout can read): fix the producer that wrote it.
	ReasonUnparsable = "unparsable"
	// ReasonInvalid: an event breaks a rule (limits, partition key other
	// than its agentId): fix the producer.
	ReasonInvalid = "invalid"
	// ReasonUnknownAgent: its producer or subscriber is not registered.
	ReasonUnknownAgent = "unknown_agent"
	// ReasonQueueMissing: the subscriber's queue was deleted.
	ReasonQueueMissing = "queue_missing"
	// ReasonRejected: AWS refused the item or message as invalid.
	ReasonRejected = "rejected"
	// ReasonGaveUp: the call failed every bounded attempt for a reason of
	// its own.
	ReasonGaveUp = "gave_up"
)

// deadLetterReasons are the reason classes each stage can give.
func deadLetterReasons() map[string][]string {
	return map[string][]string{
		StageAggregator: {ReasonUnparsable, ReasonInvalid, ReasonUnknownAgent, ReasonRejected, ReasonGaveUp},
		StagePublisher:  {ReasonUnparsable, ReasonUnknownAgent, ReasonQueueMissing, ReasonRejected, ReasonGaveUp},
	}
}

// DeadLettered counts one record or message set aside at stage, of reason
// class reason (a Reason constant).
func (m *Metrics) DeadLettered(stage, reason string) {
	if m == nil {
		return
	}
	m.deadLetters.WithLabelValues(stage, reason).Inc()
}

// Worker returns the recorder of one KCL worker's figures (worker is
// WorkerAggregator or WorkerPublisher).
func (m *Metrics) Worker(worker string) *WorkerRecorder {
	return &WorkerRecorder{m: m, worker: worker}
}

// WorkerRecorder records one KCL worker's leases, reads and lag. A nil
// *Metrics behind it records nothing. Safe for concurrent use.
type WorkerRecorder struct {
	m      *Metrics
	worker string
}

// LeaseGained records that this task took shard's lease.
func (w *WorkerRecorder) LeaseGained(shard string) { w.setLease(shard, true) }

// LeaseLost records that this task no longer holds shard's lease, and
// drops the shard's lag series: another task reports them now.
func (w *WorkerRecorder) LeaseLost(shard string) {
	w.setLease(shard, false)
	w.ForgetShard(shard)
}

func (w *WorkerRecorder) setLease(shard string, held bool) {
	m := w.m
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	shards := m.leases[w.worker]
	if shards == nil {
		shards = map[string]bool{}
		m.leases[w.worker] = shards
	}
	if held {
		shards[shard] = true
	} else {
		delete(shards, shard)
	}
	m.leasesHeld.WithLabelValues(w.worker).Set(float64(len(shards)))
}

// LeaseRenewed counts one renewal.
func (w *WorkerRecorder) LeaseRenewed() {
	if w.m == nil {
		return
	}
	w.m.leaseRenewals.WithLabelValues(w.worker).Inc()
}

// RecordsRead counts records and bytes of data read from the stream.
func (w *WorkerRecorder) RecordsRead(records int, bytes int64) {
	if w.m == nil {
		return
	}
	w.m.recordsRead.WithLabelValues(w.worker).Add(float64(records))
	w.m.bytesRead.WithLabelValues(w.worker).Add(float64(bytes))
}

// GetRecordsTime records how long one read took.
func (w *WorkerRecorder) GetRecordsTime(took time.Duration) {
	if w.m == nil {
		return
	}
	w.m.getRecordsTime.WithLabelValues(w.worker).Observe(took.Seconds())
}

// ProcessTime records how long one batch took to become durable.
func (w *WorkerRecorder) ProcessTime(took time.Duration) {
	if w.m == nil {
		return
	}
	w.m.processTime.WithLabelValues(w.worker).Observe(took.Seconds())
}

// IteratorAge sets how far shard's reader is behind the stream, as the
// stream reports it.
func (w *WorkerRecorder) IteratorAge(shard string, behind time.Duration) {
	if w.m == nil {
		return
	}
	w.m.iteratorAge.WithLabelValues(w.worker, shard).Set(max(behind, 0).Seconds())
}

// RecordAge sets the age of the newest record of shard's latest batch
// when the pipeline took it (0: caught up).
func (w *WorkerRecorder) RecordAge(shard string, age time.Duration) {
	if w.m == nil {
		return
	}
	w.m.recordAge.WithLabelValues(w.worker, shard).Set(max(age, 0).Seconds())
}

// ForgetShard drops shard's lag series.
func (w *WorkerRecorder) ForgetShard(shard string) {
	if w.m == nil {
		return
	}
	w.m.iteratorAge.DeleteLabelValues(w.worker, shard)
	w.m.recordAge.DeleteLabelValues(w.worker, shard)
}
