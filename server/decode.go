package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// readBody checks the Content-Type of r and reads its body, at most limit
// bytes. A missing Content-Type is accepted as JSON (curl and many scripts
// omit it); a different one is a 415. A longer body is a 413.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, &apiError{status: http.StatusUnsupportedMediaType,
				msg: fmt.Sprintf("Content-Type %q is not supported; send application/json", ct)}
		}
		if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
			return nil, &apiError{status: http.StatusUnsupportedMediaType,
				msg: fmt.Sprintf("charset %q is not supported; send UTF-8 JSON", cs)}
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return nil, &apiError{status: http.StatusRequestEntityTooLarge,
			msg: fmt.Sprintf("request body is larger than %d bytes", mbe.Limit)}
	}
	if err != nil {
		// The client stopped sending (hung up, or too slow for the
		// server's read timeout): its request, not a server failure.
		return nil, badRequest("could not read the whole request body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, badRequest(emptyBodyMsg)
	}
	return body, nil
}

// emptyBodyMsg is readBody's answer to a body of nothing but white space.
const emptyBodyMsg = "request body is empty; send a JSON object"

// decodeStrict decodes data, one JSON value and nothing after it, into v,
// refusing fields v does not have. Errors are 400s saying what is wrong
// and where.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("%s", describeJSONError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("unexpected data after the JSON value at byte %d; send exactly one JSON value", dec.InputOffset())
	}
	return nil
}

// describeJSONError turns an encoding/json error into words for the caller.
func describeJSONError(err error) string {
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return fmt.Sprintf("malformed JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		if te.Field == "" {
			return fmt.Sprintf("must be a JSON %s, got %s", jsonKind(te.Type.Kind().String()), te.Value)
		}
		return fmt.Sprintf("%s must be a JSON %s, got %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "malformed JSON: the body ends before the value does"
	}
	if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fmt.Sprintf("unknown field %s; remove it", msg)
	}
	return "malformed JSON: " + strings.TrimPrefix(err.Error(), "json: ")
}

// jsonKind names a Go kind the way a JSON author would.
func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "struct", "map":
		return "object"
	case "slice", "array":
		return "array"
	case "bool":
		return "boolean"
	default:
		return "number"
	}
}
