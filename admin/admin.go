// Package admin serves the keygate admin API (docs/design.md §4) as a plain
// net/http handler on top of keystore.Service. It never imports Caddy: the
// Caddy glue mounts the same handler on a site (apikey_admin) and on Caddy's
// local admin endpoint (admin.api.apikey), so both answer with the same
// bodies.
//
// # Mounting
//
// The handler routes on paths relative to its mount: "/keys",
// "/keys/{id}/rotate", "/license", "/openapi.json", … The caller removes the
// mount prefix before calling it, for example
//
//	http.Handle("/keygate/", http.StripPrefix("/keygate", admin.New(cfg)))
//
// or, in Caddy, by rewriting r.URL.Path (and RawPath) to the part after the
// mount before ServeHTTP, as http.StripPrefix does. Paths the table does not
// list get a JSON 404, listed paths with another method a JSON 405 with
// Allow; the handler never redirects (a Location without the mount prefix
// would be wrong).
//
// # Authentication
//
// The caller authenticates the request: for a site mount it checks the
// admin key like any key (docs/design.md §1 steps 1–4) and builds the actor with
// keystore.KeyActor; Caddy's local endpoint uses keystore.LocalActor. It
// passes the actor with WithActor. A request without an actor is answered
// with the §1 401 (WriteUnauthorized), except GET /openapi.json, which is
// public. The caller should answer every failed authentication itself with
// WriteUnauthorized, so the body is the same byte for byte. Authorization
// (keys:admin, keys:self, no escalation) is keystore.Service's job.
package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"

	"go.uber.org/zap"

	"github.com/keygate/keygate/keystore"
)

// DefaultMaxBodyBytes bounds request bodies.
const DefaultMaxBodyBytes = 1 << 20

// Config configures the admin handler.
type Config struct {
	// Service does the work. Required.
	Service *keystore.Service
	// Logger receives server-side failures (5xx causes); nil discards.
	// Request bodies are never logged: they may hold keys.
	Logger *zap.Logger
	// MaxBodyBytes bounds request bodies; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
}

type actorKey struct{}

// WithActor returns a context carrying the authenticated actor.
func WithActor(ctx context.Context, a keystore.Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor WithActor stored, if any.
func ActorFrom(ctx context.Context) (keystore.Actor, bool) {
	a, ok := ctx.Value(actorKey{}).(keystore.Actor)
	return a, ok
}

type handler struct {
	svc      *keystore.Service
	log      *zap.Logger
	maxBody  int64
	mux      *http.ServeMux
	patterns map[string]bool
}

// New returns the admin API handler. It panics if cfg.Service is nil.
func New(cfg Config) http.Handler {
	if cfg.Service == nil {
		panic("admin.New: Config.Service is nil")
	}
	h := &handler{
		svc:      cfg.Service,
		log:      cfg.Logger,
		maxBody:  cfg.MaxBodyBytes,
		mux:      http.NewServeMux(),
		patterns: map[string]bool{},
	}
	if h.log == nil {
		h.log = zap.NewNop()
	}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBodyBytes
	}
	h.handle("POST /keys", h.createKey)
	h.handle("POST /keys/import", h.importKey)
	h.handle("GET /keys", h.listKeys)
	h.handle("GET /keys/{id}", h.getKey)
	h.handle("PATCH /keys/{id}", h.updateKey)
	h.handle("DELETE /keys/{id}", h.revokeKey)
	h.handle("POST /keys/{id}/rotate", h.rotateKey)
	h.handle("GET /keys/{id}/usage", h.usage)
	h.handle("POST /keys/revoke-leaked", h.revokeLeaked)
	h.handle("DELETE /users/{user}", h.revokeUser)
	h.handle("GET /users/{user}", h.getUser)
	h.handle("GET /users/{user}/limits", h.getUser)
	h.handle("PUT /users/{user}/limits", h.putUserLimits)
	h.handle("DELETE /users/{user}/limits", h.deleteUserLimits)
	h.handle("GET /license", h.license)
	h.handle("GET /usage", h.report)
	h.handle("GET /audit", h.audit)
	h.handle("GET /events", h.events)
	h.handle("GET /areas", h.areas)
	h.handle("GET /whoami", h.whoami)
	h.patterns["GET /openapi.json"] = true
	h.mux.HandleFunc("GET /openapi.json", serveOpenAPI)
	return h
}

// handle registers an endpoint that needs an actor.
func (h *handler) handle(pattern string, fn func(http.ResponseWriter, *http.Request, keystore.Actor)) {
	h.patterns[pattern] = true
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		a, ok := ActorFrom(r.Context())
		if !ok {
			WriteUnauthorized(w)
			return
		}
		fn(w, r, a)
	})
}

// ServeHTTP routes the request; unrouted requests get JSON 404 and 405.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A path the mux would clean answers 404 rather than the mux's
	// redirect, whose Location would lack the mount prefix.
	if p := r.URL.EscapedPath(); p == "" || p[0] != '/' || path.Clean(p) != p {
		WriteError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no admin API endpoint at %s", r.URL.Path))
		return
	}
	next, pattern := h.mux.Handler(r)
	if h.patterns[pattern] {
		h.mux.ServeHTTP(w, r) // sets the path values
		return
	}
	// Not one of ours: the mux's 404 or 405. Ask it which, and answer in
	// JSON.
	p := &probe{header: http.Header{}}
	next.ServeHTTP(p, r)
	if p.status == http.StatusMethodNotAllowed {
		allow := p.header.Get("Allow")
		w.Header().Set("Allow", allow)
		WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed",
			fmt.Sprintf("method %s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, allow))
		return
	}
	WriteError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no admin API endpoint at %s", r.URL.Path))
}

// probe records what the mux's fallback handlers would answer.
type probe struct {
	header http.Header
	status int
}

func (p *probe) Header() http.Header { return p.header }
func (p *probe) WriteHeader(code int) {
	if p.status == 0 {
		p.status = code
	}
}
func (p *probe) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return len(b), nil
}

// fail answers a Service (or request parsing) error.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *requestError
	if errors.As(err, &ae) {
		WriteError(w, ae.status, ae.code, ae.message)
		return
	}
	var (
		status int
		code   string
	)
	msg := "internal error"
	var se *keystore.ServiceError
	if errors.As(err, &se) {
		msg = se.Message
	}
	switch keystore.KindOf(err) {
	case keystore.KindInvalid:
		status, code = http.StatusBadRequest, "invalid_request"
	case keystore.KindForbidden:
		status, code = http.StatusForbidden, "forbidden"
	case keystore.KindNotFound:
		status, code = http.StatusNotFound, "not_found"
	case keystore.KindConflict:
		status, code = http.StatusConflict, "conflict"
	case keystore.KindLicense:
		status, code = http.StatusConflict, "license_exhausted"
	case keystore.KindUnavailable:
		status, code = http.StatusServiceUnavailable, "store_unavailable"
		if se == nil {
			msg = "the key store is unavailable; try again later"
		}
	default:
		status, code, msg = http.StatusInternalServerError, "internal_error", "internal error"
	}
	if status >= 500 {
		h.log.Error("admin api request failed",
			zap.String("method", r.Method), zap.String("path", r.URL.Path),
			zap.Int("status", status), zap.Error(err))
	}
	WriteError(w, status, code, msg)
}

// requestError is a refusal made by the HTTP layer itself (bad JSON, body too
// large, bad query parameter).
type requestError struct {
	status  int
	code    string
	message string
}

func (e *requestError) Error() string { return e.message }

func badRequest(format string, args ...any) error {
	return &requestError{status: http.StatusBadRequest, code: "invalid_request", message: fmt.Sprintf(format, args...)}
}

// UnauthorizedMessage is the message of every 401: the same whatever the
// cause, so it tells an attacker nothing about which keys exist.
const UnauthorizedMessage = "a valid API key is required"

// UnauthorizedBody is the exact body of every 401 (docs/design.md §1), newline
// included.
var UnauthorizedBody = []byte(`{"error":{"code":"invalid_api_key","message":"` + UnauthorizedMessage + `"}}` + "\n")

// WriteUnauthorized writes the docs/design.md §1 401: the fixed body and
// WWW-Authenticate: ApiKey realm="keygate". The Caddy glue uses it for
// every failed admin authentication.
func WriteUnauthorized(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("WWW-Authenticate", `ApiKey realm="keygate"`)
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write(UnauthorizedBody)
}

// WriteError writes {"error":{"code":…,"message":…}} with status.
func WriteError(w http.ResponseWriter, status int, code, message string) {
	type body struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	writeJSON(w, status, struct {
		Error body `json:"error"`
	}{body{code, message}})
}

// pathValue returns a path parameter, refusing blank ones.
func pathValue(r *http.Request, name string) (string, error) {
	v := r.PathValue(name)
	if strings.TrimSpace(v) == "" {
		return "", badRequest("the %s in the path must not be empty", name)
	}
	return v, nil
}
