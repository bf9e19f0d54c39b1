package store

import "testing"

// NewTestStore is newTestStore for the external tests of this package
// (the conformance suite, which imports store and so cannot run inside it).
func NewTestStore(t *testing.T) *Store { return newTestStore(t) }
