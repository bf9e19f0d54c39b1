package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fanout/fanout/internal/awstest"
	"github.com/fanout/fanout/metrics"
)

// buildBinary builds the production binary once for the tests here.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fanout")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestBinary builds the production binary, checks that it does not link
// the emulator, runs it against the test endpoint, and stops it with
// SIGTERM while a request is in flight: the request completes and the
// process exits 0 in time.
func TestBinary(t *testing.T) {
	bin := buildBinary(t)

	t.Run("does not link the emulator", func(t *testing.T) {
		out, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
		if err != nil {
			t.Fatalf("go version -m: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "github.com/aws/aws-sdk-go-v2") {
			t.Fatalf("go version -m lists no modules; cannot judge:\n%s", out)
		}
		if strings.Contains(string(out), "sivchari/kumo") {
			t.Errorf("the production binary links the emulator:\n%s", out)
		}
	})

	t.Run("bad configuration stops it with one line", func(t *testing.T) {
		cmd := exec.Command(bin)
		cmd.Env = []string{"FANOUT_STREAM_SHARDS=many", "AWS_REGION=us-east-1"}
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("started with FANOUT_STREAM_SHARDS=many")
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		var entry struct{ Level, Msg, Error string }
		if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &entry) != nil || entry.Level != "error" || !strings.Contains(entry.Error, "FANOUT_STREAM_SHARDS") {
			t.Errorf("output %q: want one JSON log line at level error naming FANOUT_STREAM_SHARDS", out)
		}
	})

	// stopsWith runs the binary with env and returns the one JSON line it
	// must stop with, at level error.
	stopsWith := func(t *testing.T, env []string) string {
		t.Helper()
		cmd := exec.Command(bin)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("fanout started; output:\n%s", out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		var entry struct{ Level, Msg, Error string }
		if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &entry) != nil || entry.Level != "error" || entry.Error == "" {
			t.Fatalf("output %q: want one JSON log line at level error", out)
		}
		return entry.Error
	}

	t.Run("missing resources stop it at start, each named", func(t *testing.T) {
		n := awstest.Name(t, "missing")
		msg := stopsWith(t, append(awstest.ProcessEnv(t), resourceEnv(n)...))
		for _, want := range []string{
			"table " + n + "-agents (FANOUT_AGENTS_TABLE)", "table " + n + "-subscribers (FANOUT_SUBSCRIBERS_TABLE)",
			"table " + n + "-subscriber-events (FANOUT_SUBSCRIBER_EVENTS_TABLE)", "table " + n + "-dead-letters (FANOUT_DEAD_LETTERS_TABLE)",
			"table " + n + "-event-ids (FANOUT_EVENT_IDS_TABLE)", "table " + n + "-aggregator (FANOUT_AGGREGATOR_LEASE_TABLE)",
			"table " + n + "-publisher (FANOUT_PUBLISHER_LEASE_TABLE)", "table " + n + "-replays (FANOUT_REPLAYS_TABLE)", "stream " + n + "-events (FANOUT_STREAM)",
		} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not name %s", msg, want)
			}
		}
	})

	t.Run("an endpoint without its scheme is reported as that", func(t *testing.T) {
		msg := stopsWith(t, []string{"AWS_REGION=us-east-1", "AWS_ENDPOINT_URL=localhost:4566", "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test"})
		if !strings.Contains(msg, `AWS_ENDPOINT_URL="localhost:4566"`) || !strings.Contains(msg, "http://") || strings.Contains(msg, "credentials") {
			t.Errorf("error %q: want it to name AWS_ENDPOINT_URL and say it needs http://, not blame credentials", msg)
		}
	})

	t.Run("an unreachable endpoint is reported as that", func(t *testing.T) {
		msg := stopsWith(t, []string{"AWS_REGION=us-east-1", "AWS_ENDPOINT_URL=http://" + awstest.FreeAddr(t), "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test"})
		if !strings.Contains(msg, "cannot reach AWS") || strings.Contains(msg, "check credentials") {
			t.Errorf("error %q: want it to say AWS cannot be reached, not blame credentials", msg)
		}
	})

	t.Run("bad auth settings stop it at start", func(t *testing.T) {
		for env, want := range map[string]string{
			"FANOUT_AUTH=off": `FANOUT_AUTH="off"`,
			"FANOUT_ADMINS=arn:aws:iam::123456789012:group/ops":          "FANOUT_ADMINS",
			"FANOUT_ADMINS=arn:aws:sts::123456789012:assumed-role/ops/s": "session ARN",
		} {
			if msg := stopsWith(t, append(awstest.ProcessEnv(t), env)); !strings.Contains(msg, want) {
				t.Errorf("%s: error %q does not say %q", env, msg, want)
			}
		}
	})

	t.Run("callers must authenticate unless FANOUT_AUTH=none", func(t *testing.T) {
		addr := awstest.FreeAddr(t)
		n := awstest.Name(t, "iam")
		cmd := exec.Command(bin)
		cmd.Env = append(append(awstest.ProcessEnv(t), resourceEnv(n)...), "FANOUT_ADDR="+addr, "FANOUT_CREATE_RESOURCES=true")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := http.Post("http://"+addr+"/agents", "application/json", strings.NewReader(`{"resourceArn":"arn:aws:iam::123456789012:role/x"}`))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != 401 {
					t.Fatalf("POST /agents without a token: %d, want 401", resp.StatusCode)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not serving in 30 s: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("SIGTERM drains and exits 0", func(t *testing.T) {
		addr := awstest.FreeAddr(t)
		n := awstest.Name(t, "bin")
		cmd := exec.Command(bin)
		cmd.Env = append(append(awstest.ProcessEnv(t), resourceEnv(n)...),
			"FANOUT_ADDR="+addr,
			"FANOUT_CREATE_RESOURCES=true",
			"FANOUT_SHUTDOWN_TIMEOUT=10s",
			"FANOUT_AUTH=none", // this test is about shutdown; the one above about auth
		)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		logs := make(chan string, 1000)
		go func() {
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				select {
				case logs <- sc.Text():
				default:
				}
			}
			close(logs)
		}()
		defer cmd.Process.Kill()
		base := "http://" + addr
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := http.Get(base + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("not ready in 30 s; logs:\n%s", drain(logs))
			}
			time.Sleep(50 * time.Millisecond)
		}

		// A registration in flight when SIGTERM arrives still completes.
		type result struct {
			status int
			err    error
		}
		inFlight := make(chan result, 1)
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		body := `{"resourceArn":"arn:aws:iam::123456789012:role/sigterm"}`
		// Send the headers with Expect: 100-continue. The server answers
		// "100 Continue" when the handler starts reading the body: from
		// then on the request is in flight, waiting for its body.
		fmt.Fprintf(conn, "POST /agents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", len(body))
		br := bufio.NewReader(conn)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "100 Continue") {
			t.Fatalf("waiting for 100 Continue: %q, %v", line, err)
		}
		if _, err := br.ReadString('\n'); err != nil { // the blank line after it
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Time{})
		start := time.Now()
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		go func() {
			defer conn.Close()
			// Finish the request only once the listener is closed: the
			// signal has landed and no new connection is accepted.
			deadline := time.Now().Add(10 * time.Second)
			for {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					break
				}
				c.Close()
				if time.Now().After(deadline) {
					inFlight <- result{err: fmt.Errorf("still accepting connections 10 s after SIGTERM")}
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
			if _, err := io.WriteString(conn, body); err != nil {
				inFlight <- result{err: err}
				return
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				inFlight <- result{err: err}
				return
			}
			resp.Body.Close()
			inFlight <- result{status: resp.StatusCode}
		}()
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		select {
		case err := <-waited:
			if err != nil {
				t.Fatalf("exit after SIGTERM: %v; logs:\n%s", err, drain(logs))
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("still running 20 s after SIGTERM; logs:\n%s", drain(logs))
		}
		t.Logf("stopped %s after SIGTERM", time.Since(start).Round(time.Millisecond))
		r := <-inFlight
		if r.err != nil || r.status != 200 {
			t.Errorf("request in flight at SIGTERM: status %d, error %v; want 200", r.status, r.err)
		}
		// Every line on stderr is one of our JSON log entries: nothing
		// comes from KCL's default (logrus) logger or the AWS SDK's.
		lines := strings.Split(strings.TrimSpace(drain(logs)), "\n")
		if len(lines) < 3 {
			t.Fatalf("only %d log lines", len(lines))
		}
		warned := false
		for _, l := range lines {
			var entry struct{ Level, Msg string }
			if err := json.Unmarshal([]byte(l), &entry); err != nil || entry.Level == "" || entry.Msg == "" {
				t.Errorf("log line is not a structured entry: %s", l)
			}
			warned = warned || entry.Level == "warn" && strings.Contains(entry.Msg, "FANOUT_AUTH=none")
		}
		if !warned {
			t.Error("FANOUT_AUTH=none logged no warning at start")
		}
	})
}

// TestBinaryEMF runs the production binary with FANOUT_EMF_NAMESPACE set,
// delivers an event through it and stops it with SIGTERM: stdout then
// holds only EMF documents CloudWatch accepts, and the write at the stop
// (stamped after the signal; the periodic one comes a minute after start)
// carries the metrics deploy/'s alarms read, with their dimensions, and
// the delivery just made. Not the lag gauges: by then the task has
// released its shards, whose lag their new owner reports.
func TestBinaryEMF(t *testing.T) {
	bin := buildBinary(t)
	const ns = "fanout/binary-test"
	addr := awstest.FreeAddr(t)
	n := awstest.Name(t, "emf")
	cmd := exec.Command(bin)
	cmd.Env = append(append(awstest.ProcessEnv(t), resourceEnv(n)...),
		"FANOUT_ADDR="+addr, "FANOUT_CREATE_RESOURCES=true", "FANOUT_SHUTDOWN_TIMEOUT=10s",
		"FANOUT_AUTH=none", "FANOUT_EMF_NAMESPACE="+ns)
	// Read only once the process has exited (Wait has copied all).
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-waited
		if t.Failed() {
			t.Logf("logs:\n%s", stderr.String())
		}
	}()
	base := "http://" + addr
	poll(t, 30*time.Second, "ready", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	producer := postJSON(t, base+"/agents", `{"resourceArn":"arn:aws:iam::123456789012:role/emf-producer"}`, 200)["agentId"]
	listener := postJSON(t, base+"/agents", `{"resourceArn":"arn:aws:iam::123456789012:role/emf-listener"}`, 200)["agentId"]
	req, _ := http.NewRequest("PUT", base+"/agents/"+listener+"/subscriptions/"+producer, nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 204 {
		t.Fatalf("subscribe: %v %v", resp, err)
	}
	event := fmt.Sprintf(`{"agentId":%q,"eventType":"emf","data":1}`, producer)
	// Publish until one delivery is counted: the subscription reaches
	// the aggregator within its cache's second.
	poll(t, 30*time.Second, "a delivery", func() bool {
		postJSON(t, base+"/events", event, 202)
		return scrape(t, base, metrics.Deliveries) >= 1
	})

	signalled := time.Now().Truncate(time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waited:
		waited <- err // for the deferred wait
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("still running 20 s after SIGTERM")
	}

	// What the write at the stop published: metric name and dimensions
	// ("k=v" sorted) -> values.
	atStop := map[string][]float64{}
	var lines []string
	for l := range strings.Lines(stdout.String()) {
		lines = append(lines, strings.TrimSuffix(l, "\n"))
	}
	if len(lines) == 0 {
		t.Fatal("stdout holds no EMF line")
	}
	for _, line := range lines {
		doc, err := parseEMF(line, ns)
		if err != nil {
			t.Errorf("stdout line is not an EMF document: %v: %.300s", err, line)
			continue
		}
		if !doc.at.Before(signalled) {
			for _, k := range doc.series {
				atStop[k] = append(atStop[k], doc.values...)
			}
		}
	}
	if t.Failed() {
		return
	}
	for _, want := range []string{
		metrics.DeliveryLatency,
		metrics.DeadLetters,
		metrics.HTTPRequests + " status_class=5xx",
		metrics.AWSRequests + " outcome=throttled",
		metrics.AWSEntriesFailed + " outcome=throttled",
	} {
		if _, ok := atStop[want]; !ok {
			t.Errorf("the EMF write at SIGTERM has no %s (alarmed in deploy/); %d lines on stdout", want, len(lines))
		}
	}
	if v := atStop[metrics.DeliveryLatency]; len(v) == 0 || v[0] <= 0 {
		t.Errorf("the EMF write at SIGTERM has delivery latencies %v, want the delivery made", v)
	}
	if v := atStop[metrics.Deliveries]; len(v) != 1 || v[0] < 1 {
		t.Errorf("the EMF write at SIGTERM counts deliveries %v, want at least 1", v)
	}
}

// emfDoc is what one EMF document publishes.
type emfDoc struct {
	at     time.Time
	series []string // metric name, then its dimensions "k=v" in order, space-separated
	values []float64
}

// parseEMF checks line against the CloudWatch Embedded Metric Format
// specification (one metric directive in namespace ns; every dimension a
// string member, every metric a number or an array of at most 100) and
// returns what it publishes.
func parseEMF(line, ns string) (emfDoc, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(line), &doc); err != nil {
		return emfDoc{}, err
	}
	var meta struct {
		Timestamp         *int64
		CloudWatchMetrics []struct {
			Namespace  string
			Dimensions [][]string
			Metrics    []struct{ Name, Unit string }
		}
	}
	if err := json.Unmarshal(doc["_aws"], &meta); err != nil {
		return emfDoc{}, fmt.Errorf("_aws: %w", err)
	}
	if meta.Timestamp == nil || len(meta.CloudWatchMetrics) != 1 {
		return emfDoc{}, fmt.Errorf("_aws wants a Timestamp and one CloudWatchMetrics directive")
	}
	dir := meta.CloudWatchMetrics[0]
	if dir.Namespace != ns || len(dir.Metrics) != 1 || dir.Metrics[0].Name == "" {
		return emfDoc{}, fmt.Errorf("directive: namespace %q, %d metrics; want %q and one", dir.Namespace, len(dir.Metrics), ns)
	}
	out := emfDoc{at: time.UnixMilli(*meta.Timestamp)}
	raw := doc[dir.Metrics[0].Name]
	var v float64
	if err := json.Unmarshal(raw, &v); err == nil {
		out.values = []float64{v}
	} else if err := json.Unmarshal(raw, &out.values); err != nil || len(out.values) == 0 || len(out.values) > 100 {
		return emfDoc{}, fmt.Errorf("metric %s = %s: want a number or 1 to 100 of them", dir.Metrics[0].Name, raw)
	}
	for _, dims := range dir.Dimensions {
		key := dir.Metrics[0].Name
		for _, d := range dims {
			var dv string
			if err := json.Unmarshal(doc[d], &dv); err != nil {
				return emfDoc{}, fmt.Errorf("dimension %s = %s: want a string member", d, doc[d])
			}
			key += " " + d + "=" + dv
		}
		out.series = append(out.series, key)
	}
	return out, nil
}

// poll calls ok until it holds, failing t with what it waited for after
// timeout.
func poll(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s in %s", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// postJSON posts body to url, wants status, and returns the answer's
// string members.
func postJSON(t *testing.T, url, body string, status int) map[string]string {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("POST %s: %d %s, want %d", url, resp.StatusCode, b, status)
	}
	out := map[string]string{}
	var raw map[string]any
	json.Unmarshal(b, &raw)
	for k, v := range raw {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out
}

// scrape returns the value of the unlabelled series name on GET /metrics.
func scrape(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("GET /metrics: %s: %v", sc.Text(), err)
			}
			return f
		}
	}
	return 0
}

// resourceEnv names a stream and tables of fanout's own, starting with n.
func resourceEnv(n string) []string {
	return []string{
		"FANOUT_STREAM=" + n + "-events",
		"FANOUT_AGENTS_TABLE=" + n + "-agents",
		"FANOUT_SUBSCRIBERS_TABLE=" + n + "-subscribers",
		"FANOUT_SUBSCRIBER_EVENTS_TABLE=" + n + "-subscriber-events",
		"FANOUT_DEAD_LETTERS_TABLE=" + n + "-dead-letters",
		"FANOUT_EVENT_IDS_TABLE=" + n + "-event-ids",
		"FANOUT_REPLAYS_TABLE=" + n + "-replays",
		"FANOUT_AGGREGATOR_LEASE_TABLE=" + n + "-aggregator",
		"FANOUT_PUBLISHER_LEASE_TABLE=" + n + "-publisher",
	}
}

func drain(logs chan string) string {
	var b strings.Builder
	for {
		select {
		case l, ok := <-logs:
			if !ok {
				return b.String()
			}
			b.WriteString(l + "\n")
		default:
			return b.String()
		}
	}
}
