package caddymodule

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
)

// refusal is an error answer of the request path (docs/design.md §1): the
// status, a stable code and the message for the client. The message never
// says why a key was refused.
type refusal struct {
	status  int
	code    string
	message string
	body    []byte // the default JSON body, rendered once

	codeAny any      // code, boxed once for the replacer
	length  []string // Content-Length of body, shared read-only
}

// Shared read-only header values (capacity 1: an append never writes into
// them).
var (
	hdrWWWAuthenticate = []string{`ApiKey realm="keygate"`}[:1:1]
	hdrNoStore         = []string{"no-store"}[:1:1]
	hdrJSON            = []string{"application/json"}[:1:1]
)

func (e *refusal) prepared() *refusal {
	e.codeAny = e.code
	e.length = []string{strconv.Itoa(len(e.body))}[:1:1]
	return e
}

func newRefusal(status int, code, message string) *refusal {
	e := &refusal{status: status, code: code, message: message}
	e.body = errorBody(e)
	return e.prepared()
}

func (e *refusal) Error() string { return e.code + ": " + e.message }

// The errors of the request path, rendered once: no allocation to refuse.
var (
	errUnauthorized = (&refusal{status: http.StatusUnauthorized, code: "invalid_api_key", message: admin.UnauthorizedMessage,
		body: admin.UnauthorizedBody}).prepared() // the admin API's 401, byte for byte: every 401 is identical
	errUnavailable = newRefusal(http.StatusServiceUnavailable, "store_unavailable", "the key store is unavailable; try again shortly")
	// errTooManyFailures answers clients that sent too many invalid keys.
	errTooManyFailures = newRefusal(http.StatusTooManyRequests, "rate_limited", "too many requests with invalid API keys from this client; retry later")
	errRateLimited     = newRefusal(http.StatusTooManyRequests, "rate_limited", "rate limit exceeded for this API key; retry later")
	errQuotaExceeded   = newRefusal(http.StatusTooManyRequests, "quota_exceeded", "quota exhausted for this API key in the current period")
	errForbiddenRead   = newRefusal(http.StatusForbidden, "forbidden", "this API key has no read access to this path")
	errForbiddenWrite  = newRefusal(http.StatusForbidden, "forbidden", "this API key has no write access to this path")
	errNoCredential    = newRefusal(http.StatusForbidden, "forbidden", "no upstream credential is configured for this key's user")
	errNotAdmin        = newRefusal(http.StatusForbidden, "forbidden", "this API key has no admin rights (keys:admin or keys:self)")
	errForbiddenAddr   = newRefusal(http.StatusForbidden, "forbidden", "this API key may not be used from this client address")
	// The GraphQL refusals; the Gate's message replaces these defaults.
	errInvalidRequest   = newRefusal(http.StatusBadRequest, "invalid_request", "the GraphQL request cannot be judged")
	errMethodNotAllowed = newRefusal(http.StatusMethodNotAllowed, "method_not_allowed", "a mutation must be sent with POST, not GET")
	errTooLarge         = newRefusal(http.StatusRequestEntityTooLarge, "request_too_large", "the GraphQL request body is larger than this endpoint accepts")
	// errInvalidPath's message is replaced by the reason the path was refused.
	errInvalidPath = newRefusal(http.StatusBadRequest, "invalid_path", "the request path is read differently by keygate and common backends")
)

// outcomeErrors is the answer to each refusing outcome of the Gate.
var outcomeErrors = [keystore.NumOutcomes]*refusal{
	keystore.InvalidKey:       errUnauthorized,
	keystore.TooManyFailures:  errTooManyFailures,
	keystore.ForbiddenRead:    errForbiddenRead,
	keystore.ForbiddenWrite:   errForbiddenWrite,
	keystore.NoCredential:     errNoCredential,
	keystore.NotAdmin:         errNotAdmin,
	keystore.RateLimited:      errRateLimited,
	keystore.QuotaExceeded:    errQuotaExceeded,
	keystore.StoreUnavailable: errUnavailable,
	keystore.Canceled:         errUnavailable,
	keystore.InvalidRequest:   errInvalidRequest,
	keystore.MethodNotAllowed: errMethodNotAllowed,
	keystore.TooLarge:         errTooLarge,
	keystore.InvalidPath:      errInvalidPath,
	keystore.ForbiddenAddress: errForbiddenAddr,
}

// errorBody renders {"error":{"code":…,"message":…}}.
func errorBody(e *refusal) []byte {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"code": e.code, "message": e.message}})
	return append(b, '\n')
}

// fail answers an error the Caddy way. Headers are set first so they
// survive either path. When the site has handle_errors routes, the error is
// returned as a caddyhttp.HandlerError for them to restyle
// ({http.error.status_code}, {http.error.message}; the code is in
// {apikey.error_code}); otherwise the documented default JSON body is written
// here, since Caddy's default error response has no body.
func fail(w http.ResponseWriter, r *http.Request, e *refusal, retryAfter time.Duration) error {
	h := w.Header()
	if e.status == http.StatusUnauthorized {
		h["Www-Authenticate"] = hdrWWWAuthenticate
	}
	if retryAfter > 0 {
		secs := int64((retryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	h["Cache-Control"] = hdrNoStore
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("apikey.error_code", e.codeAny)
	}
	if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv != nil && srv.Errors != nil && len(srv.Errors.Routes) > 0 {
		return caddyhttp.Error(e.status, e)
	}
	h["Content-Type"] = hdrJSON
	h["Content-Length"] = e.length
	w.WriteHeader(e.status)
	_, _ = w.Write(e.body) // a client that went away is not an error worth logging
	return nil
}
