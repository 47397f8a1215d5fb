package caddymodule

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keygate/keygate/admin"
)

// apiError is a DESIGN §1 error: the status, a stable code and the message
// for the client. The message never says why a key was refused.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

var (
	errUnauthorized = &apiError{http.StatusUnauthorized, "invalid_api_key", admin.UnauthorizedMessage}
	errUnavailable  = &apiError{http.StatusServiceUnavailable, "store_unavailable", "the key store is unavailable; try again shortly"}
	// errTooManyFailures answers clients that sent too many invalid keys.
	errTooManyFailures = &apiError{http.StatusTooManyRequests, "rate_limited", "too many requests with invalid API keys from this client; retry later"}
)

func forbidden(msg string) *apiError { return &apiError{http.StatusForbidden, "forbidden", msg} }

// errorBody renders {"error":{"code":…,"message":…}}.
func errorBody(e *apiError) []byte {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"code": e.code, "message": e.message}})
	return append(b, '\n')
}

// Bodies of the fixed errors, rendered once: every 401 is byte-identical.
var (
	unauthorizedBody = admin.UnauthorizedBody // the admin API's 401, byte for byte
	unavailableBody  = errorBody(errUnavailable)
)

// fail answers an error the Caddy way. Headers are set first so they
// survive either path. When the site has handle_errors routes, the error is
// returned as a caddyhttp.HandlerError for them to restyle
// ({http.error.status_code}, {http.error.message}; the code is in
// {apikey.error_code}); otherwise the DESIGN default JSON body is written
// here, since Caddy's default error response has no body.
func fail(w http.ResponseWriter, r *http.Request, e *apiError, retryAfter time.Duration) error {
	h := w.Header()
	if e.status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `ApiKey realm="keygate"`)
	}
	if retryAfter > 0 {
		secs := int64((retryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	h.Set("Cache-Control", "no-store")
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("apikey.error_code", e.code)
	}
	if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv != nil && srv.Errors != nil && len(srv.Errors.Routes) > 0 {
		return caddyhttp.Error(e.status, e)
	}
	body := unauthorizedBody
	switch {
	case e == errUnavailable:
		body = unavailableBody
	case e != errUnauthorized:
		body = errorBody(e)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.status)
	_, _ = w.Write(body) // a client that went away is not an error worth logging
	return nil
}
