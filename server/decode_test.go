package server

import (
	"errors"
	"net/http"
	"testing"
	"testing/iotest"
)

func TestBodyReadFailureIsTheClients(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"/agents", "/events"} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, Config{}, "P")
			rec := f.do(t, http.MethodPost, path, "application/json", iotest.ErrReader(errors.New("connection reset by peer")))
			checkErrorContains(t, rec, 400, "could not read the whole request body", "connection reset by peer")
			if registered, _ := f.agents.calls(); len(registered) != 0 || len(f.pub.published()) != 0 {
				t.Errorf("registered %q / published %d batches after a failed read, want nothing", registered, len(f.pub.published()))
			}
		})
	}
}
