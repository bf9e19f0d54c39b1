package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Timeouts of the HTTP server Serve runs.
const (
	// readHeaderTimeout cuts off clients that open connections and send
	// nothing (slowloris); real clients send headers at once.
	readHeaderTimeout = 10 * time.Second
	// readTimeout lets a 5 MiB batch arrive over a slow link.
	readTimeout = 60 * time.Second
	// writeTimeout exceeds the handlers' own request timeout, so a handler
	// answers (503) before the connection is cut.
	writeTimeout = 2 * defaultRequestTimeout
	// idleTimeout exceeds the ALB's 60 s idle timeout: the load balancer,
	// not fanout, must close idle keep-alive connections, or it may send a
	// request on a connection fanout is closing and answer 502.
	idleTimeout = 75 * time.Second
	// maxHeaderBytes is ample for the API's headers.
	maxHeaderBytes = 64 << 10
)

// Serve serves h on ln until ctx is cancelled, then stops accepting
// connections, lets in-flight requests finish within drain, and returns nil.
// If they do not finish in time, their connections are closed, their
// contexts cancelled, and Serve returns an error; it returns within drain
// (plus the time the handlers take to notice). It also returns an error if
// serving fails before ctx is cancelled. Serve closes ln.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, drain time.Duration) error {
	// Requests must outlive ctx (they are drained, not dropped), so their
	// base context is cancelled only when draining gives up.
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve http on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}

	drainCtx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	err := srv.Shutdown(drainCtx)
	if err != nil {
		// Connections first, then contexts: a handler that returns on
		// cancellation must find its connection gone, or the server would
		// answer an implicit 200 for work that was never done.
		err = errors.Join(fmt.Errorf("drain http on %s within %s: %w", ln.Addr(), drain, err), srv.Close())
		cancelBase()
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("serve http on %s: %w", ln.Addr(), serr))
	}
	return err
}
