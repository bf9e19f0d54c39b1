// Package openapitest holds the API's answers to its OpenAPI document: tests
// of server and the end-to-end tests check every answer they get with it,
// so an answer (a status, a body, a header) the document does not describe
// fails them. Only tests import it.
package openapitest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// Checker checks answers against one document. Safe for concurrent use.
type Checker struct {
	router routers.Router
}

// New loads and validates an OpenAPI document (3.1 included: kin-openapi
// validates a 3.1 document's schemas as JSON Schema 2020-12).
func New(doc []byte) (*Checker, error) {
	loader := openapi3.NewLoader()
	t, err := loader.LoadFromData(doc)
	if err != nil {
		return nil, fmt.Errorf("load OpenAPI document: %w", err)
	}
	if err := t.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("invalid OpenAPI document: %w", err)
	}
	r, err := legacy.NewRouter(t)
	if err != nil {
		return nil, fmt.Errorf("route OpenAPI document: %w", err)
	}
	return &Checker{router: r}, nil
}

// Check returns nil when the document describes the answer (status,
// headers, body) to req: the operation lists the status and the body
// matches its schema. An operation the document lacks must be answered
// 404 or 405 with an {"error": ...} body: the router's own answers.
func (c *Checker) Check(req *http.Request, status int, header http.Header, body []byte) error {
	route, params, err := c.router.FindRoute(req)
	if re, ok := errors.AsType[*routers.RouteError](err); ok {
		// No operation: the router's own 404 or 405 (kin-openapi's router
		// cannot always tell an unknown method from an unknown path).
		return checkRouterAnswer(status, header, body, re)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
		},
		Status:  status,
		Header:  header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		return fmt.Errorf("%s %s answered %d, which the OpenAPI document does not describe: %w (body %.300s)", req.Method, req.URL.Path, status, err, body)
	}
	return nil
}

func checkRouterAnswer(status int, header http.Header, body []byte, why error) error {
	if status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
		return fmt.Errorf("answered %d for an operation the OpenAPI document lacks (%v), want 404 or 405", status, why)
	}
	if ct := header.Get("Content-Type"); ct != "application/json" || !bytes.Contains(body, []byte(`"error"`)) {
		return fmt.Errorf("answered %d with %q %s, want an {\"error\": ...} JSON body", status, ct, body)
	}
	return nil
}

// Transport wraps next (http.DefaultTransport when nil) so that every
// answer is checked: an answer the document does not describe makes the
// round trip fail with the reason. The body is read whole and handed on.
func (c *Checker) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return roundTripper{c: c, next: next}
}

type roundTripper struct {
	c    *Checker
	next http.RoundTripper
}

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rt.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read answer of %s %s: %w", req.Method, req.URL.Path, err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err := rt.c.Check(req, resp.StatusCode, resp.Header, body); err != nil {
		return nil, fmt.Errorf("OpenAPI check: %w", err)
	}
	return resp, nil
}
