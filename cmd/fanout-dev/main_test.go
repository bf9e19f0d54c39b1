package main

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fanout/fanout/internal/awstest"
)

// TestDevEntryPoint runs the README's first command as a newcomer would:
// it starts, prints the API URL and the AWS endpoint, serves a working API
// on the embedded emulator, and stops cleanly on Ctrl-C.
func TestDevEntryPoint(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "fanout-dev")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), "FANOUT_ADDR="+awstest.FreeAddr(t), "FANOUT_DEV_AWS_ADDR="+awstest.FreeAddr(t))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	var api, aws string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && (api == "" || aws == "") {
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
