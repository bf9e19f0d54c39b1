package kcl

import (
	"time"

	kclmetrics "github.com/vmware/vmware-go-kcl-v2/clientlibrary/metrics"
)

// Monitor receives one worker's figures: its leases, its reads and how far
// behind each shard is. *metrics.WorkerRecorder satisfies it. Methods are
// called from KCL's goroutines, several shards at once.
type Monitor interface {
	LeaseGained(shardID string)
	// LeaseLost is called whenever a shard consumer ends (released, lost
	// or finished); a shard's figures should go with it.
	LeaseLost(shardID string)
	LeaseRenewed()
	RecordsRead(records int, bytes int64)
	GetRecordsTime(took time.Duration)
	ProcessTime(took time.Duration)
	// IteratorAge is the stream's own figure (Kinesis MillisBehindLatest;
	// the Streams adapter always reports 0).
	IteratorAge(shardID string, behind time.Duration)
	// RecordAge is the age of the newest record of the shard's latest
	// batch when the handler got it; 0 after an empty read.
	RecordAge(shardID string, age time.Duration)
}

// monitoring is KCL's MonitoringService over a Monitor: KCL reports
// durations in milliseconds as float64 and one call per figure.
type monitoring struct{ m Monitor }

var _ kclmetrics.MonitoringService = monitoring{}

func millis(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

func (monitoring) Init(_, _, _ string) error { return nil }
func (monitoring) Start() error              { return nil }
func (monitoring) Shutdown()                 {}

func (s monitoring) IncrRecordsProcessed(shard string, n int) {
	s.m.RecordsRead(n, 0)
	if n == 0 {
		s.m.RecordAge(shard, 0) // an empty read: caught up
	}
}
func (s monitoring) IncrBytesProcessed(_ string, n int64)        { s.m.RecordsRead(0, n) }
func (s monitoring) MillisBehindLatest(shard string, ms float64) { s.m.IteratorAge(shard, millis(ms)) }
func (monitoring) DeleteMetricMillisBehindLatest(string)         {} // LeaseLost follows at once
func (s monitoring) LeaseGained(shard string)                    { s.m.LeaseGained(shard) }
func (s monitoring) LeaseLost(shard string)                      { s.m.LeaseLost(shard) }
func (s monitoring) LeaseRenewed(string)                         { s.m.LeaseRenewed() }
func (s monitoring) RecordGetRecordsTime(_ string, ms float64)   { s.m.GetRecordsTime(millis(ms)) }
func (s monitoring) RecordProcessRecordsTime(_ string, ms float64) {
	s.m.ProcessTime(millis(ms))
}

// nopMonitor records nothing: a worker built without a Monitor.
type nopMonitor struct{}

func (nopMonitor) LeaseGained(string)                {}
func (nopMonitor) LeaseLost(string)                  {}
func (nopMonitor) LeaseRenewed()                     {}
func (nopMonitor) RecordsRead(int, int64)            {}
func (nopMonitor) GetRecordsTime(time.Duration)      {}
func (nopMonitor) ProcessTime(time.Duration)         {}
func (nopMonitor) IteratorAge(string, time.Duration) {}
func (nopMonitor) RecordAge(string, time.Duration)   {}
