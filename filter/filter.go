// Package filter is fanout's subscription filter language: a policy in the
// shape of an SNS filter policy, matched against an event's eventType and
// the fields of its data. Parse validates a policy and says what is wrong
// with it; a *Policy matches events and is safe for concurrent use.
//
// A policy is a JSON object. Its keys are "eventType" and fields of data,
// written either nested ({"data": {"order": {"total": [...]}}}) or dotted
// ({"data.order.total": [...]}). Each key holds an array of conditions, any
// of which may match (OR); every key must match (AND). A condition is an
// exact string or number, or an object with one operator: "prefix",
// "anything-but" (a value, an array of values, or {"prefix": ...}),
// "numeric" (up to two comparisons, e.g. [">=", 0, "<", 100]) or "exists"
// (true or false). When a data field holds an array, a condition matches
// when it matches any element.
package filter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
)

// SNS's limits on a filter policy, kept so a policy written for SNS fits
// here and one written here fits SNS.
const (
	// MaxKeys is how many keys (fields) one policy may name.
	MaxKeys = 5
	// MaxConditions bounds the conditions of all keys together (SNS's
	// 150 combinations).
	MaxConditions = 150
	// MaxBytes bounds the policy's JSON (SNS's 256 KB is for all
	// attributes of a subscription; a filter needs far less).
	MaxBytes = 16 << 10
)

// ErrInvalid is what every error of Parse wraps.
var ErrInvalid = errors.New("invalid filter")

// Policy is a parsed filter. The zero value is not useful; use Parse.
type Policy struct {
	keys []key
	raw  json.RawMessage // canonical JSON (compacted)
}

// key is one field and the conditions one of which it must meet.
type key struct {
	path  string   // "eventType" or "data.a.b"
	parts []string // path below data; nil for eventType
	conds []condition
}

// condition is one entry of a key's array.
type condition struct {
	kind   string // "exact", "prefix", "anything-but", "numeric", "exists"
	str    *string
	num    *float64
	prefix string
	// anything-but: none of these strings or numbers, or no such prefix.
	notStrs   []string
	notNums   []float64
	notPrefix *string
	// numeric: lower and upper bounds, each optional.
	lo, hi         float64
	loIncl, hiIncl bool
	hasLo, hasHi   bool
	exists         bool
}

// Parse validates raw and returns its policy. The error wraps ErrInvalid
// and names the key and condition at fault, and what to write instead.
func Parse(raw []byte) (*Policy, error) {
	if len(raw) > MaxBytes {
		return nil, invalid("filter is %d bytes; at most %d", len(raw), MaxBytes)
	}
	var top map[string]json.RawMessage
	if err := decodeNumbers(raw, &top); err != nil || top == nil {
		return nil, invalid(`filter must be a JSON object of keys, e.g. {"eventType": ["order.created"]}`)
	}
	p := &Policy{}
	for name, v := range top {
		switch {
		case name == "eventType":
			if err := p.addKey(name, nil, v); err != nil {
				return nil, err
			}
		case name == "data":
			if err := p.addNested("data", nil, v); err != nil {
				return nil, err
			}
		case strings.HasPrefix(name, "data."):
			parts := strings.Split(strings.TrimPrefix(name, "data."), ".")
			if slices.Contains(parts, "") {
				return nil, invalid("filter key %q has an empty field name; write data.<field>.<field>", name)
			}
			if err := p.addKey(name, parts, v); err != nil {
				return nil, err
			}
		default:
			return nil, invalid("filter key %q: only eventType and data fields (data.<path>, or nested under data) can be filtered", name)
		}
	}
	if len(p.keys) == 0 {
		return nil, invalid("filter has no keys; leave the filter out to receive every event")
	}
	if len(p.keys) > MaxKeys {
		return nil, invalid("filter has %d keys; at most %d", len(p.keys), MaxKeys)
	}
	n := 0
	for _, k := range p.keys {
		n += len(k.conds)
	}
	if n > MaxConditions {
		return nil, invalid("filter has %d conditions; at most %d", n, MaxConditions)
	}
	sort.Slice(p.keys, func(i, j int) bool { return p.keys[i].path < p.keys[j].path })
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, invalid("filter is not valid JSON: %v", err)
	}
	p.raw = buf.Bytes()
	return p, nil
}

// JSON is the policy as given, compacted.
func (p *Policy) JSON() json.RawMessage { return p.raw }

// addNested adds the keys of an object nested under path (data or deeper).
func (p *Policy) addNested(path string, parts []string, v json.RawMessage) error {
	var obj map[string]json.RawMessage
	if err := decodeNumbers(v, &obj); err != nil || obj == nil {
		if bytes.HasPrefix(bytes.TrimSpace(v), []byte("[")) && parts != nil {
			return p.addKey(path, parts, v)
		}
		return invalid("filter key %q must be an object of data fields or an array of conditions", path)
	}
	if len(obj) == 0 {
		return invalid("filter key %q is an empty object; name a field under it", path)
	}
	for name, sub := range obj {
		if name == "" || strings.Contains(name, ".") {
			return invalid("filter key %q: field %q must be a non-empty name without dots when nested", path, name)
		}
		if err := p.addNested(path+"."+name, append(slices.Clone(parts), name), sub); err != nil {
			return err
		}
	}
	return nil
}

// addKey parses the conditions of one key.
func (p *Policy) addKey(path string, parts []string, v json.RawMessage) error {
	for _, k := range p.keys {
		if k.path == path {
			return invalid("filter key %q is given twice (nested and dotted); give it once", path)
		}
	}
	var items []json.RawMessage
	if err := decodeNumbers(v, &items); err != nil || items == nil {
		return invalid("filter key %q must be an array of conditions, e.g. [\"a\", {\"prefix\": \"b\"}]", path)
	}
	if len(items) == 0 {
		return invalid("filter key %q has no conditions; give at least one", path)
	}
	k := key{path: path, parts: parts}
	for i, it := range items {
		c, err := parseCondition(it)
		if err != nil {
			return fmt.Errorf("%w: filter key %q condition %d: %s", ErrInvalid, path, i, err.Error())
		}
		if parts == nil && (c.kind == "numeric" || c.num != nil || len(c.notNums) > 0) {
			return invalid("filter key %q condition %d: eventType is a string; numbers never match it", path, i)
		}
		k.conds = append(k.conds, c)
	}
	p.keys = append(p.keys, k)
	return nil
}

// parseCondition parses one condition; its error is the words after the
// key and index.
func parseCondition(raw json.RawMessage) (condition, error) {
	var v any
	if err := decodeNumbers(raw, &v); err != nil {
		return condition{}, errors.New("is not JSON")
	}
	switch x := v.(type) {
	case string:
		return condition{kind: "exact", str: &x}, nil
	case json.Number:
		f, err := number(x)
		if err != nil {
			return condition{}, err
		}
		return condition{kind: "exact", num: &f}, nil
	case map[string]any:
		if len(x) != 1 {
			return condition{}, errors.New(`an operator object holds exactly one of "prefix", "anything-but", "numeric", "exists"`)
		}
		for op, arg := range x {
			return parseOperator(op, arg)
		}
	}
	return condition{}, fmt.Errorf("%s is not a condition; use a string, a number or an operator object such as {\"prefix\": \"a\"}", raw)
}

// parseOperator parses {op: arg}.
func parseOperator(op string, arg any) (condition, error) {
	switch op {
	case "prefix":
		s, ok := arg.(string)
		if !ok || s == "" {
			return condition{}, errors.New(`"prefix" takes a non-empty string`)
		}
		return condition{kind: "prefix", prefix: s}, nil
	case "exists":
		b, ok := arg.(bool)
		if !ok {
			return condition{}, errors.New(`"exists" takes true or false`)
		}
		return condition{kind: "exists", exists: b}, nil
	case "anything-but":
		c := condition{kind: "anything-but"}
		add := func(v any) error {
			switch y := v.(type) {
			case string:
				c.notStrs = append(c.notStrs, y)
			case json.Number:
				f, err := number(y)
				if err != nil {
					return err
				}
				c.notNums = append(c.notNums, f)
			default:
				return errors.New(`"anything-but" takes a string, a number, an array of them, or {"prefix": "..."}`)
			}
			return nil
		}
		switch y := arg.(type) {
		case []any:
			if len(y) == 0 {
				return condition{}, errors.New(`"anything-but" needs at least one value`)
			}
			for _, e := range y {
				if err := add(e); err != nil {
					return condition{}, err
				}
			}
		case map[string]any:
			s, ok := y["prefix"].(string)
			if len(y) != 1 || !ok || s == "" {
				return condition{}, errors.New(`"anything-but" takes {"prefix": "<non-empty string>"} as its only object form`)
			}
			c.notPrefix = &s
		default:
			if err := add(y); err != nil {
				return condition{}, err
			}
		}
		return c, nil
	case "numeric":
		return parseNumeric(arg)
	}
	return condition{}, fmt.Errorf("unknown operator %q; use prefix, anything-but, numeric or exists", op)
}

// parseNumeric parses the comparisons of a "numeric" operator: one, or a
// lower and an upper bound.
func parseNumeric(arg any) (condition, error) {
	list, ok := arg.([]any)
	if !ok || (len(list) != 2 && len(list) != 4) {
		return condition{}, errors.New(`"numeric" takes one or two comparisons, e.g. [">", 0] or [">=", 0, "<", 10]`)
	}
	c := condition{kind: "numeric"}
	for i := 0; i < len(list); i += 2 {
		op, ok := list[i].(string)
		n, isNum := list[i+1].(json.Number)
		if !ok || !isNum {
			return condition{}, errors.New(`"numeric" comparisons are an operator string and a number, e.g. ">", 0`)
		}
		f, err := number(n)
		if err != nil {
			return condition{}, err
		}
		switch op {
		case "=":
			if len(list) != 2 {
				return condition{}, errors.New(`"numeric" "=" stands alone: ["=", 5]`)
			}
			c.lo, c.hi, c.loIncl, c.hiIncl, c.hasLo, c.hasHi = f, f, true, true, true, true
		case ">", ">=":
			if c.hasLo {
				return condition{}, errors.New(`"numeric" has two lower bounds; give one lower (">" or ">=") and one upper ("<" or "<=")`)
			}
			c.lo, c.loIncl, c.hasLo = f, op == ">=", true
		case "<", "<=":
			if c.hasHi {
				return condition{}, errors.New(`"numeric" has two upper bounds; give one lower (">" or ">=") and one upper ("<" or "<=")`)
			}
			c.hi, c.hiIncl, c.hasHi = f, op == "<=", true
		default:
			return condition{}, fmt.Errorf(`"numeric" operator %q is not one of =, <, <=, >, >=`, op)
		}
	}
	if c.hasLo && c.hasHi && (c.lo > c.hi || (c.lo == c.hi && !(c.loIncl && c.hiIncl))) {
		return condition{}, errors.New(`"numeric" range is empty: its lower bound is above its upper bound`)
	}
	return c, nil
}

// number converts a JSON number, refusing what a float64 cannot hold.
func number(n json.Number) (float64, error) {
	f, err := n.Float64()
	if err != nil || math.IsInf(f, 0) {
		return 0, fmt.Errorf("number %s is out of range", n)
	}
	return f, nil
}

// decodeNumbers decodes JSON keeping numbers as json.Number.
func decodeNumbers(raw []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("data after the JSON value")
	}
	return nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
