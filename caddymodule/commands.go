package caddymodule

// The `keygate apikey …` subcommands register themselves with Caddy's CLI;
// importing them here puts them in every binary built with this module,
// including custom xcaddy builds.
import _ "github.com/keygate/keygate/caddymodule/cli"
