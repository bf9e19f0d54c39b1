package awstest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

func TestContainersWanted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value   string
		want    bool
		wantErr bool
	}{
		{value: "", want: false},
		{value: "  ", want: false},
		{value: "0", want: false},
		{value: "false", want: false},
		{value: "1", want: true},
		{value: "true", want: true},
		{value: " 1 ", want: true},
		{value: "yes", wantErr: true},
		{value: "docker", wantErr: true},
	}
	for _, tt := range tests {
		got, err := containersWanted(tt.value)
		if tt.wantErr {
			if err == nil || !strings.Contains(err.Error(), containersEnv) {
				t.Errorf("containersWanted(%q) error = %v, want one naming %s", tt.value, err, containersEnv)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("containersWanted(%q) = %v, %v; want %v, nil", tt.value, got, err, tt.want)
		}
	}
}

// fakeDocker records what container.endpoint asked of Docker.
type fakeDocker struct {
	probeErr error
	url      string
	startErr error

	probes atomic.Int32
	starts atomic.Int32
	mu     sync.Mutex
	tokens []string
}

func (f *fakeDocker) container() *container {
	return &container{
		probe: func(context.Context) error {
			f.probes.Add(1)
			return f.probeErr
		},
		start: func(_ context.Context, token string) (string, error) {
			f.starts.Add(1)
			f.mu.Lock()
			f.tokens = append(f.tokens, token)
			f.mu.Unlock()
			return f.url, f.startErr
		},
	}
}

func TestContainerEndpointDecides(t *testing.T) {
	t.Parallel()
	const url = "http://127.0.0.1:32768"
	tests := []struct {
		name       string
		env        map[string]string
		docker     *fakeDocker
		wantURL    string
		wantSkip   []string // substrings of the skip line; nil: no skip
		wantErr    bool
		wantStarts int32
		wantToken  string
	}{
		{
			name:   "unset: no container, Docker not even asked",
			env:    map[string]string{localstackTokenEnv: "tok"},
			docker: &fakeDocker{url: url},
		},
		{
			name:       "set without token: kumo",
			env:        map[string]string{containersEnv: "1"},
			docker:     &fakeDocker{url: url},
			wantURL:    url,
			wantStarts: 1,
			wantToken:  "",
		},
		{
			name:       "set with token: LocalStack gets the token",
			env:        map[string]string{containersEnv: "1", localstackTokenEnv: " ls-token \n"},
			docker:     &fakeDocker{url: url},
			wantURL:    url,
			wantStarts: 1,
			wantToken:  "ls-token",
		},
		{
			name:     "set but no Docker: one-line skip",
			env:      map[string]string{containersEnv: "1"},
			docker:   &fakeDocker{probeErr: errors.New("Cannot connect to the Docker daemon\nat unix:///var/run/docker.sock")},
			wantSkip: []string{containersEnv + "=1", "Docker is not available", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock"},
		},
		{
			name:       "container fails to start: error",
			env:        map[string]string{containersEnv: "1"},
			docker:     &fakeDocker{startErr: errors.New("wait for /health: timeout")},
			wantErr:    true,
			wantStarts: 1,
		},
		{
			name:    "unparsable value: error",
			env:     map[string]string{containersEnv: "please"},
			docker:  &fakeDocker{url: url},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			getenv := func(k string) string { return tt.env[k] }
			gotURL, skip, err := tt.docker.container().endpoint(getenv)
			if (err != nil) != tt.wantErr {
				t.Fatalf("endpoint() error = %v, want error: %v", err, tt.wantErr)
			}
			if gotURL != tt.wantURL {
				t.Errorf("endpoint() url = %q, want %q", gotURL, tt.wantURL)
			}
			if tt.wantSkip == nil && skip != "" {
				t.Errorf("endpoint() skip = %q, want none", skip)
			}
			for _, want := range tt.wantSkip {
				if !strings.Contains(skip, want) {
					t.Errorf("endpoint() skip = %q, want it to contain %q", skip, want)
				}
			}
			if strings.Contains(skip, "\n") {
				t.Errorf("endpoint() skip = %q, want one line", skip)
			}
			if got := tt.docker.starts.Load(); got != tt.wantStarts {
				t.Errorf("containers started = %d, want %d", got, tt.wantStarts)
			}
			if tt.wantStarts > 0 && tt.docker.tokens[0] != tt.wantToken {
				t.Errorf("start token = %q, want %q", tt.docker.tokens[0], tt.wantToken)
			}
			if tt.env[containersEnv] == "" && tt.docker.probes.Load() != 0 {
				t.Errorf("Docker probed %d times with %s unset, want 0", tt.docker.probes.Load(), containersEnv)
			}
		})
	}
}

func TestContainerEndpointStartsOnce(t *testing.T) {
	t.Parallel()
	f := &fakeDocker{url: "http://127.0.0.1:32769"}
	c := f.container()
	getenv := func(k string) string { return map[string]string{containersEnv: "1"}[k] }

	const callers = 8
	urls := make(chan string, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			url, _, err := c.endpoint(getenv)
			if err != nil {
				t.Errorf("endpoint() error = %v", err)
			}
			urls <- url
		})
	}
	wg.Wait()
	close(urls)
	for url := range urls {
		if url != f.url {
			t.Errorf("endpoint() = %q, want %q for every caller", url, f.url)
		}
	}
	if got := f.starts.Load(); got != 1 {
		t.Errorf("containers started = %d by %d callers, want 1", got, callers)
	}

	// A failure is remembered too: later callers do not retry a start that
	// takes minutes to time out.
	f2 := &fakeDocker{probeErr: errors.New("no socket")}
	c2 := f2.container()
	for range 3 {
		if _, skip, _ := c2.endpoint(getenv); skip == "" {
			t.Error("endpoint() without Docker: want a skip line every time")
		}
	}
	if got := f2.probes.Load(); got != 1 {
		t.Errorf("Docker probed %d times, want 1", got)
	}
}

// TestContainerEndpointUnset runs the real function: with the variable unset
// every test uses the in-process emulator, so it must not touch Docker.
func TestContainerEndpointUnset(t *testing.T) {
	t.Setenv(containersEnv, "")
	if got := containerEndpoint(t); got != "" {
		t.Errorf("containerEndpoint() = %q with %s unset, want \"\"", got, containersEnv)
	}
}

// TestContainerEndpointServesAWS runs the real function with containers on.
// Without Docker (as on the development machine) it skips with the line every
// container-backed test would print; with Docker it starts the pinned image
// (LocalStack when LOCALSTACK_AUTH_TOKEN is set) and calls DynamoDB on it.
func TestContainerEndpointServesAWS(t *testing.T) {
	t.Setenv(containersEnv, "1")
	url := containerEndpoint(t)
	if url == "" {
		t.Fatalf("containerEndpoint() = \"\" with %s=1, want an endpoint or a skip", containersEnv)
	}
	db := dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(url),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
	if _, err := db.ListTables(t.Context(), &dynamodb.ListTablesInput{}); err != nil {
		t.Fatalf("ListTables at %s: %v", url, err)
	}
}
