// Package keygate is the module's root: importing it registers keygate's
// Caddy modules (the apikey app, the apikey and apikey_admin handlers, the
// admin.api.apikey admin route) and the `apikey` CLI commands, so
//
//	xcaddy build --with github.com/keygate/keygate
//
// builds a Caddy with keygate in it. The code lives in caddymodule, keystore
// and admin.
package keygate

import _ "github.com/keygate/keygate/caddymodule"
