// Command fanout-dev runs fanout on an in-process AWS emulator
// (github.com/sivchari/kumo): no Docker, no AWS account. It serves the
// emulator on a fixed local address so the aws CLI can play producer and
// agent, creates every resource, and runs the production wiring (package
// app) against it. Ctrl-C stops it cleanly.
//
// It is a separate main package so that the production binary never links
// the emulator.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/sivchari/kumo"

	"github.com/fanout/fanout/app"
)

// defaultAWSAddr is where the emulator is served: LocalStack's usual port,
// which the aws CLI examples in README.md use.
const defaultAWSAddr = "127.0.0.1:4566"

// emulatorCaller is who the emulator's STS says every caller is: it checks
// no signature and knows no other identity.
const emulatorCaller = "arn:aws:iam::000000000000:root"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "fanout-dev:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	cfg, err := app.ConfigFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	cfg.CreateResources = true
	// Unlike the production binary, fanout-dev needs no token unless asked.
	if os.Getenv("FANOUT_AUTH") == "" {
		cfg.Auth = app.AuthNone
	}
	if cfg.Auth == app.AuthIAM && len(cfg.Admins) == 0 {
		// Every caller is the emulator's one identity: as an admin it may
		// register and act for agents of any principal.
		cfg.Admins = []string{emulatorCaller}
	}
	awsAddr := os.Getenv("FANOUT_DEV_AWS_ADDR")
	if awsAddr == "" {
		awsAddr = defaultAWSAddr
	}
	log := app.NewLogger(cfg.LogLevel)
	defer log.Sync() //nolint:errcheck // stderr

	emu := kumo.NewServer()
	defer emu.Close()
	target, err := url.Parse(emu.URL)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", awsAddr)
	if err != nil {
		return fmt.Errorf("serve the emulator on FANOUT_DEV_AWS_ADDR=%s: %w (set another address)", awsAddr, err)
	}
	proxy := &http.Server{Handler: presignedSTSAsPost(httputil.NewSingleHostReverseProxy(target)), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := proxy.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Sugar().Errorf("emulator proxy: %v", err)
		}
	}()
	defer proxy.Close()

	awsEndpoint := "http://" + ln.Addr().String()
	awsCfg := aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(awsEndpoint),
	}
	a, err := app.New(ctx, cfg, awsCfg, log)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	// Print the banner once the API answers ready, so what it says works.
	if err := waitReady(ctx, localURL(a.Addr()), done); err != nil {
		return err
	}
	fmt.Printf(`
fanout is running on the in-process AWS emulator.

  API:           %s
  AWS endpoint:  %s   (region us-east-1, any credentials)
  Kinesis stream %s

  export AWS_ENDPOINT_URL=%s AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test

%s
Ctrl-C stops it.

`, localURL(a.Addr()), awsEndpoint, cfg.Stream, awsEndpoint, authBanner(cfg))
	return <-done
}

// presignedSTSAsPost hands the emulator a presigned GET of
// sts:GetCallerIdentity (what fanout replays for FANOUT_AUTH=iam) as the
// equivalent form POST. Emulator gap: kumo routes every GET / to S3's
// ListBuckets, so it would never answer the replay; it checks no signature
// either way.
func presignedSTSAsPost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/" && r.URL.Query().Get("Action") == "GetCallerIdentity" {
			form := r.URL.RawQuery
			r = r.Clone(r.Context())
			r.Method = http.MethodPost
			r.URL.RawQuery = ""
			r.Body = io.NopCloser(strings.NewReader(form))
			r.ContentLength = int64(len(form))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		next.ServeHTTP(w, r)
	})
}

// authBanner says how callers authenticate, and how to change it.
func authBanner(cfg app.Config) string {
	if cfg.Auth == app.AuthNone {
		return `  Authentication: none: anyone may act as any agent.
  FANOUT_AUTH=iam go run ./cmd/fanout-dev   requires bearer tokens (package client mints them),
  as the production binary does by default.
`
	}
	return fmt.Sprintf(`  Authentication: iam, audience %q, admins %s.
  The emulator's STS checks no signature and answers %s for every caller,
  so every token passes as that admin: try the flow, not the security (the tests use a verifying STS).
  A token for curl:  go run ./examples/agent -token
`, cfg.Audience, strings.Join(cfg.Admins, ","), emulatorCaller)
}

// waitReady polls the API's /readyz until it answers 200, Run returns, or
// readyTimeout passes.
func waitReady(ctx context.Context, api string, done chan error) error {
	const readyTimeout = 30 * time.Second
	deadline := time.Now().Add(readyTimeout)
	for {
		resp, err := http.Get(api + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s", readyTimeout)
		}
		select {
		case err := <-done:
			if err == nil {
				err = errors.New("stopped before it was ready")
			}
			return err
		case <-ctx.Done():
			return <-done
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// localURL turns a listen address into a URL a local client can use.
func localURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}
