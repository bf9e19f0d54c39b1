package app_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// operationsFile lists the AWS operations production fanout calls; the
// deploy tests hold the task role in deploy/fanout.yaml to exactly that list.
const operationsFile = "../deploy/testdata/operations.txt"

// unexercised are operations in operationsFile that this test cannot make
// the service call on the emulator, each with the path that calls it.
var unexercised = map[string]string{
	"sqs:DeleteQueue":     "registration's clean-up when the agent row cannot be activated (store tests inject that failure)",
	"dynamodb:DeleteItem": "registration's release of its claim when the queue cannot be made (store tests inject that failure)",
}

// TestAWSOperationsMatchDeployPolicy runs production fanout (resources made
// beforehand, as deploy/ makes them) through every path a user can drive —
// registration, subscriptions, publishing, delivery, both dead-letter
// stages, readiness, shutdown — records each AWS operation it calls, and
// compares them with deploy/testdata/operations.txt, from which the task
// role's permissions are checked. A new AWS call without a permission fails
// here, and so does a permission nothing uses.
func TestAWSOperationsMatchDeployPolicy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start(t, "creator").stop(t) // creates the resources, as deploy/ would
	e.cfg.CreateResources = false
	s := e.start(t, "production")

	producer, sub, gone := register(t, s, "p"), register(t, s, "s"), register(t, s, "gone")
	mustCall(t, 200, "GET", s.url+"/agents/"+producer.ID, nil)
	subscribe(t, s, sub, producer)
	subscribe(t, s, gone, producer)
	mustCall(t, 200, "GET", s.url+"/agents/"+sub.ID+"/subscriptions", nil)
	if _, err := e.sqs.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: aws.String(gone.QueueURL)}); err != nil {
		t.Fatal(err)
	}
	e.putRecord(t, producer.ID, "garbage")
	publish(t, s, numbered(producer, 0, 3)...)
	receive(t, e, sub.QueueURL, deliveryTimeout, count(3))
	waitFor(t, deliveryTimeout, "dead letters of both stages", func() bool {
		letters, err := e.store.DeadLetters(context.Background())
		stages := map[string]bool{}
		for _, l := range letters {
			stages[l.Stage] = true
		}
		return err == nil && stages["aggregator"] && stages["publisher"]
	})
	mustCall(t, 204, "DELETE", s.url+"/agents/"+sub.ID+"/subscriptions/"+producer.ID, nil)
	mustCall(t, 200, "GET", s.url+"/readyz", nil)
	s.stop(t)

	called := map[string]bool{}
	for op := range s.app.Calls().Snapshot() {
		service, name, _ := strings.Cut(op, ".")
		called[sdkPackage(service)+":"+name] = true
	}
	delete(called, "sts:GetCallerIdentity") // allowed to every principal: needs no permission

	listed := readOperations(t)
	var missing, unused []string
	for op := range called {
		if !listed[op] {
			missing = append(missing, op)
		}
	}
	for op := range listed {
		if !called[op] && unexercised[op] == "" {
			unused = append(unused, op)
		}
	}
	sort.Strings(missing)
	sort.Strings(unused)
	if len(missing) > 0 {
		t.Errorf("fanout called operations %s lists not: add them (and the task role grants them)", operationsFile)
		for _, op := range missing {
			t.Errorf("  missing: %s", op)
		}
	}
	if len(unused) > 0 {
		t.Errorf("%s lists operations production fanout never called: remove them (least privilege), or name the path in unexercised", operationsFile)
		for _, op := range unused {
			t.Errorf("  unused: %s", op)
		}
	}
	if t.Failed() {
		ops := slices.Sorted(func(yield func(string) bool) {
			for op := range called {
				if !yield(op) {
					return
				}
			}
		})
		t.Logf("called: %s", strings.Join(ops, " "))
	}
}

// sdkPackage names an SDK service ID the way operations.txt does: the
// client's package name.
func sdkPackage(serviceID string) string {
	return strings.ToLower(strings.ReplaceAll(serviceID, " ", ""))
}

func readOperations(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open(operationsFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ops := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		ops[line] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(fmt.Errorf("read %s: %w", operationsFile, err))
	}
	return ops
}
