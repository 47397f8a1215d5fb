// Command keygate is Caddy with the standard modules and the keygate
// modules built in: the apikey app, the apikey and apikey_admin handlers,
// the admin.api.apikey admin route and the `keygate apikey …` commands.
//
// The binary presents itself as keygate: its help and usage lines name
// keygate, `keygate version` prints keygate's version and the Caddy version
// it is built on, Caddy's self-replacing commands (upgrade, add-package,
// remove-package) refuse, and `keygate run` says why it failed on stderr,
// refuses ports another server already serves and prints a ready line.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/keygate/keygate/caddymodule"
)

func main() {
	caddycmd.Main()
}
