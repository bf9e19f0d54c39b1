package filter

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Match reports whether an event of eventType with data passes p: every
// key meets one of its conditions. data that is not a JSON object has no
// fields, so only "exists": false matches a field of it.
func (p *Policy) Match(eventType string, data json.RawMessage) bool {
	var doc any
	parsed := false
	for _, k := range p.keys {
		var vals []any
		present := true
		if k.parts == nil {
			vals = []any{eventType}
		} else {
			if !parsed {
				d := json.NewDecoder(bytes.NewReader(data))
				d.UseNumber()
				if d.Decode(&doc) != nil {
					doc = nil
				}
				parsed = true
			}
			vals, present = lookup(doc, k.parts)
		}
		if !k.matches(vals, present) {
			return false
		}
	}
	return true
}

// lookup returns the values at parts below v: the value itself, or an
// array's elements; present is false when the field is missing.
func lookup(v any, parts []string) (vals []any, present bool) {
	for _, p := range parts {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = obj[p]; !ok {
			return nil, false
		}
	}
	if arr, ok := v.([]any); ok {
		return arr, true
	}
	return []any{v}, true
}

// matches reports whether one of k's conditions holds for the field.
func (k key) matches(vals []any, present bool) bool {
	for _, c := range k.conds {
		if c.kind == "exists" {
			if c.exists == present {
				return true
			}
			continue
		}
		for _, v := range vals {
			if c.matches(v) {
				return true
			}
		}
	}
	return false
}

// matches reports whether c holds for one value.
func (c condition) matches(v any) bool {
	s, isStr := v.(string)
	n, isNum := v.(json.Number)
	var f float64
	if isNum {
		var err error
		if f, err = n.Float64(); err != nil {
			isNum = false
		}
	}
	switch c.kind {
	case "exact":
		if c.str != nil {
			return isStr && s == *c.str
		}
		return isNum && f == *c.num
	case "prefix":
		return isStr && strings.HasPrefix(s, c.prefix)
	case "anything-but":
		switch {
		case c.notPrefix != nil:
			return isStr && !strings.HasPrefix(s, *c.notPrefix)
		case isStr:
			for _, x := range c.notStrs {
				if s == x {
					return false
				}
			}
			return true
		case isNum:
			for _, x := range c.notNums {
				if f == x {
					return false
				}
			}
			return true
		}
		return false // null, booleans and objects are neither
	case "numeric":
		if !isNum {
			return false
		}
		if c.hasLo && (f < c.lo || (f == c.lo && !c.loIncl)) {
			return false
		}
		if c.hasHi && (f > c.hi || (f == c.hi && !c.hiIncl)) {
			return false
		}
		return true
	}
	return false
}
