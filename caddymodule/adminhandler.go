package caddymodule

import (
	"errors"
	"net/http"
	"path"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/admin/console"
	"github.com/keygate/keygate/keystore"
)

func init() {
	caddy.RegisterModule(AdminHandler{})
}

// AdminHandler is `http.handlers.apikey_admin`: the admin API and web
// console, served on a site and authenticated by admin keys (keys:admin or
// keys:self) presented like any key. It is a terminal handler.
type AdminHandler struct {
	KeySources
	// Mount is the path prefix the admin API is served under; it is
	// stripped before routing. Default "/keygate". A request whose path
	// does not start with it (e.g. under handle_path) is routed as is.
	Mount string `json:"mount,omitempty"`

	app       *App
	extractor extractor
}

// CaddyModule returns the Caddy module information.
func (AdminHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.apikey_admin",
		New: func() caddy.Module { return new(AdminHandler) },
	}
}

// Provision gets the apikey app.
func (h *AdminHandler) Provision(ctx caddy.Context) error {
	app, err := appFrom(ctx, "apikey_admin")
	if err != nil {
		return err
	}
	h.app = app
	if h.Mount == "" {
		h.Mount = "/keygate"
	}
	h.Mount = "/" + strings.Trim(h.Mount, "/")
	h.extractor = h.KeySources.extractor()
	return nil
}

// Validate checks the handler's options.
func (h *AdminHandler) Validate() error { return h.KeySources.validate() }

// ServeHTTP authenticates the admin key and hands the request to the admin
// API. The web console's static assets and the OpenAPI description are
// public: they hold no data, and the console signs in with a key.
func (h *AdminHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	rest := r.URL.Path
	if strings.HasPrefix(rest, h.Mount+"/") || rest == h.Mount {
		rest = rest[len(h.Mount):]
	}
	if rest == "" {
		rest = "/"
	}
	if rest == "/" && wantsHTML(r) {
		// A browser opening the mount itself is led to the console; API
		// clients (no text/html in Accept) get the API's answer. The
		// Location is relative, so it holds under handle_path too.
		loc := "ui/"
		if !strings.HasSuffix(r.URL.Path, "/") {
			loc = path.Base(r.URL.Path) + "/ui/"
		}
		http.Redirect(w, r, loc, http.StatusFound)
		return nil
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path, r2.URL.RawPath = rest, ""
	if rest == "/ui" || strings.HasPrefix(rest, "/ui/") {
		console.Handler().ServeHTTP(w, r2)
		return nil
	}
	if isPublicAdminPath(rest) {
		h.app.admin.ServeHTTP(w, r2)
		return nil
	}
	var ex extraction
	h.extractor.extract(r, &ex)
	v := h.app.judge(r, &ex, &adminPolicy)
	if v.Outcome != keystore.Allowed {
		return h.app.refuse(w, r, &v)
	}
	actor := keystore.PrincipalActor(v.Principal)
	h.app.admin.ServeHTTP(w, r2.WithContext(admin.WithActor(r2.Context(), actor)))
	return nil
}

// wantsHTML reports a GET or HEAD from a browser: text/html in Accept.
func wantsHTML(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(strings.ToLower(v), "text/html") {
			return true
		}
	}
	return false
}

// adminPolicy judges admin API calls: an admin key, no areas or limits.
var adminPolicy = keystore.Policy{Admin: true}

// isPublicAdminPath reports paths served without a key: the web console's
// static assets and the OpenAPI description.
func isPublicAdminPath(p string) bool {
	return p == "/openapi.json" || p == "/ui" || strings.HasPrefix(p, "/ui/")
}

// appFrom returns the apikey app for a module that needs it.
func appFrom(ctx caddy.Context, who string) (*App, error) {
	app, err := ctx.AppIfConfigured("apikey")
	if errors.Is(err, caddy.ErrNotConfigured) {
		return nil, errors.New("the " + who + " handler needs the apikey app: add an `apikey { … }` block to the global options")
	}
	if err != nil {
		return nil, err
	}
	return app.(*App), nil
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*AdminHandler)(nil)
	_ caddy.Validator             = (*AdminHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*AdminHandler)(nil)
)
