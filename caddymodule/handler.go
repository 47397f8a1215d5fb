package caddymodule

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/keygate/keygate/keystore"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is `http.handlers.apikey`: it authenticates the request's API key,
// checks the key's area rights and limits, meters the request, removes the
// key from the request and calls the next handler (DESIGN §1).
//
// Placeholders set on success:
//
//	{apikey.id}                  the key's id
//	{apikey.name}                the key's name
//	{apikey.user}                the run-as user
//	{apikey.upstream_credential} the run-as user's backend credential, if configured
//	{http.auth.user.id}          the run-as user (Caddy's standard name)
//
// On failure {apikey.error_code} holds the error code for handle_errors.
type Handler struct {
	KeySources
	// RequireUpstreamCredential refuses (403) keys whose run-as user has no
	// upstream_credential, instead of calling the backend anonymously.
	RequireUpstreamCredential bool `json:"require_upstream_credential,omitempty"`

	app    *App
	ex     extractor
	logger *zap.Logger

	// The app's default limits, from this config: the Limiter is shared
	// across reloads and must not keep the first config's.
	defRate  *keystore.Rate
	defQuota *keystore.Quota
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.apikey",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision gets the apikey app and compiles the key sources.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	app, err := appFrom(ctx, "apikey")
	if err != nil {
		return err
	}
	h.app = app
	h.defRate, h.defQuota = app.defaultRate(), app.defaultQuota()
	h.ex = h.KeySources.extractor()
	return nil
}

// Validate checks the handler's options.
func (h *Handler) Validate() error { return h.KeySources.validate() }

// ServeHTTP enforces DESIGN §1 steps 1–8.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	now := time.Now()
	p, ex, err := h.app.authenticate(w, r, &h.ex, now)
	if err != nil || p == nil {
		return err
	}
	k := p.Key
	need := keystore.RequiredLevel(r.Method, ex.overrides...)
	if _, ok := h.app.areas.Allowed(&p.Rights, keystore.CleanPath(r.URL.Path), need); !ok {
		h.debug("key not allowed here", k, r)
		h.app.res.count(resultForbidden)
		if need == keystore.LevelWrite {
			return fail(w, r, errForbiddenWrite, 0)
		}
		return fail(w, r, errForbiddenRead, 0)
	}
	cred, hasCred := h.app.credential(k.User)
	if h.RequireUpstreamCredential && !hasCred {
		h.app.res.count(resultForbidden)
		return fail(w, r, errNoCredential, 0)
	}
	{
		d := h.app.res.limiter.AdmitDefaults(k, now, h.defRate, h.defQuota)
		if !d.Allowed {
			h.app.res.count(resultLimited)
			e := errRateLimited
			if d.Code == keystore.CodeQuotaExceeded {
				e = errQuotaExceeded
			}
			return fail(w, r, e, d.RetryAfter)
		}
		if d.Limited {
			setRateLimitHeaders(w.Header(), d.Limit, d.Remaining, int64((d.Reset+time.Second-1)/time.Second))
		}
	}
	h.app.res.meter.Count(k.ID, now)
	h.app.res.count(resultOK)

	h.ex.scrub(r, &ex)
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	// Boxed once per cached key: setting them does not allocate.
	repl.Set("apikey.id", p.Vars.ID)
	repl.Set("apikey.name", p.Vars.Name)
	repl.Set("apikey.user", p.Vars.User)
	repl.Set("http.auth.user.id", p.Vars.User)
	if hasCred {
		repl.Set("apikey.upstream_credential", cred)
	}
	return next.ServeHTTP(w, r)
}

// authenticate runs steps 1–4 for both handlers. It returns a nil principal
// and the result of fail when the request was refused.
func (a *App) authenticate(w http.ResponseWriter, r *http.Request, x *extractor, now time.Time) (*keystore.Principal, extraction, error) {
	var ex extraction
	client := ""
	if f := a.res.failures; f != nil {
		client = clientIP(r)
		if blocked, retry := f.Blocked(client, now); blocked {
			a.res.count(resultLimited)
			return nil, ex, fail(w, r, errTooManyFailures, retry)
		}
	}
	x.extract(r, &ex)
	if !ex.found || ex.ambiguous || !keystore.PlausibleKey(ex.key) {
		return nil, ex, a.unauthorized(w, r, client, now)
	}
	p, err := a.res.auth.AuthenticateAt(r.Context(), ex.key, now)
	switch {
	case err == nil:
		return p, ex, nil
	case errors.Is(err, keystore.ErrInvalidKey):
		return nil, ex, a.unauthorized(w, r, client, now)
	case errors.Is(err, context.Canceled):
		return nil, ex, fail(w, r, errUnavailable, 0)
	default:
		a.res.count(resultUnavailable)
		if c := a.logger.Check(zapcore.ErrorLevel, "key store unavailable"); c != nil {
			c.Write(zap.Error(err))
		}
		return nil, ex, fail(w, r, errUnavailable, 0)
	}
}

// unauthorized answers 401 and records the failure against the client.
func (a *App) unauthorized(w http.ResponseWriter, r *http.Request, client string, now time.Time) error {
	a.res.count(resultInvalid)
	if f := a.res.failures; f != nil {
		f.Fail(client, now)
	}
	return fail(w, r, errUnauthorized, 0)
}

// clientIP is Caddy's idea of the client address (honouring
// trusted_proxies), falling back to the connection's remote host.
func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (h *Handler) debug(msg string, k *keystore.Key, r *http.Request) {
	if c := h.logger.Check(zapcore.DebugLevel, msg); c != nil {
		c.Write(zap.String("key_id", k.ID), zap.String("method", r.Method), zap.String("path", r.URL.Path))
	}
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)

// setRateLimitHeaders sets the three headers with two allocations: one for
// the digits, one for the value slices. Names are in canonical form.
func setRateLimitHeaders(h http.Header, limit, remaining, reset int64) {
	var buf [64]byte
	b := strconv.AppendInt(buf[:0], limit, 10)
	i := len(b)
	b = strconv.AppendInt(b, remaining, 10)
	j := len(b)
	b = strconv.AppendInt(b, reset, 10)
	digits := string(b)
	vals := make([]string, 3)
	vals[0], vals[1], vals[2] = digits[:i], digits[i:j], digits[j:]
	h["Ratelimit-Limit"] = vals[0:1:1]
	h["Ratelimit-Remaining"] = vals[1:2:2]
	h["Ratelimit-Reset"] = vals[2:3:3]
}
