package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// waitFor polls cond every 10ms until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recv returns the value from ch, failing t if none comes within timeout.
func recv[T any](t *testing.T, what string, ch <-chan T, timeout time.Duration) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("%s: nothing within %s", what, timeout)
		panic("unreachable")
	}
}

type getResult struct {
	status int
	body   string
	err    error
}

func get(url string) <-chan getResult {
	out := make(chan getResult, 1)
	go func() {
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Get(url)
		if err != nil {
			out <- getResult{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		out <- getResult{status: resp.StatusCode, body: string(b), err: err}
	}()
	return out
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func TestServeDrainsInFlightRequests(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		if err := r.Context().Err(); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		_, _ = io.WriteString(w, "done")
	})
	ln := listen(t)
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, h, 10*time.Second) }()

	resp := get("http://" + addr + "/slow")
	recv(t, "slow request reaches the handler", entered, 5*time.Second)
	cancel()

	waitFor(t, "new connections refused after cancel", 5*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v with a request in flight", err)
	default:
	}

	close(release)
	r := recv(t, "slow response", resp, 5*time.Second)
	if r.err != nil || r.status != 200 || r.body != "done" {
		t.Errorf("slow request got %d %q (err %v), want 200 \"done\"", r.status, r.body, r.err)
	}
	if err := recv(t, "Serve returns", served, 5*time.Second); err != nil {
		t.Errorf("Serve = %v, want nil after a clean drain", err)
	}
}

func TestServeGivesUpAfterDrain(t *testing.T) {
	t.Parallel()
	entered, handlerCtxDone := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done() // a request that never finishes by itself
		close(handlerCtxDone)
	})
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, h, 100*time.Millisecond) }()

	resp := get("http://" + ln.Addr().String() + "/stuck")
	recv(t, "request reaches the handler", entered, 5*time.Second)
	start := time.Now()
	cancel()
	err := recv(t, "Serve returns", served, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "drain http") || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Serve = %v, want a drain deadline error", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Serve took %s to give up with a 100ms drain", d)
	}
	recv(t, "stuck handler's context cancelled", handlerCtxDone, 5*time.Second)
	if r := recv(t, "stuck request ends", resp, 5*time.Second); r.err == nil {
		t.Errorf("stuck request got %d %q, want a broken connection", r.status, r.body)
	}
}

func TestServeReportsListenerFailure(t *testing.T) {
	t.Parallel()
	ln := listen(t)
	ln.Close()
	err := Serve(context.Background(), ln, http.NotFoundHandler(), time.Second)
	if err == nil || !strings.Contains(err.Error(), "serve http") {
		t.Errorf("Serve on a closed listener = %v, want a serve error", err)
	}
}
