package server

import (
	"github.com/fanout/fanout/pipeline"
	"github.com/fanout/fanout/store"
)

// The production types satisfy the interfaces New takes; this fails to
// compile when a signature drifts.
var (
	_ agents        = (*store.Store)(nil)
	_ subscriptions = (*store.Store)(nil)
	_ publisher     = (*pipeline.Ingest)(nil)
)
