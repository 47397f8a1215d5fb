package caddymodule

import (
	"errors"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// adminAPIBase is where the admin API lives on Caddy's admin endpoint.
const adminAPIBase = "/apikey/"

// AdminAPI is `admin.api.apikey`: the admin API on Caddy's local admin
// endpoint under /apikey/. That endpoint is local and trusted like the rest
// of Caddy's admin API, so calls act as keys:admin with the actor "local".
type AdminAPI struct {
	app *App
}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.apikey",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Provision finds the apikey app if the config has one.
func (a *AdminAPI) Provision(ctx caddy.Context) error {
	// AppIfConfigured does not instantiate an unconfigured app.
	app, err := ctx.AppIfConfigured("apikey")
	if err == nil {
		a.app = app.(*App)
	}
	return nil
}

// Routes returns the admin routes.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: adminAPIBase, Handler: caddy.AdminHandlerFunc(a.serve)}}
}

func (a *AdminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	app := a.app
	if app != nil && app.res != nil {
		// Caddy installs a new config's admin routes before starting its
		// apps and keeps them when the start fails, so after a failed
		// reload these routes belong to a config that never ran: serve
		// with the config actually running.
		if live := app.res.newest(); live != nil {
			app = live
		}
	}
	if app == nil || app.admin == nil {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("the apikey app is not configured or not started")}
	}
	r2 := r.Clone(admin.WithActor(r.Context(), keystore.LocalActor()))
	r2.URL.Path = "/" + strings.TrimPrefix(r.URL.Path, adminAPIBase)
	r2.URL.RawPath = ""
	app.admin.ServeHTTP(w, r2)
	return nil
}

// Interface guards.
var (
	_ caddy.Provisioner = (*AdminAPI)(nil)
	_ caddy.AdminRouter = (*AdminAPI)(nil)
)
