package server

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// openAPIDoc is the OpenAPI 3.1 document of the API, served at
// GET /openapi.json. Tests hold the router and every answer to it.
//
//go:embed openapi.json
var openAPIDoc []byte

// OpenAPI returns the API's OpenAPI 3.1 document (JSON).
func OpenAPI() []byte { return slices.Clone(openAPIDoc) }

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(openAPIDoc)
}

// operation is one method of one path of the document, with the statuses
// it documents.
type operation struct {
	method, path string
	statuses     []int
}

// documentedOperations reads the operations out of openAPIDoc, sorted by
// path and method. The document is part of the binary, so failing to read
// it is a build defect.
func documentedOperations() []operation {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		panic(fmt.Sprintf("server: openapi.json: %v", err))
	}
	var ops []operation
	for path, item := range doc.Paths {
		for method, raw := range item {
			m := strings.ToUpper(method)
			switch m {
			case http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete, http.MethodPatch, http.MethodHead, http.MethodOptions:
			default:
				continue // "parameters", "summary" and the like
			}
			var op struct {
				Responses map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				panic(fmt.Sprintf("server: openapi.json: %s %s: %v", m, path, err))
			}
			var statuses []int
			for code := range op.Responses {
				if n, err := strconv.Atoi(code); err == nil {
					statuses = append(statuses, n)
				}
			}
			slices.Sort(statuses)
			ops = append(ops, operation{method: m, path: path, statuses: statuses})
		}
	}
	slices.SortFunc(ops, func(a, b operation) int {
		if c := strings.Compare(a.path, b.path); c != 0 {
			return c
		}
		return strings.Compare(a.method, b.method)
	})
	return ops
}
