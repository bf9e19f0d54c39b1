package awstest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/modules/localstack"
	"github.com/testcontainers/testcontainers-go/wait"
)

// Environment variables that choose a container-backed AWS endpoint.
const (
	// containersEnv turns containers on: FANOUT_TEST_CONTAINERS=1.
	containersEnv = "FANOUT_TEST_CONTAINERS"
	// localstackTokenEnv picks LocalStack over kumo and is passed to it:
	// LocalStack images since 2026.3 refuse to start without it.
	localstackTokenEnv = "LOCALSTACK_AUTH_TOKEN"
)

// Pinned images. compose.yml pins the same two; deploy's tests check both.
const (
	// kumoImage is the same emulator version as the in-process one in
	// go.mod, so a test sees the same behaviour either way.
	kumoImage = "ghcr.io/sivchari/kumo:0.33.1"
	// localstackImage is written without the month's zero padding:
	// testcontainers-go's localstack module parses the tag as semver and
	// rejects "2026.09.0".
	localstackImage = "localstack/localstack:2026.9.0"
	// emulatorPort is where both images serve every AWS service.
	emulatorPort = "4566/tcp"
)

// Timeouts for bringing a container up.
const (
	// dockerProbeTimeout bounds the question "does Docker answer?", so a
	// machine without Docker skips in seconds rather than hanging.
	dockerProbeTimeout = 10 * time.Second
	// containerStartTimeout covers a cold image pull plus start; LocalStack
	// alone may take a minute to report healthy.
	containerStartTimeout = 5 * time.Minute
)

// sharedContainer is the one emulator container of this test binary. It is
// package state on purpose: every test of a binary shares one container
// (resource names are unique per test), and Ryuk, testcontainers' reaper,
// removes it when the binary exits; no test's Cleanup may stop it under the
// tests that still use it. With Ryuk disabled (TESTCONTAINERS_RYUK_DISABLED)
// the container outlives the binary: remove it with `docker rm -f`.
var sharedContainer = &container{probe: dockerAvailable, start: startEmulator}

// containerEndpoint returns the endpoint of an AWS emulator container started with testcontainers-go
// when FANOUT_TEST_CONTAINERS=1, or "" when that variable is unset. When it is set and Docker is not
// available, it calls tb.Skip with one clear line. LocalStack (with LOCALSTACK_AUTH_TOKEN) when that
// token is set; otherwise the pinned kumo image. One container per test binary (sync.Once).
func containerEndpoint(tb testing.TB) string {
	tb.Helper()
	url, skip, err := sharedContainer.endpoint(os.Getenv)
	switch {
	case err != nil:
		tb.Fatal(err)
	case skip != "":
		tb.Skip(skip)
	}
	return url
}

// container starts at most one emulator container and remembers the outcome,
// good or bad, for every later caller. It is safe for concurrent use.
type container struct {
	// probe returns nil when a Docker daemon answers.
	probe func(ctx context.Context) error
	// start runs the emulator (LocalStack when token is not empty, else
	// kumo) and returns its endpoint once it serves requests.
	start func(ctx context.Context, token string) (string, error)

	once sync.Once
	url  string
	skip string // why callers skip; empty when they do not
	err  error
}

// endpoint decides from getenv whether a container is wanted and, the first
// time it is, starts it. It returns the endpoint; or "" and nothing else when
// containers are off; or a one-line reason to skip when Docker is missing; or
// an error when containers were asked for wrongly or failed to start.
// The environment is read on every call; the container is started once.
func (c *container) endpoint(getenv func(string) string) (url, skip string, err error) {
	on, err := containersWanted(getenv(containersEnv))
	if err != nil || !on {
		return "", "", err
	}
	c.once.Do(func() {
		probeCtx, cancel := context.WithTimeout(context.Background(), dockerProbeTimeout)
		defer cancel()
		if err := c.probe(probeCtx); err != nil {
			c.skip = fmt.Sprintf("%s=1 but Docker is not available (%s); unset it to use the in-process emulator",
				containersEnv, oneLine(err))
			return
		}
		// Not the test's context: the container outlives the test that
		// happened to start it.
		startCtx, cancel := context.WithTimeout(context.Background(), containerStartTimeout)
		defer cancel()
		c.url, c.err = c.start(startCtx, strings.TrimSpace(getenv(localstackTokenEnv)))
	})
	return c.url, c.skip, c.err
}

// containersWanted parses FANOUT_TEST_CONTAINERS: empty means off.
func containersWanted(v string) (bool, error) {
	if strings.TrimSpace(v) == "" {
		return false, nil
	}
	on, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return false, fmt.Errorf("%s=%q: use 1 to run tests against a container, or leave it unset", containersEnv, v)
	}
	return on, nil
}

// dockerAvailable returns nil when testcontainers can reach a Docker daemon.
// testcontainers panics rather than erring in some no-Docker cases (no socket
// found at all); those become errors here.
func dockerAvailable(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		return err
	}
	return p.Health(ctx) // Health closes p.
}

// startEmulator runs LocalStack when token is set, else kumo, and returns
// the http:// endpoint mapped to the emulator's port on this host.
func startEmulator(ctx context.Context, token string) (string, error) {
	var (
		ctr   testcontainers.Container
		image string
		err   error
	)
	if token != "" {
		image = localstackImage
		// The module waits for /_localstack/health itself.
		ctr, err = localstack.Run(ctx, image, testcontainers.WithEnv(map[string]string{localstackTokenEnv: token}))
	} else {
		image = kumoImage
		ctr, err = testcontainers.Run(ctx, image,
			testcontainers.WithExposedPorts(emulatorPort),
			testcontainers.WithEnv(map[string]string{"KUMO_HOST": "0.0.0.0", "KUMO_PORT": "4566"}),
			testcontainers.WithWaitStrategy(wait.ForHTTP("/health").WithPort(emulatorPort)),
		)
	}
	if err != nil {
		// Run may return a container that failed its wait strategy: remove
		// it now, Ryuk would only do so when the binary exits. Terminating a
		// nil container is a no-op.
		return "", errors.Join(fmt.Errorf("start AWS emulator image=%s: %w", image, err), testcontainers.TerminateContainer(ctr))
	}
	url, err := ctr.PortEndpoint(ctx, emulatorPort, "http")
	if err != nil {
		return "", errors.Join(fmt.Errorf("endpoint of AWS emulator image=%s: %w", image, err), testcontainers.TerminateContainer(ctr))
	}
	return url, nil
}

// oneLine keeps a skip message to one line: Docker errors can span several.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
