package caddymodule

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/dustin/go-humanize"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/graphql"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("apikey", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("apikey", parseHandler)
	httpcaddyfile.RegisterDirectiveOrder("apikey", httpcaddyfile.After, "basic_auth")
	httpcaddyfile.RegisterHandlerDirective("apikey_admin", parseAdminHandler)
	httpcaddyfile.RegisterDirectiveOrder("apikey_admin", httpcaddyfile.Before, "respond")
}

// parseGlobalOption parses the apikey global option:
//
//	apikey {
//		storage file <path>
//		storage postgres <dsn> {
//			max_conns     <n>
//			poll_interval <duration>
//		}
//		prefix   <letters/digits, ≤ 8>
//		license  <n>
//		max_keys_per_user <n>
//		area     <name> <path pattern>...
//		upstream_credential <user> <value>
//		self_service_only
//		default_rate  <limit>/<duration>
//		default_quota <limit>/<day|month>
//		flush_interval <duration>
//		failed_attempts <limit>/<window> | off
//		graphql <path>… {
//			field    <area> <rootField>…
//			default  <area>
//			max_body <size>
//		}
//		notify <url> {
//			secret          <value>
//			events          <type>...
//			expiring_within <duration>
//		}
//		webhooks {
//			timeout|retry_min|retry_max|poll_interval|scan_interval <duration>
//		}
//		cache {
//			size                   <n>
//			negative_ttl           <duration>
//			refresh_after          <duration>
//			max_stale              <duration>
//			max_concurrent_lookups <n>
//		}
//	}
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("the apikey global option may appear only once")
	}
	app := new(App)
	d.Next() // option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	graphqlLines := &areaUses{}
	seen := map[string]bool{}
	once := func(name string) error {
		if seen[name] {
			return d.Errf("%s: repeated subdirective; give it once", name)
		}
		seen[name] = true
		return nil
	}
	for d.NextBlock(0) {
		opt := d.Val()
		if opt != "area" && opt != "upstream_credential" && opt != "graphql" && opt != "notify" {
			if err := once(opt); err != nil {
				return nil, err
			}
		}
		switch opt {
		case "storage":
			st, err := parseStorage(d)
			if err != nil {
				return nil, err
			}
			app.Storage = st
		case "prefix":
			v, err := oneArg(d)
			if err != nil {
				return nil, err
			}
			if err := keystore.ValidatePrefix(v); err != nil {
				return nil, d.Err(err.Error())
			}
			app.Prefix = v
		case "license":
			n, err := intArg(d, opt)
			if err != nil {
				return nil, err
			}
			app.License = n
		case "max_keys_per_user":
			n, err := intArg(d, opt)
			if err != nil {
				return nil, err
			}
			app.MaxKeysPerUser = &n
		case "area":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.Err("area needs a name and at least one path, e.g. area assets /maximo/oslc/os/mxapiasset*")
			}
			if len(args) == 1 {
				return nil, d.Errf("area %s has no paths; give at least one path pattern, e.g. area %s /maximo/oslc/os/mxapiasset*", args[0], args[0])
			}
			for _, ar := range app.Areas {
				if ar.Name == args[0] {
					return nil, d.Errf("area %s is defined twice; put all its paths on one area line", args[0])
				}
			}
			if _, err := keystore.NewAreas(map[string][]string{args[0]: args[1:]}); err != nil {
				return nil, d.Err(err.Error())
			}
			ac := AreaConfig{Name: args[0], Paths: args[1:]}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				switch d.Val() {
				case "level":
					v, err := oneArg(d)
					if err != nil {
						return nil, err
					}
					if v != "write" {
						return nil, d.Errf("area %s: level %q is unknown; the only level is write (every method needs write access)", ac.Name, v)
					}
					ac.Level = v
				default:
					return nil, d.Errf("area %s: unknown option %q; known: level", ac.Name, d.Val())
				}
			}
			app.Areas = append(app.Areas, ac)
		case "upstream_credential":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, d.Err("upstream_credential needs a user and a value, e.g. upstream_credential MXINTADM {env.MAXIMO_APIKEY_MXINTADM}")
			}
			if app.UpstreamCredentials == nil {
				app.UpstreamCredentials = map[string]string{}
			}
			if _, dup := app.UpstreamCredentials[args[0]]; dup {
				return nil, d.Errf("upstream_credential for %s is given twice", args[0])
			}
			app.UpstreamCredentials[args[0]] = args[1]
		case "self_service_only":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			app.SelfServiceOnly = true
		case "default_rate":
			v, err := oneArg(d)
			if err != nil {
				return nil, err
			}
			if app.DefaultRate, err = ParseRate(v); err != nil {
				return nil, d.Errf("default_rate: %v", err)
			}
		case "default_quota":
			v, err := oneArg(d)
			if err != nil {
				return nil, err
			}
			if app.DefaultQuota, err = ParseQuota(v); err != nil {
				return nil, d.Errf("default_quota: %v", err)
			}
		case "failed_attempts":
			v, err := oneArg(d)
			if err != nil {
				return nil, err
			}
			if v == "off" {
				app.FailedAttempts = &FailedAttemptsConfig{Off: true}
				break
			}
			r, err := ParseRate(v)
			if err != nil {
				return nil, d.Errf("failed_attempts must look like 100/1m (failures per window) or off: %v", err)
			}
			app.FailedAttempts = &FailedAttemptsConfig{Limit: int(r.Limit), Window: r.Per}
		case "flush_interval":
			dur, err := durationArg(d, opt)
			if err != nil {
				return nil, err
			}
			app.FlushInterval = dur
		case "cache":
			c, err := parseCache(d)
			if err != nil {
				return nil, err
			}
			app.Cache = c
		case "graphql":
			g, err := parseGraphQL(d, graphqlLines)
			if err != nil {
				return nil, err
			}
			app.GraphQL = append(app.GraphQL, g)
		case "notify":
			n, err := parseNotify(d)
			if err != nil {
				return nil, err
			}
			if slices.ContainsFunc(app.Notify, func(o NotifyConfig) bool { return o.URL == n.URL }) {
				return nil, d.Errf("notify %s is given twice; merge the blocks", n.URL)
			}
			app.Notify = append(app.Notify, n)
		case "webhooks":
			w, err := parseWebhooks(d)
			if err != nil {
				return nil, err
			}
			app.Webhooks = w
		default:
			return nil, d.Errf("unknown apikey option %q; known: storage, prefix, license, max_keys_per_user, area, upstream_credential, self_service_only, default_rate, default_quota, failed_attempts, flush_interval, cache, graphql, notify, webhooks", opt)
		}
	}
	// Areas may be declared after the graphql block that uses them.
	for _, area := range graphqlLines.order {
		if !slices.ContainsFunc(app.Areas, func(a AreaConfig) bool { return a.Name == area.name }) {
			return nil, fmt.Errorf("%s:%d: graphql maps root fields to area %q, which no area line defines; add `area %s <paths>…` or fix the name",
				d.File(), area.line, area.name, area.name)
		}
	}
	return httpcaddyfile.App{Name: "apikey", Value: caddyconfig.JSON(app, nil)}, nil
}

// areaUses remembers where graphql blocks name areas, to check them once
// every area line has been read.
type areaUses struct {
	order []struct {
		name string
		line int
	}
}

func (u *areaUses) add(name string, line int) {
	u.order = append(u.order, struct {
		name string
		line int
	}{name, line})
}

// parseGraphQL parses
//
//	graphql <path>… {
//		field <area> <rootField>…
//		default <area>
//		max_body <size>
//	}
func parseGraphQL(d *caddyfile.Dispenser, uses *areaUses) (GraphQLConfig, error) {
	g := GraphQLConfig{Paths: d.RemainingArgs(), Fields: map[string][]string{}}
	if len(g.Paths) == 0 {
		return g, d.Err("graphql needs the endpoint's path, e.g. graphql /mce/api/graphql { field assets asset assets }")
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if opt != "field" {
			if seen[opt] {
				return g, d.Errf("graphql %s: %s is given twice", opt, opt)
			}
			seen[opt] = true
		}
		switch opt {
		case "field":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return g, d.Err("field needs an area and at least one root field, e.g. field workorders workOrder workOrders createWorkOrder")
			}
			g.Fields[args[0]] = append(g.Fields[args[0]], args[1:]...)
			uses.add(args[0], d.Line())
		case "default":
			v, err := oneArg(d)
			if err != nil {
				return g, err
			}
			g.Default = v
			uses.add(v, d.Line())
		case "max_body":
			v, err := oneArg(d)
			if err != nil {
				return g, err
			}
			n, err := humanize.ParseBytes(v)
			if err != nil || n == 0 || n > 1<<30 {
				return g, d.Errf("max_body %q: give a size between 1B and 1GiB, e.g. 1MiB or 512KiB", v)
			}
			g.MaxBody = int64(n)
		default:
			return g, d.Errf("unknown graphql option %q; known: field, default, max_body", opt)
		}
	}
	if len(g.Fields) == 0 && g.Default == "" {
		return g, d.Err("graphql block maps no root fields; add field <area> <rootField>… lines or a default <area>")
	}
	if _, err := graphql.NewEndpoint(g.Paths, g.Fields, g.Default); err != nil {
		return g, d.Err(err.Error())
	}
	return g, nil
}

func parseStorage(d *caddyfile.Dispenser) (*StorageConfig, error) {
	if !d.NextArg() {
		return nil, d.Err("storage needs a type: storage file <path> or storage postgres <dsn>")
	}
	st := &StorageConfig{Type: d.Val()}
	switch st.Type {
	case "file":
		if !d.NextArg() {
			return nil, d.Err("storage file needs a path, e.g. storage file /var/lib/keygate/keys.db")
		}
		st.Path = d.Val()
	case "postgres":
		if !d.NextArg() {
			return nil, d.Err("storage postgres needs a DSN, e.g. storage postgres {env.KEYGATE_DATABASE_URL}")
		}
		st.DSN = d.Val()
	default:
		return nil, d.Errf("storage type %q is unknown; use file or postgres", st.Type)
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if st.Type != "postgres" {
			return nil, d.Errf("storage file takes no options (got %q)", opt)
		}
		if seen[opt] {
			return nil, d.Errf("%s: repeated subdirective; give it once", opt)
		}
		seen[opt] = true
		switch opt {
		case "max_conns":
			n, err := intArg(d, opt)
			if err != nil {
				return nil, err
			}
			if n < 1 {
				return nil, d.Errf("max_conns must be at least 1, got %d", n)
			}
			st.MaxConns = n
		case "poll_interval":
			dur, err := durationArg(d, opt)
			if err != nil {
				return nil, err
			}
			st.PollInterval = dur
		default:
			return nil, d.Errf("unknown storage postgres option %q; known: max_conns, poll_interval", opt)
		}
	}
	return st, nil
}

func parseCache(d *caddyfile.Dispenser) (*CacheConfig, error) {
	c := new(CacheConfig)
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return nil, d.Errf("%s: repeated subdirective; give it once", opt)
		}
		seen[opt] = true
		var err error
		switch opt {
		case "size":
			var n int
			n, err = intArg(d, opt)
			c.Size = int64(n)
		case "negative_ttl":
			c.NegativeTTL, err = durationArg(d, opt)
		case "refresh_after":
			c.RefreshAfter, err = durationArg(d, opt)
		case "max_stale":
			c.MaxStale, err = durationArg(d, opt)
		case "max_concurrent_lookups":
			c.MaxConcurrentLookups, err = intArg(d, opt)
		case "lookup_timeout":
			c.LookupTimeout, err = durationArg(d, opt)
		default:
			return nil, d.Errf("unknown cache option %q; known: size, negative_ttl, refresh_after, max_stale, max_concurrent_lookups, lookup_timeout", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

// oneArg returns the option's single argument.
func oneArg(d *caddyfile.Dispenser) (string, error) {
	if !d.NextArg() {
		return "", d.ArgErr()
	}
	v := d.Val()
	if d.NextArg() {
		return "", d.ArgErr()
	}
	return v, nil
}

func intArg(d *caddyfile.Dispenser, opt string) (int, error) {
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	n, err := strconv.Atoi(d.Val())
	if err != nil || n < 0 {
		return 0, d.Errf("%s: %q is not a non-negative whole number", opt, d.Val())
	}
	if d.NextArg() {
		return 0, d.ArgErr()
	}
	return n, nil
}

func durationArg(d *caddyfile.Dispenser, opt string) (caddy.Duration, error) {
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(d.Val())
	if err != nil || dur <= 0 {
		return 0, d.Errf("%s: %q is not a positive duration such as 10s, 1m or 24h", opt, d.Val())
	}
	if d.NextArg() {
		return 0, d.ArgErr()
	}
	return caddy.Duration(dur), nil
}

// ParseRate parses "100/1m" (limit per Go duration) with
// keystore.ParseRateText.
func ParseRate(s string) (*RateConfig, error) {
	r, err := keystore.ParseRateText(s)
	if err != nil {
		return nil, &caddyfileErr{"rate " + strconv.Quote(s) + " must look like 100/1m (a positive count, a slash, a Go duration)", err}
	}
	return &RateConfig{Limit: r.Limit, Per: caddy.Duration(r.Per)}, nil
}

// ParseQuota parses "10000/month" or "500/day" with keystore.ParseQuotaText.
func ParseQuota(s string) (*QuotaConfig, error) {
	q, err := keystore.ParseQuotaText(s)
	if err != nil {
		return nil, &caddyfileErr{"quota " + strconv.Quote(s) + " must look like 10000/month or 500/day", err}
	}
	return &QuotaConfig{Limit: q.Limit, Period: q.Period}, nil
}

// caddyfileErr is a Caddyfile value refused: msg shows the form expected,
// err is the parser's reason.
type caddyfileErr struct {
	msg string
	err error
}

func (e *caddyfileErr) Error() string { return e.msg }
func (e *caddyfileErr) Unwrap() error { return e.err }

// parseHandler parses the apikey handler directive:
//
//	apikey {
//		header NAME...
//		query  NAME... | off
//		bearer
//		require_upstream_credential
//		allow_path_chars ; %2F
//		environment NAME
//	}
func parseHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	d := h.Dispenser
	handler := new(Handler)
	d.Next()
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		opt := d.Val()
		if seen[opt] {
			return nil, d.Errf("%s: repeated subdirective; list all values on one line", opt)
		}
		seen[opt] = true
		if ok, err := handler.KeySources.parse(d, opt); ok || err != nil {
			if err != nil {
				return nil, err
			}
			continue
		}
		switch opt {
		case "require_upstream_credential":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			handler.RequireUpstreamCredential = true
		case "allow_path_chars":
			handler.AllowPathChars = d.RemainingArgs()
			if len(handler.AllowPathChars) == 0 {
				return nil, d.Err(`allow_path_chars needs ";" and/or "%2F"`)
			}
			if _, err := pathOptions(handler.AllowPathChars); err != nil {
				return nil, d.Err(err.Error())
			}
		case "environment":
			if !d.NextArg() {
				return nil, d.Err("environment needs a name, such as prod")
			}
			handler.Environment = d.Val()
			if d.NextArg() {
				return nil, d.Err("environment takes one name; a handler serves one environment")
			}
			if err := keystore.ValidEnvironmentName(handler.Environment); err != nil {
				return nil, d.Err(err.Error())
			}
		default:
			return nil, d.Errf("unknown apikey handler option %q; known: header, query, bearer, require_upstream_credential, allow_path_chars, environment", opt)
		}
	}
	return handler, nil
}

// parseAdminHandler parses the apikey_admin directive:
//
//	apikey_admin [<mount>] {
//		header NAME...
//		query  NAME... | off
//		bearer
//	}
//
// mount is the path prefix the admin API is served under (default
// /keygate); it is stripped before routing.
func parseAdminHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	d := h.Dispenser
	handler := new(AdminHandler)
	d.Next()
	if d.NextArg() {
		handler.Mount = d.Val()
		if d.NextArg() {
			return nil, d.ArgErr()
		}
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		opt := d.Val()
		if seen[opt] {
			return nil, d.Errf("%s: repeated subdirective; list all values on one line", opt)
		}
		seen[opt] = true
		ok, err := handler.KeySources.parse(d, opt)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, d.Errf("unknown apikey_admin option %q; known: header, query, bearer", opt)
		}
	}
	return handler, nil
}

// parse handles the key-source options shared by apikey and apikey_admin.
// It reports whether opt was one of them.
func (ks *KeySources) parse(d *caddyfile.Dispenser, opt string) (bool, error) {
	switch opt {
	case "header":
		ks.Headers = d.RemainingArgs()
		if len(ks.Headers) == 0 {
			return true, d.Err("header needs at least one header name")
		}
	case "query":
		args := d.RemainingArgs()
		if len(args) == 0 {
			return true, d.Err("query needs at least one parameter name, or off")
		}
		if len(args) == 1 && args[0] == "off" {
			ks.DisableQuery = true
		} else {
			ks.Query = args
		}
	case "bearer":
		if d.NextArg() {
			return true, d.ArgErr()
		}
		ks.Bearer = true
	default:
		return false, nil
	}
	return true, nil
}
