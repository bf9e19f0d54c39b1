package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/fanout/fanout/client"
	"github.com/fanout/fanout/internal/awstest"
)

// TestDevEntryPoint runs the README's first command as a newcomer would:
// it starts, prints the API URL and the AWS endpoint, serves a working API
// on the embedded emulator, and stops cleanly on Ctrl-C.
func TestDevEntryPoint(t *testing.T) {
	t.Parallel()
	api, aws, banner, stop := startDev(t)
	if !strings.Contains(banner, "Authentication: none") || !strings.Contains(banner, "FANOUT_AUTH=iam go run ./cmd/fanout-dev") {
		t.Errorf("banner does not say that authentication is off and how to turn it on:\n%s", banner)
	}

	resp, err := http.Get(api + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /readyz right after start: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = http.Post(api+"/agents", "application/json", strings.NewReader(`{"resourceArn":"arn:aws:iam::123456789012:role/dev"}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST /agents: %v %v", resp, err)
	}
	resp.Body.Close()
	// The printed AWS endpoint is the emulator: it answers AWS requests.
	req, _ := http.NewRequest("POST", aws, strings.NewReader(`{}`))
	req.Header.Set("X-Amz-Target", "DynamoDB_20120810.ListTables")
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("ListTables at the printed AWS endpoint: %v %v", resp, err)
	}
	resp.Body.Close()

	stop()
}

// TestDevIAM: with FANOUT_AUTH=iam, fanout-dev asks for tokens, and the
// README's token from the example agent works on the emulator, whose STS
// answers one identity, made admin.
func TestDevIAM(t *testing.T) {
	t.Parallel()
	api, aws, banner, stop := startDev(t, "FANOUT_AUTH=iam")
	defer stop()
	if !strings.Contains(banner, "Authentication: iam") || !strings.Contains(banner, emulatorCaller) {
		t.Errorf("banner does not say how iam works here:\n%s", banner)
	}
	body := `{"resourceArn":"arn:aws:iam::123456789012:role/dev"}`
	resp, err := http.Post(api+"/agents", "application/json", strings.NewReader(body))
	if err != nil || resp.StatusCode != 401 {
		t.Fatalf("POST /agents without a token: %v %v, want 401", resp, err)
	}
	resp.Body.Close()
	cfg := awssdk.Config{Region: "us-east-1", BaseEndpoint: &aws, Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}
	token, err := client.New(client.Config{URL: api, AWS: cfg}).Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", api+"/agents", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST /agents with a token: %d %s, want 200", resp.StatusCode, b)
	}
	resp.Body.Close()
}

// startDev builds and starts fanout-dev with env added, and returns the API
// URL and AWS endpoint it printed, its whole banner, and a stop that sends
// Ctrl-C and fails the test unless it exits cleanly.
func startDev(t *testing.T, env ...string) (api, aws, banner string, stop func()) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fanout-dev")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(append(os.Environ(), "FANOUT_ADDR="+awstest.FreeAddr(t), "FANOUT_DEV_AWS_ADDR="+awstest.FreeAddr(t)), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })

	var lines []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && !strings.Contains(sc.Text(), "Ctrl-C stops it") {
		lines = append(lines, sc.Text())
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 2 && fields[0] == "API:":
			api = fields[1]
		case len(fields) >= 3 && fields[0] == "AWS" && fields[1] == "endpoint:":
			aws = fields[2]
		}
	}
	if api == "" || aws == "" {
		t.Fatalf("did not print the API URL and the AWS endpoint (got %q, %q)", api, aws)
	}
	go func() { // keep draining stdout
		for sc.Scan() {
		}
	}()
	return api, aws, strings.Join(lines, "\n"), func() {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("exit after Ctrl-C: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("still running 30 s after Ctrl-C")
		}
	}
}
