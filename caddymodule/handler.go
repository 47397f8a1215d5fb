package caddymodule

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/reqpath"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is `http.handlers.apikey`: it authenticates the request's API key,
// checks the key's area rights and limits, meters the request, removes the
// key from the request and calls the next handler (docs/design.md §1).
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
	// AllowPathChars lets ";" and/or "%2F" through step 0 for a backend
	// that needs them in paths. It weakens the guarantee that the backend
	// reads the path keygate judged (docs/paths.md); off by default.
	AllowPathChars []string `json:"allow_path_chars,omitempty"`
	// Environment makes the handler accept only keys that list it in their
	// environments (one proxy in front of DEV, TEST and PROD); without it
	// the handler accepts only keys that list none. Others get the 401.
	Environment string `json:"environment,omitempty"`

	app       *App
	extractor extractor
	// policy holds this handler's options and this config's default
	// limits (the Limiter is shared across reloads and must not keep the
	// first config's).
	policy keystore.Policy
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
	app, err := appFrom(ctx, "apikey")
	if err != nil {
		return err
	}
	h.app = app
	h.policy = keystore.Policy{
		RequireCredential: h.RequireUpstreamCredential,
		DefaultRate:       app.defaultRate(),
		DefaultQuota:      app.defaultQuota(),
		Environment:       h.Environment,
	}
	h.extractor = h.KeySources.extractor()
	paths, err := pathOptions(h.AllowPathChars)
	if err != nil {
		return err
	}
	h.policy.Paths = paths
	if len(h.AllowPathChars) > 0 {
		ctx.Logger().Warn("allow_path_chars weakens path checks: the backend may read a path other than the one judged (docs/paths.md)",
			zap.Strings("allow_path_chars", h.AllowPathChars))
	}
	return nil
}

// pathOptions reads allow_path_chars.
func pathOptions(chars []string) (reqpath.Options, error) {
	var o reqpath.Options
	for _, c := range chars {
		switch strings.ToUpper(c) {
		case ";":
			o.AllowSemicolon = true
		case "%2F":
			o.AllowEncodedSlash = true
		default:
			return o, fmt.Errorf(`apikey: allow_path_chars %q: only ";" and "%%2F" can be allowed`, c)
		}
	}
	return o, nil
}

// Validate checks the handler's options.
// (allow_path_chars is checked by Provision, which Caddy runs first.)
func (h *Handler) Validate() error {
	if h.Environment != "" {
		if err := keystore.ValidEnvironmentName(h.Environment); err != nil {
			return fmt.Errorf("apikey: environment: %w", err)
		}
	}
	return h.KeySources.validate()
}

// ServeHTTP is glue around the Gate: extract the key, judge, answer a
// refusal or scrub the key, set the placeholders and call next.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	var ex extraction
	h.extractor.extract(r, &ex)
	v := h.app.judge(r, &ex, &h.policy)
	if v.Outcome != keystore.Allowed {
		return h.app.refuse(w, r, &v)
	}
	if d := &v.Limit; d.Limited {
		setRateLimitHeaders(w.Header(), d.Limit, d.Remaining, int64((d.Reset+time.Second-1)/time.Second))
	}
	if v.PathChanged {
		// Forward exactly the path that was judged.
		r.URL.Path, r.URL.RawPath = v.Path, v.EscapedPath
	}
	if v.BodyRead {
		// The Gate judged exactly these bytes; the backend gets them.
		r.Body = io.NopCloser(bytes.NewReader(v.Body))
	}
	h.extractor.scrub(r, &ex)
	if up := r.Header["Upgrade"]; up != nil {
		stripH2C(r.Header, up)
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	// Boxed once per cached key: setting them does not allocate.
	p := v.Principal
	repl.Set("apikey.id", p.IDValue())
	repl.Set("apikey.name", p.NameValue())
	repl.Set("apikey.user", p.UserValue())
	repl.Set("http.auth.user.id", p.UserValue())
	if v.Credential != nil {
		repl.Set("apikey.upstream_credential", v.Credential)
	}
	status, err := serveRecorded(w, r, next)
	v.Usage.Status(status)
	return err
}

// judge describes the request to the Gate and counts its outcome, once,
// for metrics. Both handlers judge through it.
func (a *App) judge(r *http.Request, ex *extraction, pol *keystore.Policy) keystore.Verdict {
	req := keystore.Request{
		Key:          ex.key,
		KeyFound:     ex.found,
		KeyAmbiguous: ex.ambiguous,
		Method:       r.Method,
		Overrides:    ex.overrides,
		Path:         r.URL.Path,
		EscapedPath:  r.URL.EscapedPath(),
		Client:       clientIP(r),
		Now:          time.Now(),

		RawQuery:      r.URL.RawQuery,
		ContentType:   r.Header.Get("Content-Type"),
		ContentLength: r.ContentLength,
		Body:          r.Body,
	}
	v := a.gate.Judge(r.Context(), &req, pol)
	a.res.outcomes.add(v.Outcome)
	return v
}

// refuse logs what is worth logging about a refusal (never the key) and
// answers it.
func (a *App) refuse(w http.ResponseWriter, r *http.Request, v *keystore.Verdict) error {
	switch v.Outcome {
	case keystore.StoreUnavailable:
		if c := a.logger.Check(zapcore.ErrorLevel, "key store unavailable"); c != nil {
			c.Write(zap.Error(v.Err))
		}
	case keystore.ForbiddenRead, keystore.ForbiddenWrite, keystore.NoCredential, keystore.NotAdmin:
		if c := a.logger.Check(zapcore.DebugLevel, "key not allowed here"); c != nil {
			c.Write(zap.String("key_id", v.Principal.ID()), zap.String("reason", v.Outcome.String()),
				zap.String("method", r.Method), zap.String("path", r.URL.Path))
		}
	}
	e := outcomeErrors[v.Outcome]
	if v.Message != "" {
		e = newRefusal(e.status, e.code, v.Message)
	}
	return fail(w, r, e, v.RetryAfter)
}

// stripH2C removes an "Upgrade: h2c" request (docs/paths.md): a backend
// that switched to HTTP/2 would carry every further request over a tunnel
// keygate never sees. The request itself goes on as plain HTTP/1.1.
// WebSocket upgrades pass: they are judged as the GET they are.
func stripH2C(h http.Header, upgrade []string) {
	h2c := false
	for _, v := range upgrade {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "h2c") {
				h2c = true
			}
		}
	}
	if !h2c {
		return
	}
	delete(h, "Upgrade")
	delete(h, "Http2-Settings")
	var keep []string
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			tok = strings.TrimSpace(tok)
			if tok != "" && !strings.EqualFold(tok, "upgrade") && !strings.EqualFold(tok, "http2-settings") {
				keep = append(keep, tok)
			}
		}
	}
	if len(keep) == 0 {
		delete(h, "Connection")
	} else {
		h["Connection"] = []string{strings.Join(keep, ", ")}
	}
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

// Interface guards.
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)

// setRateLimitHeaders sets the three headers with two allocations: one for
// the digits, one for the value slices. Names are in canonical form.
func setRateLimitHeaders(h http.Header, limit, remaining, reset int64) {
	// Small values, the usual case (a limit of hundreds, a reset in
	// seconds), come from a shared read-only table: no allocation. Header
	// values are never written in place (Add appends to a full slice,
	// which copies it), so sharing them is safe.
	if limit < smallValues && remaining < smallValues && reset < smallValues && min(limit, remaining, reset) >= 0 {
		h["Ratelimit-Limit"] = smallHeaderValues[limit]
		h["Ratelimit-Remaining"] = smallHeaderValues[remaining]
		h["Ratelimit-Reset"] = smallHeaderValues[reset]
		return
	}
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

// smallHeaderValues[n] is the header value []string{"n"}, len = cap = 1.
const smallValues = 4096

var smallHeaderValues = func() [smallValues][]string {
	var t [smallValues][]string
	for i := range t {
		t[i] = []string{strconv.Itoa(i)}[:1:1]
	}
	return t
}()
