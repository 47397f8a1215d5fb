// Command keygate is Caddy with the standard modules and the keygate
// modules built in: the apikey app, the apikey and apikey_admin handlers,
// the admin.api.apikey admin route and the `keygate apikey …` commands.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/keygate/keygate/caddymodule"
)

func main() {
	caddycmd.Main()
}
