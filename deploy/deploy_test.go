package deploy

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fanout/fanout/app"
)

const templatePath = "fanout.yaml"

// Property shapes of the resource types the tests read.
type (
	keyElement struct {
		AttributeName string `yaml:"AttributeName"`
		KeyType       string `yaml:"KeyType"`
	}
	tableProps struct {
		TableName                        any    `yaml:"TableName"`
		BillingMode                      string `yaml:"BillingMode"`
		PointInTimeRecoverySpecification struct {
			PointInTimeRecoveryEnabled bool `yaml:"PointInTimeRecoveryEnabled"`
		} `yaml:"PointInTimeRecoverySpecification"`
		AttributeDefinitions []struct {
			AttributeName string `yaml:"AttributeName"`
			AttributeType string `yaml:"AttributeType"`
		} `yaml:"AttributeDefinitions"`
		KeySchema              []keyElement `yaml:"KeySchema"`
		GlobalSecondaryIndexes []struct {
			IndexName  string       `yaml:"IndexName"`
			KeySchema  []keyElement `yaml:"KeySchema"`
			Projection struct {
				ProjectionType string `yaml:"ProjectionType"`
			} `yaml:"Projection"`
		} `yaml:"GlobalSecondaryIndexes"`
		StreamSpecification *struct {
			StreamViewType string `yaml:"StreamViewType"`
		} `yaml:"StreamSpecification"`
		TimeToLiveSpecification *struct {
			AttributeName string `yaml:"AttributeName"`
			Enabled       bool   `yaml:"Enabled"`
		} `yaml:"TimeToLiveSpecification"`
	}
	taskDefinitionProps struct {
		TaskRoleArn          any    `yaml:"TaskRoleArn"`
		ExecutionRoleArn     any    `yaml:"ExecutionRoleArn"`
		Cpu                  string `yaml:"Cpu"`
		Memory               string `yaml:"Memory"`
		ContainerDefinitions []struct {
			Name         string `yaml:"Name"`
			StopTimeout  int    `yaml:"StopTimeout"`
			PortMappings []struct {
				ContainerPort int `yaml:"ContainerPort"`
			} `yaml:"PortMappings"`
			Environment []struct {
				Name  string `yaml:"Name"`
				Value any    `yaml:"Value"`
			} `yaml:"Environment"`
		} `yaml:"ContainerDefinitions"`
		RuntimePlatform struct {
			CpuArchitecture       string `yaml:"CpuArchitecture"`
			OperatingSystemFamily string `yaml:"OperatingSystemFamily"`
		} `yaml:"RuntimePlatform"`
	}
	roleProps struct {
		Policies []struct {
			PolicyDocument struct {
				Statement []statement `yaml:"Statement"`
			} `yaml:"PolicyDocument"`
		} `yaml:"Policies"`
		ManagedPolicyArns []any `yaml:"ManagedPolicyArns"`
	}
	statement struct {
		Sid         string `yaml:"Sid"`
		Effect      string `yaml:"Effect"`
		Action      any    `yaml:"Action"`
		Resource    any    `yaml:"Resource"`
		NotAction   any    `yaml:"NotAction"`
		NotResource any    `yaml:"NotResource"`
	}
	targetGroupProps struct {
		HealthCheckPath       string `yaml:"HealthCheckPath"`
		Port                  int    `yaml:"Port"`
		TargetGroupAttributes []struct {
			Key   string `yaml:"Key"`
			Value string `yaml:"Value"`
		} `yaml:"TargetGroupAttributes"`
	}
	serviceProps struct {
		DesiredCount            any `yaml:"DesiredCount"`
		DeploymentConfiguration struct {
			MinimumHealthyPercent    int `yaml:"MinimumHealthyPercent"`
			MaximumPercent           int `yaml:"MaximumPercent"`
			DeploymentCircuitBreaker struct {
				Enable   bool `yaml:"Enable"`
				Rollback bool `yaml:"Rollback"`
			} `yaml:"DeploymentCircuitBreaker"`
		} `yaml:"DeploymentConfiguration"`
		HealthCheckGracePeriodSeconds int `yaml:"HealthCheckGracePeriodSeconds"`
		LoadBalancers                 []struct {
			ContainerName  string `yaml:"ContainerName"`
			ContainerPort  int    `yaml:"ContainerPort"`
			TargetGroupArn any    `yaml:"TargetGroupArn"`
		} `yaml:"LoadBalancers"`
	}
	loadBalancerProps struct {
		Scheme         any   `yaml:"Scheme"`
		Subnets        any   `yaml:"Subnets"`
		SecurityGroups []any `yaml:"SecurityGroups"`
	}
	securityGroupProps struct {
		SecurityGroupIngress []struct {
			IpProtocol            string `yaml:"IpProtocol"`
			FromPort              int    `yaml:"FromPort"`
			ToPort                int    `yaml:"ToPort"`
			CidrIp                any    `yaml:"CidrIp"`
			CidrIpv6              any    `yaml:"CidrIpv6"`
			SourcePrefixListId    any    `yaml:"SourcePrefixListId"`
			SourceSecurityGroupId any    `yaml:"SourceSecurityGroupId"`
		} `yaml:"SecurityGroupIngress"`
	}
)

// decode decodes res's Properties into v.
func decode(t *testing.T, res resource, v any) {
	t.Helper()
	if err := res.Properties.Decode(v); err != nil {
		t.Fatalf("decode %s properties: %v", res.Type, err)
	}
}

// only returns the one resource of type typ, and its logical id.
func only(t *testing.T, tmpl template, typ string) (string, resource) {
	t.Helper()
	var ids []string
	for id, r := range tmpl.Resources {
		if r.Type == typ {
			ids = append(ids, id)
		}
	}
	if len(ids) != 1 {
		t.Fatalf("%s resources: %v, want exactly one", typ, ids)
	}
	return ids[0], tmpl.Resources[ids[0]]
}

// container is the fanout container of the task definition.
type container struct {
	stopTimeout int
	env         map[string]any
	port        int
}

func fanoutTask(t *testing.T, tmpl template) (taskDefinitionProps, container) {
	t.Helper()
	_, res := only(t, tmpl, "AWS::ECS::TaskDefinition")
	var td taskDefinitionProps
	decode(t, res, &td)
	if len(td.ContainerDefinitions) != 1 {
		t.Fatalf("task definition has %d containers, want 1", len(td.ContainerDefinitions))
	}
	cd := td.ContainerDefinitions[0]
	c := container{stopTimeout: cd.StopTimeout, env: map[string]any{}}
	for _, e := range cd.Environment {
		if _, dup := c.env[e.Name]; dup {
			t.Errorf("task environment sets %s twice", e.Name)
		}
		c.env[e.Name] = e.Value
	}
	if len(cd.PortMappings) == 1 {
		c.port = cd.PortMappings[0].ContainerPort
	}
	return td, c
}

// requiredInProduction reports whether a variable's default is useless in
// production: resource names, which the stack chooses.
func requiredInProduction(v app.Variable) bool {
	return v.Name == "FANOUT_STREAM" || strings.HasSuffix(v.Name, "_TABLE")
}

func variableNames() map[string]bool {
	names := map[string]bool{}
	for _, v := range app.Variables() {
		names[v.Name] = true
	}
	return names
}

// wantTables is each table variable's key schema ("hash" or "hash/range")
// and global secondary indexes ("name=hash/range"), as the store package
// creates them for local runs.
var wantTables = map[string]struct {
	key     string
	indexes []string
	stream  string // StreamViewType, "" when none
	ttl     string // TTL attribute, "" when none
}{
	// TTL removes Subscribers' unsubscribe tombstones and old
	// SubscriberEvents items.
	"FANOUT_AGENTS_TABLE":            {key: "agentId", indexes: []string{"resourceArn-index=resourceArn"}},
	"FANOUT_SUBSCRIBERS_TABLE":       {key: "producerId/subscriberId", indexes: []string{"subscriberId-index=subscriberId/producerId"}, ttl: "expiresAt"},
	"FANOUT_SUBSCRIBER_EVENTS_TABLE": {key: "subscriberId/timestamp", stream: "NEW_IMAGE", ttl: "expiresAt"},
	"FANOUT_DEAD_LETTERS_TABLE":      {key: "id", indexes: []string{"all-index=listAll/listKey", "stage-index=stage/listKey", "producer-index=producerId/listKey", "subscriber-index=subscriberId/listKey"}},
	"FANOUT_EVENT_IDS_TABLE":         {key: "producerId/eventId", ttl: "expiresAt"},
	"FANOUT_REPLAYS_TABLE":           {key: "subscriberId/id", indexes: []string{"state-index=state/createdAt"}, ttl: "expiresAt"},
	"FANOUT_AGGREGATOR_LEASE_TABLE":  {key: "ShardID"},
	"FANOUT_PUBLISHER_LEASE_TABLE":   {key: "ShardID"},
}

func keyString(ks []keyElement) string {
	var hash, rng string
	for _, k := range ks {
		switch k.KeyType {
		case "HASH":
			hash = k.AttributeName
		case "RANGE":
			rng = k.AttributeName
		}
	}
	if rng == "" {
		return hash
	}
	return hash + "/" + rng
}

// TestTaskEnvironment: the task sets every resource name fanout reads, each
// to a resource of the right kind, and no variable fanout does not read.
func TestTaskEnvironment(t *testing.T) {
	t.Parallel()
	tmpl := loadTemplate(t, templatePath)
	_, c := fanoutTask(t, tmpl)
	known := variableNames()

	for name := range c.env {
		if strings.HasPrefix(name, "FANOUT_") && !known[name] {
			t.Errorf("task sets %s, which fanout does not read (not in app.Variables)", name)
		}
	}
	if _, ok := c.env["AWS_REGION"]; !ok {
		t.Error("task environment lacks AWS_REGION")
	}
	if v, ok := c.env["FANOUT_CREATE_RESOURCES"]; ok && fmt.Sprint(v) != "false" {
		t.Errorf("task sets FANOUT_CREATE_RESOURCES=%v: production resources come from the stack", v)
	}

	referenced := map[string]string{} // resource id -> variable
	for _, v := range app.Variables() {
		if !requiredInProduction(v) {
			continue
		}
		val, ok := c.env[v.Name]
		if !ok {
			t.Errorf("task environment lacks %s (its default %q names no stack resource)", v.Name, v.Default)
			continue
		}
		id, ok := ref(val)
		if !ok {
			t.Errorf("%s = %v, want !Ref of a stack resource", v.Name, val)
			continue
		}
		if other, dup := referenced[id]; dup {
			t.Errorf("%s and %s both name %s", other, v.Name, id)
		}
		referenced[id] = v.Name
		res, ok := tmpl.Resources[id]
		if !ok {
			t.Errorf("%s refers to %s, which is not a resource", v.Name, id)
			continue
		}
		wantType := "AWS::DynamoDB::Table"
		if v.Name == "FANOUT_STREAM" {
			wantType = "AWS::Kinesis::Stream"
		}
		if res.Type != wantType {
			t.Errorf("%s refers to %s of type %s, want %s", v.Name, id, res.Type, wantType)
			continue
		}
		if want, ok := wantTables[v.Name]; ok {
			var p tableProps
			decode(t, res, &p)
			if got := keyString(p.KeySchema); got != want.key {
				t.Errorf("%s refers to %s with key %s, want %s", v.Name, id, got, want.key)
			}
		} else if wantType == "AWS::DynamoDB::Table" {
			t.Errorf("%s: no expected schema in wantTables; add it", v.Name)
		}
	}

	// The shutdown timeout the task runs with must fit in ECS's stop timeout.
	shutdown := defaultOf(t, "FANOUT_SHUTDOWN_TIMEOUT")
	if v, ok := c.env["FANOUT_SHUTDOWN_TIMEOUT"]; ok {
		shutdown = fmt.Sprint(v)
	}
	d, err := time.ParseDuration(shutdown)
	if err != nil {
		t.Fatalf("FANOUT_SHUTDOWN_TIMEOUT=%q: %v", shutdown, err)
	}
	if stop := time.Duration(c.stopTimeout) * time.Second; d >= stop {
		t.Errorf("FANOUT_SHUTDOWN_TIMEOUT %v >= StopTimeout %v: ECS kills the task mid-drain", d, stop)
	}
}

func defaultOf(t *testing.T, name string) string {
	t.Helper()
	for _, v := range app.Variables() {
		if v.Name == name {
			return v.Default
		}
	}
	t.Fatalf("%s is not in app.Variables", name)
	return ""
}

// TestTables: every table is on-demand with point-in-time recovery and has
// the schema the store package uses.
func TestTables(t *testing.T) {
	t.Parallel()
	tmpl := loadTemplate(t, templatePath)
	_, c := fanoutTask(t, tmpl)

	tables := 0
	for id, res := range tmpl.Resources {
		if res.Type != "AWS::DynamoDB::Table" {
			continue
		}
		tables++
		var p tableProps
		decode(t, res, &p)
		if got := p.BillingMode; got != "PAY_PER_REQUEST" {
			t.Errorf("%s BillingMode = %q, want PAY_PER_REQUEST", id, got)
		}
		if !p.PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled {
			t.Errorf("%s has no point-in-time recovery", id)
		}
		defined := map[string]bool{}
		for _, a := range p.AttributeDefinitions {
			defined[a.AttributeName] = true
			if a.AttributeType != "S" {
				t.Errorf("%s attribute %s type %s, want S", id, a.AttributeName, a.AttributeType)
			}
		}
		used := map[string]bool{}
		for _, k := range p.KeySchema {
			used[k.AttributeName] = true
		}
		for _, g := range p.GlobalSecondaryIndexes {
			for _, k := range g.KeySchema {
				used[k.AttributeName] = true
			}
		}
		if !maps.Equal(defined, used) {
			t.Errorf("%s defines attributes %v but its keys use %v: CloudFormation wants them equal", id, slices.Sorted(maps.Keys(defined)), slices.Sorted(maps.Keys(used)))
		}
	}
	if tables != len(wantTables) {
		t.Errorf("template has %d tables, want %d (one per table variable)", tables, len(wantTables))
	}

	for name, want := range wantTables {
		id, _ := ref(c.env[name])
		res, ok := tmpl.Resources[id]
		if !ok {
			t.Errorf("%s names no table (see TestTaskEnvironment)", name)
			continue
		}
		var p tableProps
		decode(t, res, &p)
		var indexes []string
		for _, g := range p.GlobalSecondaryIndexes {
			indexes = append(indexes, g.IndexName+"="+keyString(g.KeySchema))
			if g.Projection.ProjectionType != "ALL" {
				t.Errorf("%s index %s projects %s, want ALL", id, g.IndexName, g.Projection.ProjectionType)
			}
		}
		if !slices.Equal(indexes, want.indexes) {
			t.Errorf("%s indexes = %v, want %v", id, indexes, want.indexes)
		}
		var stream string
		if p.StreamSpecification != nil {
			stream = p.StreamSpecification.StreamViewType
		}
		if stream != want.stream {
			t.Errorf("%s stream view = %q, want %q", id, stream, want.stream)
		}
		var ttl string
		if p.TimeToLiveSpecification != nil && p.TimeToLiveSpecification.Enabled {
			ttl = p.TimeToLiveSpecification.AttributeName
		}
		if ttl != want.ttl {
			t.Errorf("%s TTL attribute = %q, want %q", id, ttl, want.ttl)
		}
	}
}

// readOperations reads testdata/operations.txt into IAM actions.
func readOperations(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "operations.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	actions := map[string]bool{}
	var prev string
	s := bufio.NewScanner(f)
	for line := 1; s.Scan(); line++ {
		text := strings.TrimSpace(s.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		if text <= prev {
			t.Errorf("operations.txt:%d: %q after %q: keep the list sorted and without duplicates", line, text, prev)
		}
		prev = text
		i := strings.IndexAny(text, ":.")
		if i < 0 {
			t.Fatalf("operations.txt:%d: %q: want service:Operation", line, text)
		}
		action, err := iamAction(text[:i], text[i+1:])
		if err != nil {
			t.Fatalf("operations.txt:%d: %v", line, err)
		}
		actions[action] = true
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return actions
}

// iamAction returns the IAM action that authorises an SDK operation of an
// SDK service (its package name, or its service ID like "DynamoDB Streams").
func iamAction(service, operation string) (string, error) {
	svc := strings.ToLower(strings.ReplaceAll(service, " ", ""))
	switch svc {
	case "dynamodbstreams":
		// DynamoDB Streams' actions live in the dynamodb: namespace.
		svc = "dynamodb"
	case "dynamodb", "kinesis", "sqs":
	default:
		return "", fmt.Errorf("service %q: want kinesis, dynamodb, dynamodbstreams or sqs", service)
	}
	switch {
	case operation == "":
		return "", fmt.Errorf("service %q: no operation", service)
	case svc == "sqs":
		// SendMessageBatch is authorised by sqs:SendMessage, and likewise
		// DeleteMessageBatch and ChangeMessageVisibilityBatch.
		operation = strings.TrimSuffix(operation, "Batch")
	case svc == "dynamodb" && (operation == "TransactWriteItems" || operation == "TransactGetItems"):
		return "", fmt.Errorf("dynamodb:%s has no IAM action of its own: IAM checks each item's action; list those (dynamodb:PutItem, UpdateItem, DeleteItem, ConditionCheckItem, GetItem) instead", operation)
	}
	return svc + ":" + operation, nil
}

func TestIAMAction(t *testing.T) {
	t.Parallel()
	tests := []struct {
		service, op, want string
		wantErr           bool
	}{
		{service: "kinesis", op: "PutRecords", want: "kinesis:PutRecords"},
		{service: "Kinesis", op: "ListShards", want: "kinesis:ListShards"},
		{service: "dynamodbstreams", op: "GetRecords", want: "dynamodb:GetRecords"},
		{service: "DynamoDB Streams", op: "DescribeStream", want: "dynamodb:DescribeStream"},
		{service: "dynamodb", op: "Query", want: "dynamodb:Query"},
		{service: "dynamodb", op: "BatchWriteItem", want: "dynamodb:BatchWriteItem"},
		{service: "sqs", op: "SendMessageBatch", want: "sqs:SendMessage"},
		{service: "SQS", op: "SendMessage", want: "sqs:SendMessage"},
		{service: "sqs", op: "CreateQueue", want: "sqs:CreateQueue"},
		{service: "dynamodb", op: "TransactWriteItems", wantErr: true},
		{service: "s3", op: "PutObject", wantErr: true},
		{service: "sqs", op: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := iamAction(tt.service, tt.op)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("iamAction(%q, %q) = %q, %v; want %q, error %v", tt.service, tt.op, got, err, tt.want, tt.wantErr)
		}
	}
}

// dynamoStreamActions are the dynamodb: actions that act on a table's
// stream rather than the table.
var dynamoStreamActions = map[string]bool{
	"dynamodb:DescribeStream": true, "dynamodb:GetRecords": true,
	"dynamodb:GetShardIterator": true, "dynamodb:ListStreams": true,
}

// queueARN is the only SQS resource the task may touch: agents' queues.
const queueARN = "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:agents-*.fifo"

// TestTaskRole: the task role grants exactly the actions of the operations
// fanout calls, each only on the resources it acts on; nothing on "*".
func TestTaskRole(t *testing.T) {
	t.Parallel()
	tmpl := loadTemplate(t, templatePath)
	td, _ := fanoutTask(t, tmpl)
	roleID, attr, ok := getAtt(td.TaskRoleArn)
	if !ok || attr != "Arn" || tmpl.Resources[roleID].Type != "AWS::IAM::Role" {
		t.Fatalf("TaskRoleArn = %v, want !GetAtt <an IAM role in the stack>.Arn", td.TaskRoleArn)
	}
	var role roleProps
	decode(t, tmpl.Resources[roleID], &role)
	if len(role.ManagedPolicyArns) > 0 {
		t.Errorf("task role has managed policies %v: managed policies grant more than fanout calls", role.ManagedPolicyArns)
	}

	granted := map[string]bool{}
	tablesCovered := map[string]bool{}
	for _, p := range role.Policies {
		for i, st := range p.PolicyDocument.Statement {
			name := st.Sid
			if name == "" {
				name = "#" + strconv.Itoa(i)
			}
			if st.Effect != "Allow" || st.NotAction != nil || st.NotResource != nil {
				t.Errorf("statement %s: want a plain Allow of Action on Resource", name)
			}
			var actions []string
			for _, a := range list(st.Action) {
				s := fmt.Sprint(a)
				if strings.Contains(s, "*") {
					t.Errorf("statement %s: action %q has a wildcard", name, s)
				}
				granted[s] = true
				actions = append(actions, s)
			}
			for _, r := range list(st.Resource) {
				kind, table := classifyResource(tmpl, r)
				if kind == "table" {
					tablesCovered[table] = true
				}
				for _, a := range actions {
					if want := resourceKindFor(a); kind != want {
						t.Errorf("statement %s: %s on %v (%s), want it only on %s", name, a, r, kind, want)
					}
				}
			}
		}
	}

	want := readOperations(t)
	if !maps.Equal(granted, want) {
		var extra, missing []string
		for a := range granted {
			if !want[a] {
				extra = append(extra, a)
			}
		}
		for a := range want {
			if !granted[a] {
				missing = append(missing, a)
			}
		}
		slices.Sort(extra)
		slices.Sort(missing)
		t.Errorf("task role grants %v not in testdata/operations.txt, and lacks %v from it", extra, missing)
	}
	for id, res := range tmpl.Resources {
		if res.Type == "AWS::DynamoDB::Table" && !tablesCovered[id] {
			t.Errorf("task role grants nothing on table %s: fanout could not use it", id)
		}
	}
}

// resourceKindFor is the kind of resource an action may be granted on.
func resourceKindFor(action string) string {
	switch {
	case strings.HasPrefix(action, "kinesis:"):
		return "stream"
	case dynamoStreamActions[action]:
		return "table stream"
	case strings.HasPrefix(action, "dynamodb:"):
		return "table"
	case strings.HasPrefix(action, "sqs:"):
		return "agent queues"
	}
	return "unknown service"
}

// classifyResource names the kind of a policy resource: the Kinesis stream,
// a table (or its indexes), the SubscriberEvents stream, agents' queues.
// Anything else, "*" included, is "unexpected".
func classifyResource(tmpl template, r any) (kind, table string) {
	if id, attr, ok := getAtt(r); ok {
		switch typ := tmpl.Resources[id].Type; {
		case typ == "AWS::Kinesis::Stream" && attr == "Arn":
			return "stream", ""
		case typ == "AWS::DynamoDB::Table" && attr == "Arn":
			return "table", id
		case typ == "AWS::DynamoDB::Table" && attr == "StreamArn":
			return "table stream", id
		}
	}
	if s, ok := sub(r); ok {
		if s == queueARN {
			return "agent queues", ""
		}
		if m := regexp.MustCompile(`^\$\{(\w+)\.Arn\}/index/\*$`).FindStringSubmatch(s); m != nil &&
			tmpl.Resources[m[1]].Type == "AWS::DynamoDB::Table" {
			return "table", m[1]
		}
	}
	return "unexpected", ""
}

// TestDrainAndHealth: the ALB probes /healthz on the container's port and
// gives a deregistered task no longer than ECS lets it run after SIGTERM.
func TestDrainAndHealth(t *testing.T) {
	t.Parallel()
	tmpl := loadTemplate(t, templatePath)
	_, c := fanoutTask(t, tmpl)
	_, res := only(t, tmpl, "AWS::ElasticLoadBalancingV2::TargetGroup")
	var tg targetGroupProps
	decode(t, res, &tg)
	if tg.HealthCheckPath != "/healthz" {
		t.Errorf("HealthCheckPath = %q, want /healthz", tg.HealthCheckPath)
	}
	if tg.Port != c.port || c.port != 8080 {
		t.Errorf("target group port %d, container port %d: want both 8080 (FANOUT_ADDR's default)", tg.Port, c.port)
	}
	if c.stopTimeout == 0 {
		t.Fatal("container has no StopTimeout: ECS's default 30 s would apply silently")
	}
	delay := -1
	for _, a := range tg.TargetGroupAttributes {
		if a.Key == "deregistration_delay.timeout_seconds" {
			delay, _ = strconv.Atoi(a.Value)
		}
	}
	if delay < 0 {
		t.Fatal("target group does not set deregistration_delay.timeout_seconds (default 300 s)")
	}
	if delay > c.stopTimeout {
		t.Errorf("deregistration delay %d s > StopTimeout %d s", delay, c.stopTimeout)
	}
}

// TestService: rolling deployments keep full capacity and roll back on
// failure; tasks run on ARM64 at the documented size.
func TestService(t *testing.T) {
	t.Parallel()
	tmpl := loadTemplate(t, templatePath)
	td, _ := fanoutTask(t, tmpl)
	if td.RuntimePlatform.CpuArchitecture != "ARM64" || td.RuntimePlatform.OperatingSystemFamily != "LINUX" {
		t.Errorf("RuntimePlatform = %+v, want ARM64/LINUX (the image is built for linux/arm64)", td.RuntimePlatform)
	}
	if td.Cpu != "512" || td.Memory != "1024" {
		t.Errorf("task size cpu %q memory %q, want 512/1024 (deploy/README.md's cost assumes it)", td.Cpu, td.Memory)
	}
	_, res := only(t, tmpl, "AWS::ECS::Service")
	var s serviceProps
	decode(t, res, &s)
	dc := s.DeploymentConfiguration
	if dc.MinimumHealthyPercent != 100 || dc.MaximumPercent != 200 {
		t.Errorf("deployment %d%%/%d%%, want 100/200", dc.MinimumHealthyPercent, dc.MaximumPercent)
	}
	if !dc.DeploymentCircuitBreaker.Enable || !dc.DeploymentCircuitBreaker.Rollback {
		t.Errorf("circuit breaker %+v, want enabled with rollback", dc.DeploymentCircuitBreaker)
	}
	if s.HealthCheckGracePeriodSeconds <= 0 {
		t.Error("no HealthCheckGracePeriodSeconds")
	}
	if p, ok := ref(s.DesiredCount); !ok || p != "DesiredCount" || fmt.Sprint(tmpl.Parameters[p].Default) != "2" {
		t.Errorf("DesiredCount = %v, want !Ref DesiredCount defaulting to 2", s.DesiredCount)
	}
	if len(s.LoadBalancers) != 1 || s.LoadBalancers[0].ContainerPort != 8080 {
		t.Errorf("service load balancers %+v, want the container's port 8080", s.LoadBalancers)
	}
}

// TestLoadBalancerAccess: fanout's API has no authentication, so the load
// balancer is internal unless the operator chooses otherwise, every security
// group admits addresses only from AllowedCidr (on the load balancer's
// ports), and AllowedCidr cannot be /0.
func TestLoadBalancerAccess(t *testing.T) {
	t.Parallel()
	tmpl := loadTemplate(t, templatePath)
	_, res := only(t, tmpl, "AWS::ElasticLoadBalancingV2::LoadBalancer")
	var lb loadBalancerProps
	decode(t, res, &lb)

	name, ok := ref(lb.Scheme)
	scheme := tmpl.Parameters[name]
	if !ok || scheme.Default != "internal" || !slices.Equal(slices.Sorted(slices.Values(scheme.AllowedValues)), []string{"internal", "internet-facing"}) {
		t.Errorf("load balancer Scheme = %v, want !Ref of a parameter allowing internal and internet-facing, default internal (got %+v)", lb.Scheme, scheme)
	}
	if name, ok := ref(lb.Subnets); !ok || name != "LoadBalancerSubnetIds" || tmpl.Parameters[name].Type != "List<AWS::EC2::Subnet::Id>" {
		t.Errorf("load balancer Subnets = %v, want !Ref LoadBalancerSubnetIds, a List<AWS::EC2::Subnet::Id>", lb.Subnets)
	}

	lbGroups := map[string]bool{}
	for _, g := range lb.SecurityGroups {
		id, ok := ref(g)
		if !ok || tmpl.Resources[id].Type != "AWS::EC2::SecurityGroup" {
			t.Errorf("load balancer security group %v, want !Ref of a security group in the stack", g)
		}
		lbGroups[id] = true
	}
	fromCidr := 0
	for id, res := range tmpl.Resources {
		switch res.Type {
		case "AWS::EC2::SecurityGroup":
		case "AWS::EC2::SecurityGroupIngress":
			t.Errorf("%s: keep ingress rules inside their security group, where this test reads them", id)
			continue
		default:
			continue
		}
		var sg securityGroupProps
		decode(t, res, &sg)
		for i, r := range sg.SecurityGroupIngress {
			switch {
			case r.CidrIpv6 != nil || r.SourcePrefixListId != nil:
				t.Errorf("%s ingress #%d admits %v%v: want IPv4 from AllowedCidr only", id, i, r.CidrIpv6, r.SourcePrefixListId)
			case r.CidrIp != nil:
				fromCidr++
				if p, ok := ref(r.CidrIp); !ok || p != "AllowedCidr" {
					t.Errorf("%s ingress #%d from %v, want !Ref AllowedCidr", id, i, r.CidrIp)
				}
				if !lbGroups[id] {
					t.Errorf("%s ingress #%d admits addresses: only the load balancer's group may", id, i)
				}
				if r.IpProtocol != "tcp" || r.FromPort != r.ToPort || (r.FromPort != 80 && r.FromPort != 443) {
					t.Errorf("%s ingress #%d: %s %d-%d, want tcp 80 or 443", id, i, r.IpProtocol, r.FromPort, r.ToPort)
				}
			case r.SourceSecurityGroupId != nil:
				if src, ok := ref(r.SourceSecurityGroupId); !ok || tmpl.Resources[src].Type != "AWS::EC2::SecurityGroup" {
					t.Errorf("%s ingress #%d from %v, want !Ref of a security group in the stack", id, i, r.SourceSecurityGroupId)
				}
			default:
				t.Errorf("%s ingress #%d names no source", id, i)
			}
		}
	}
	if fromCidr == 0 {
		t.Error("no security group admits AllowedCidr: nothing could reach the API")
	}

	cidr := tmpl.Parameters["AllowedCidr"]
	if cidr.AllowedPattern == "" {
		t.Fatal("AllowedCidr has no AllowedPattern: 0.0.0.0/0 would be accepted")
	}
	pattern, err := regexp.Compile(cidr.AllowedPattern)
	if err != nil {
		t.Fatalf("AllowedCidr AllowedPattern: %v", err)
	}
	tests := []struct {
		cidr string
		want bool
	}{
		{cidr: fmt.Sprint(cidr.Default), want: true},
		{cidr: "10.0.0.0/8", want: true},
		{cidr: "172.31.0.0/16", want: true},
		{cidr: "192.168.1.7/32", want: true},
		{cidr: "0.0.0.0/0", want: false},
		{cidr: "10.0.0.0/0", want: false},
		{cidr: "10.0.0.0/33", want: false},
		{cidr: "10.0.0.0", want: false},
		{cidr: "::/0", want: false},
		{cidr: " 10.0.0.0/8", want: false},
	}
	for _, tt := range tests {
		if got := pattern.MatchString(tt.cidr); got != tt.want {
			t.Errorf("AllowedCidr pattern matches %q: %v, want %v", tt.cidr, got, tt.want)
		}
	}
	if cidr.Default != "10.0.0.0/8" {
		t.Errorf("AllowedCidr default %v, want 10.0.0.0/8 (README.md explains it)", cidr.Default)
	}
}

// TestReadmeParameters: README.md's parameters table lists exactly the
// template's parameters, each with its default.
func TestReadmeParameters(t *testing.T) {
	t.Parallel()
	tmpl := loadTemplate(t, templatePath)
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "\n### Parameters\n")
	if !ok {
		t.Fatal("README.md has no ### Parameters section")
	}
	table, _, _ = strings.Cut(table, "\n#") // up to the next heading
	row := regexp.MustCompile("(?m)^\\| `(\\w+)` \\| ([^|]+?) \\|")
	documented := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(table, -1) {
		documented[m[1]] = m[2]
	}
	for name, p := range tmpl.Parameters {
		want := "(required)"
		switch {
		case p.Default == "":
			want = "empty"
		case p.Default != nil:
			want = fmt.Sprint(p.Default)
		}
		got, ok := documented[name]
		if !ok {
			t.Errorf("README.md does not document parameter %s", name)
		} else if got != want {
			t.Errorf("README.md gives parameter %s the default %s, want %s", name, got, want)
		}
		delete(documented, name)
	}
	for name := range documented {
		t.Errorf("README.md documents parameter %s, which the template does not have", name)
	}
}

// TestOutputs: the stack tells where the API is and what it created.
func TestOutputs(t *testing.T) {
	t.Parallel()
	tmpl := loadTemplate(t, templatePath)
	for _, name := range []string{"ServiceUrl", "StreamName", "AgentsTableName", "SubscribersTableName",
		"SubscriberEventsTableName", "DeadLettersTableName", "AggregatorLeaseTableName", "PublisherLeaseTableName"} {
		if _, ok := tmpl.Outputs[name]; !ok {
			t.Errorf("no output %s", name)
		}
	}
}
