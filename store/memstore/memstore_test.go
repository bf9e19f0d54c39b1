package memstore_test

import (
	"testing"

	"github.com/fanout/fanout/store/memstore"
	"github.com/fanout/fanout/store/storetest"
)

// TestConformance holds the in-memory store to the behaviour of
// *store.Store, which runs the same suite on an AWS endpoint.
func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) storetest.Store { return memstore.New(nil) },
		Bodies: func(t *testing.T, s storetest.Store, queueURL string, n int) []string {
			t.Helper()
			var bodies []string
			for _, m := range s.(*memstore.Store).Messages(queueURL) {
				bodies = append(bodies, m.Body)
			}
			if len(bodies) < n {
				t.Fatalf("queue %s holds %d messages, want %d", queueURL, len(bodies), n)
			}
			return bodies
		},
	})
}
