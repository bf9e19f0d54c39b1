package deploy

import (
	"fmt"
	"slices"
	"testing"
)

// TestTaskAuthenticates: the task runs FANOUT_AUTH=iam, with its audience
// and admins from parameters (no admins, audience fanout by default).
func TestTaskAuthenticates(t *testing.T) {
	t.Parallel()
	tmpl := loadTemplate(t, templatePath)
	_, c := fanoutTask(t, tmpl)
	if got := fmt.Sprint(c.env["FANOUT_AUTH"]); got != "iam" {
		t.Errorf("task FANOUT_AUTH = %s, want iam", got)
	}
	for env, param := range map[string]string{"FANOUT_AUDIENCE": "Audience", "FANOUT_ADMINS": "Admins"} {
		if p, ok := ref(c.env[env]); !ok || p != param {
			t.Errorf("task %s = %v, want !Ref %s", env, c.env[env], param)
		}
	}
	if d := tmpl.Parameters["Admins"].Default; d != "" {
		t.Errorf("Admins default %v, want empty: no admins unless named", d)
	}
	if d := tmpl.Parameters["Audience"].Default; d != "fanout" {
		t.Errorf("Audience default %v, want fanout (the client's default)", d)
	}
}

// TestDirectProducers: only the roles in DirectProducerRoleArns (none by
// default) may put straight into the stream, and they may only put.
func TestDirectProducers(t *testing.T) {
	t.Parallel()
	tmpl := loadTemplate(t, templatePath)
	p := tmpl.Parameters["DirectProducerRoleArns"]
	if p.Type != "CommaDelimitedList" || p.Default != "" {
		t.Errorf("DirectProducerRoleArns = %+v, want a CommaDelimitedList, empty by default", p)
	}
	id, res := only(t, tmpl, "AWS::Kinesis::ResourcePolicy")
	if res.Condition != "HasDirectProducers" || tmpl.Conditions["HasDirectProducers"] == nil {
		t.Errorf("%s has condition %q, want HasDirectProducers (no policy without roles)", id, res.Condition)
	}
	var props struct {
		ResourcePolicy struct {
			Statement []struct {
				Effect    string `yaml:"Effect"`
				Principal struct {
					AWS any `yaml:"AWS"`
				} `yaml:"Principal"`
				Action []string `yaml:"Action"`
			} `yaml:"Statement"`
		} `yaml:"ResourcePolicy"`
	}
	decode(t, res, &props)
	if len(props.ResourcePolicy.Statement) != 1 {
		t.Fatalf("%s: %d statements, want 1", id, len(props.ResourcePolicy.Statement))
	}
	st := props.ResourcePolicy.Statement[0]
	if name, ok := ref(st.Principal.AWS); st.Effect != "Allow" || !ok || name != "DirectProducerRoleArns" {
		t.Errorf("%s allows %v (%s), want !Ref DirectProducerRoleArns", id, st.Principal.AWS, st.Effect)
	}
	want := []string{"kinesis:DescribeStreamSummary", "kinesis:ListShards", "kinesis:PutRecord", "kinesis:PutRecords"}
	if got := slices.Sorted(slices.Values(st.Action)); !slices.Equal(got, want) {
		t.Errorf("%s actions %v, want %v: direct producers put, they never read", id, got, want)
	}
}
