package deploy

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// This file reads CloudFormation YAML into typed values. Short-form
// intrinsics (!Ref X, !Sub s, !GetAtt A.B, !If [...]) become their long
// form ({"Ref": X}, {"Fn::Sub": s}, {"Fn::GetAtt": [A, B]}, ...) before
// decoding, so a property holding one decodes into `any` as a map.

// template is the part of a CloudFormation template the tests read.
type template struct {
	Parameters map[string]parameter `yaml:"Parameters"`
	Conditions map[string]any       `yaml:"Conditions"`
	Resources  map[string]resource  `yaml:"Resources"`
	Outputs    map[string]struct {
		Value any `yaml:"Value"`
	} `yaml:"Outputs"`
}

// parameter is a template parameter. Default is nil when there is none.
type parameter struct {
	Type           string   `yaml:"Type"`
	Default        any      `yaml:"Default"`
	AllowedValues  []string `yaml:"AllowedValues"`
	AllowedPattern string   `yaml:"AllowedPattern"`
}

// resource keeps Properties as a node: each test decodes the properties of
// the type it checks into its own struct.
type resource struct {
	Type       string    `yaml:"Type"`
	Condition  string    `yaml:"Condition"`
	Properties yaml.Node `yaml:"Properties"`
}

// loadTemplate parses the CloudFormation template at path.
func loadTemplate(t *testing.T, path string) template {
	t.Helper()
	var doc yaml.Node
	readYAML(t, path, &doc)
	if err := longFormIntrinsics(&doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var tmpl template
	if err := doc.Decode(&tmpl); err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	if len(tmpl.Resources) == 0 {
		t.Fatalf("%s has no Resources", path)
	}
	return tmpl
}

// readYAML parses the YAML file at path into v.
func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
}

// longFormIntrinsics rewrites every node tagged with a CloudFormation short
// form (any local tag: !Ref, !Sub, !GetAtt, !If, ...) into the equivalent
// one-key mapping, in place.
func longFormIntrinsics(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode {
		return fmt.Errorf("line %d: YAML aliases are not supported by CloudFormation", n.Line)
	}
	for _, c := range n.Content {
		if err := longFormIntrinsics(c); err != nil {
			return err
		}
	}
	if !strings.HasPrefix(n.Tag, "!") || strings.HasPrefix(n.Tag, "!!") {
		return nil
	}
	fn := strings.TrimPrefix(n.Tag, "!")
	key := "Fn::" + fn
	if fn == "Ref" || fn == "Condition" {
		key = fn
	}
	arg := *n
	arg.Tag = "" // resolved from the value, as if untagged
	if fn == "GetAtt" && arg.Kind == yaml.ScalarNode {
		res, attr, ok := strings.Cut(arg.Value, ".")
		if !ok {
			return fmt.Errorf("line %d: !GetAtt %q: want Resource.Attribute", n.Line, arg.Value)
		}
		arg = yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{
			{Kind: yaml.ScalarNode, Value: res}, {Kind: yaml.ScalarNode, Value: attr},
		}}
	}
	*n = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column, Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, &arg,
	}}
	return nil
}

// ref returns X when v is {"Ref": X}.
func ref(v any) (string, bool) {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return "", false
	}
	s, ok := m["Ref"].(string)
	return s, ok
}

// getAtt returns resource and attribute when v is {"Fn::GetAtt": [R, A]}.
func getAtt(v any) (res, attr string, ok bool) {
	m, isMap := v.(map[string]any)
	if !isMap || len(m) != 1 {
		return "", "", false
	}
	args, isList := m["Fn::GetAtt"].([]any)
	if !isList || len(args) != 2 {
		return "", "", false
	}
	res, ok1 := args[0].(string)
	attr, ok2 := args[1].(string)
	return res, attr, ok1 && ok2
}

// sub returns the template string when v is {"Fn::Sub": s}.
func sub(v any) (string, bool) {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return "", false
	}
	s, ok := m["Fn::Sub"].(string)
	return s, ok
}

// list returns v's elements when it is a list, or v alone.
func list(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	return []any{v}
}

func TestLongFormIntrinsics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want string
	}{
		{in: `!Ref Bucket`, want: `map[Ref:Bucket]`},
		{in: `!Ref AWS::Region`, want: `map[Ref:AWS::Region]`},
		{in: `!Sub ${A.Arn}/index/*`, want: `map[Fn::Sub:${A.Arn}/index/*]`},
		{in: `!GetAtt Table.StreamArn`, want: `map[Fn::GetAtt:[Table StreamArn]]`},
		{in: `!GetAtt [Table, Arn]`, want: `map[Fn::GetAtt:[Table Arn]]`},
		{in: `!If [C, !Ref A, !Ref AWS::NoValue]`, want: `map[Fn::If:[C map[Ref:A] map[Ref:AWS::NoValue]]]`},
		{in: `!Not [!Equals [!Ref P, ""]]`, want: `map[Fn::Not:[map[Fn::Equals:[map[Ref:P] ]]]]`},
		{in: `!Condition HasX`, want: `map[Condition:HasX]`},
		{in: `{a: !Select [0, !GetAZs ""]}`, want: `map[a:map[Fn::Select:[0 map[Fn::GetAZs:]]]]`},
		{in: `"25"`, want: `25`},
		{in: `!!str 25`, want: `25`},
	}
	for _, tt := range tests {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(tt.in), &doc); err != nil {
			t.Fatalf("parse %q: %v", tt.in, err)
		}
		if err := longFormIntrinsics(&doc); err != nil {
			t.Fatalf("longFormIntrinsics(%q): %v", tt.in, err)
		}
		var got any
		if err := doc.Decode(&got); err != nil {
			t.Fatalf("decode %q: %v", tt.in, err)
		}
		if s := fmt.Sprint(got); s != tt.want {
			t.Errorf("%s decodes to %s, want %s", tt.in, s, tt.want)
		}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(`!GetAtt NoAttribute`), &doc); err != nil {
		t.Fatal(err)
	}
	if err := longFormIntrinsics(&doc); err == nil {
		t.Error("!GetAtt without an attribute: want an error")
	}
}
