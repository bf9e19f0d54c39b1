package filter

import (
	"errors"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	t.Parallel()
	type ev struct {
		typ, data string
		want      bool
	}
	tests := []struct {
		name   string
		policy string
		events []ev
	}{
		{"exact string, OR within a key", `{"eventType": ["a", "b"]}`, []ev{
			{"a", `{}`, true}, {"b", `{}`, true}, {"c", `{}`, false}, {"A", `{}`, false},
		}},
		{"exact number, numeric equality", `{"data.n": [5]}`, []ev{
			{"x", `{"n": 5}`, true}, {"x", `{"n": 5.0}`, true}, {"x", `{"n": "5"}`, false}, {"x", `{"n": 6}`, false}, {"x", `{}`, false},
		}},
		{"prefix", `{"eventType": [{"prefix": "order."}]}`, []ev{
			{"order.created", `{}`, true}, {"order.", `{}`, true}, {"orders", `{}`, false},
		}},
		{"anything-but one string", `{"data.region": [{"anything-but": "eu"}]}`, []ev{
			{"x", `{"region": "us"}`, true}, {"x", `{"region": "eu"}`, false}, {"x", `{}`, false},
		}},
		{"anything-but list", `{"data.n": [{"anything-but": [1, 2]}]}`, []ev{
			{"x", `{"n": 3}`, true}, {"x", `{"n": 2}`, false}, {"x", `{"n": 1.0}`, false},
		}},
		{"anything-but prefix", `{"eventType": [{"anything-but": {"prefix": "test."}}]}`, []ev{
			{"prod.x", `{}`, true}, {"test.x", `{}`, false},
		}},
		{"numeric range", `{"data.total": [{"numeric": [">=", 10, "<", 20]}]}`, []ev{
			{"x", `{"total": 10}`, true}, {"x", `{"total": 19.9}`, true}, {"x", `{"total": 20}`, false}, {"x", `{"total": 9}`, false}, {"x", `{"total": "15"}`, false},
		}},
		{"numeric one side", `{"data.total": [{"numeric": [">", 0]}]}`, []ev{
			{"x", `{"total": 0.1}`, true}, {"x", `{"total": 0}`, false},
		}},
		{"numeric equals", `{"data.total": [{"numeric": ["=", 3e2]}]}`, []ev{
			{"x", `{"total": 300}`, true}, {"x", `{"total": 301}`, false},
		}},
		{"exists true", `{"data.a.b": [{"exists": true}]}`, []ev{
			{"x", `{"a": {"b": null}}`, true}, {"x", `{"a": {}}`, false}, {"x", `{"a": 1}`, false}, {"x", `[1]`, false},
		}},
		{"exists false", `{"data.a": [{"exists": false}]}`, []ev{
			{"x", `{"b": 1}`, true}, {"x", `{"a": 1}`, false}, {"x", `7`, true},
		}},
		{"nested form equals dotted", `{"data": {"a": {"b": ["x"]}}}`, []ev{
			{"t", `{"a": {"b": "x"}}`, true}, {"t", `{"a": {"b": "y"}}`, false},
		}},
		{"AND across keys", `{"eventType": ["order"], "data.total": [{"numeric": [">", 100]}]}`, []ev{
			{"order", `{"total": 101}`, true}, {"order", `{"total": 100}`, false}, {"refund", `{"total": 101}`, false},
		}},
		{"array field matches any element", `{"data.tags": ["red"]}`, []ev{
			{"x", `{"tags": ["blue", "red"]}`, true}, {"x", `{"tags": ["blue"]}`, false},
		}},
		{"OR of mixed conditions", `{"data.v": ["a", {"prefix": "zz"}, {"numeric": ["<", 0]}, {"exists": false}]}`, []ev{
			{"x", `{"v": "a"}`, true}, {"x", `{"v": "zzz"}`, true}, {"x", `{"v": -1}`, true}, {"x", `{}`, true}, {"x", `{"v": "b"}`, false},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := Parse([]byte(tc.policy))
			if err != nil {
				t.Fatalf("Parse(%s): %v", tc.policy, err)
			}
			for _, e := range tc.events {
				if got := p.Match(e.typ, []byte(e.data)); got != e.want {
					t.Errorf("%s: Match(%q, %s) = %v, want %v", tc.policy, e.typ, e.data, got, e.want)
				}
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	tests := []struct{ policy, says string }{
		{`[]`, "JSON object"},
		{`"x"`, "JSON object"},
		{`{}`, "no keys"},
		{`{"source": ["a"]}`, `"source"`},
		{`{"eventType": "a"}`, "array of conditions"},
		{`{"eventType": []}`, "no conditions"},
		{`{"eventType": [true]}`, "condition 0"},
		{`{"eventType": [5]}`, "eventType is a string"},
		{`{"eventType": ["a", {"prefix": ""}]}`, `condition 1: "prefix" takes a non-empty string`},
		{`{"data.a": [{"prefix": 1}]}`, `"prefix"`},
		{`{"data.a": [{"nope": 1}]}`, `unknown operator "nope"`},
		{`{"data.a": [{"prefix": "a", "exists": true}]}`, "exactly one"},
		{`{"data.a": [{"exists": "yes"}]}`, `"exists" takes true or false`},
		{`{"data.a": [{"anything-but": []}]}`, "at least one"},
		{`{"data.a": [{"anything-but": [true]}]}`, `"anything-but" takes`},
		{`{"data.a": [{"anything-but": {"suffix": "x"}}]}`, `{"prefix"`},
		{`{"data.a": [{"numeric": [">"]}]}`, "one or two comparisons"},
		{`{"data.a": [{"numeric": ["~", 1]}]}`, `"~"`},
		{`{"data.a": [{"numeric": [">", "1"]}]}`, "operator string and a number"},
		{`{"data.a": [{"numeric": [">", 1, ">", 2]}]}`, "two lower bounds"},
		{`{"data.a": [{"numeric": ["<", 1, "<=", 2]}]}`, "two upper bounds"},
		{`{"data.a": [{"numeric": [">", 5, "<", 1]}]}`, "range is empty"},
		{`{"data.a": [{"numeric": ["=", 1, "<", 2]}]}`, "stands alone"},
		{`{"data.a": [1e999]}`, "out of range"},
		{`{"data..a": ["x"]}`, "empty field name"},
		{`{"data": ["x"]}`, "object of data fields"},
		{`{"data": {}}`, "empty object"},
		{`{"data": {"a.b": ["x"]}}`, "without dots"},
		{`{"data": {"a": ["x"]}, "data.a": ["y"]}`, "given twice"},
		{`{"eventType": ["a"], "data.a": ["a"], "data.b": ["a"], "data.c": ["a"], "data.d": ["a"], "data.e": ["a"]}`, "at most 5"},
		{`{"eventType": [` + strings.Repeat(`"a",`, 150) + `"a"]}`, "at most 150"},
		{`{"eventType": ["a"]} x`, "JSON object"},
	}
	for _, tc := range tests {
		_, err := Parse([]byte(tc.policy))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("Parse(%s) = %v, want ErrInvalid saying %q", tc.policy, err, tc.says)
		}
	}
}

func TestJSONIsCompact(t *testing.T) {
	t.Parallel()
	p, err := Parse([]byte("{ \"eventType\" : [ \"a\" ] }"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(p.JSON()), `{"eventType":["a"]}`; got != want {
		t.Errorf("JSON() = %s, want %s", got, want)
	}
}
