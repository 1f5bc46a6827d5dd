package apiserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// apiError is an error with the HTTP answer it maps to.
type apiError struct {
	status  int
	code    string
	msg     string
	field   string
	details []api.FieldDetail
	// leader is the Skiff-Leader header of a not_leader answer.
	leader string
}

func (e *apiError) Error() string { return e.msg }

func invalid(field, format string, args ...any) *apiError {
	msg := fmt.Sprintf(format, args...)
	return &apiError{status: http.StatusBadRequest, code: api.CodeInvalid, msg: msg, field: field,
		details: []api.FieldDetail{{Field: field, Message: msg}}}
}

func conflict(format string, args ...any) *apiError {
	return &apiError{status: http.StatusConflict, code: api.CodeConflict, msg: fmt.Sprintf(format, args...)}
}

// invalidFields is a 400 listing every field error.
func invalidFields(details []api.FieldDetail) *apiError {
	msgs := make([]string, len(details))
	for i, d := range details {
		msgs[i] = d.Field + ": " + d.Message
	}
	return &apiError{status: http.StatusBadRequest, code: api.CodeInvalid, msg: strings.Join(msgs, "; "),
		field: details[0].Field, details: details}
}

// toAPIError maps any error to its answer: store sentinels to 404, 409 and
// 410, validation errors to 400, the rest to 500.
func toAPIError(err error) *apiError {
	var ae *apiError
	var fl configs.ErrorList
	var fe *configs.FieldError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &fl) && len(fl) > 0:
		return invalidFields(fieldDetails(fl))
	case errors.As(err, &fe):
		return invalidFields(fieldDetails(configs.ErrorList{fe}))
	case errors.Is(err, store.ErrNotFound):
		return &apiError{status: http.StatusNotFound, code: api.CodeNotFound, msg: err.Error()}
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrExists):
		return &apiError{status: http.StatusConflict, code: api.CodeConflict, msg: err.Error()}
	case errors.Is(err, store.ErrCompacted):
		return &apiError{status: http.StatusGone, code: api.CodeGone, msg: err.Error() + "; list again and watch from its revision"}
	}
	return &apiError{status: http.StatusInternalServerError, code: api.CodeInternal, msg: err.Error()}
}

func fieldDetails(l configs.ErrorList) []api.FieldDetail {
	out := make([]api.FieldDetail, len(l))
	for i, e := range l {
		out[i] = api.FieldDetail{Field: e.Field, Message: e.Msg}
	}
	return out
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := toAPIError(err)
	if he, leader, ok := haError(err); ok {
		ae = he
		ae.leader = leader
	}
	if ae.leader != "" {
		w.Header().Set(api.LeaderHeader, ae.leader)
	}
	if ae.status >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, ae.status, api.ErrorBody{Error: api.ErrorDetail{Code: ae.code, Message: ae.msg, Field: ae.field, Details: ae.details}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.Encode(v) //nolint:errcheck // the client went away; nothing to do
}

// decode reads r's JSON body into v: at most maxBody bytes (else 413),
// unknown fields rejected (400 naming the field), one value only. An empty
// body is allowed when emptyOK.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) error {
	body := http.MaxBytesReader(w, r.Body, s.opts.MaxBody)
	dec := json.NewDecoder(body)
	var raw json.RawMessage
	err := dec.Decode(&raw)
	if err == nil {
		// One JSON value per body: anything after it is an error.
		if _, err2 := dec.Token(); err2 != io.EOF {
			err = errors.New("data after the JSON value")
		}
	}
	switch {
	case err == io.EOF && emptyOK:
		return nil
	case err == nil && bytes.Equal(raw, []byte("null")):
		return invalid("", "the body must be a JSON object, not null")
	case err == nil:
		strict := json.NewDecoder(bytes.NewReader(raw))
		strict.DisallowUnknownFields()
		if err = strict.Decode(v); err == nil {
			return nil
		}
	}
	var tooBig *http.MaxBytesError
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		return &apiError{status: http.StatusRequestEntityTooLarge, code: api.CodeInvalid,
			msg: fmt.Sprintf("request body larger than %d bytes", tooBig.Limit)}
	case err == io.EOF:
		return invalid("", "empty request body")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("", "malformed JSON: unexpected end of body")
	case errors.As(err, &syn):
		return invalid("", "malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		return invalid(typ.Field, "wrong type: want %s, got %s", jsonKind(typ.Type), typ.Value)
	}
	// encoding/json has no typed error for an unknown field; its message is
	// the only place the field's name is found.
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		f = strings.Trim(f, `"`)
		return invalid(f, "unknown field %q", f)
	}
	return invalid("", "bad request body: %v", err)
}

func errBody(code, msg string) api.ErrorBody {
	return api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: msg}}
}

// writeError405 answers a known path asked with a method it does not serve.
// There is no error code of its own: a wrong method is an invalid request.
func writeError405(w http.ResponseWriter, method, path, allowed string) {
	writeJSON(w, http.StatusMethodNotAllowed, errBody(api.CodeInvalid,
		fmt.Sprintf("method %s not allowed on %s (allowed: %s)", method, path, allowed)))
}

// jsonKind names the JSON type that decodes into t.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return t.String()
}
