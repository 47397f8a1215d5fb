// Package caddymodule wires keygate into Caddy: the apikey app, the apikey
// and apikey_admin HTTP handlers, the admin.api.apikey admin route and the
// Caddyfile syntax. Domain logic lives in keystore and admin.
package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/graphql"
	"github.com/keygate/keygate/keystore/notify"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the `apikey` app: it owns the key store, the key cache, the usage
// meter, the limiter and the area definitions, shared by every apikey and
// apikey_admin handler of the config. The store, cache and meter outlive
// config reloads (they are pooled by storage location), so a reload neither
// reopens the store nor drops the cache nor loses a usage count.
type App struct {
	// Storage selects the key store. Default: the embedded file store at
	// keys.db in Caddy's data directory.
	Storage *StorageConfig `json:"storage,omitempty"`

	// Prefix of generated keys: 1 to 8 letters or digits. Default "kg".
	Prefix string `json:"prefix,omitempty"`

	// License caps the number of active keys; 0 means no cap.
	License int `json:"license,omitempty"`

	// MaxKeysPerUser caps the active keys of one run-as user, so that one
	// user (or a runaway keys:self integration) cannot take the whole
	// licence. Unset: 25 (keystore.DefaultMaxKeysPerUser); 0: no cap.
	MaxKeysPerUser *int `json:"max_keys_per_user,omitempty"`

	// Areas map request paths to functional areas. Patterns follow
	// Caddy's path matcher (prefix "/a*", suffix "*a", exact),
	// case-insensitively, on the cleaned path.
	Areas []AreaConfig `json:"areas,omitempty"`

	// GraphQL declares GraphQL endpoints: requests to their paths are
	// judged by the operations and root fields of their documents instead
	// of by path areas (docs/graphql.md).
	GraphQL []GraphQLConfig `json:"graphql,omitempty"`

	// UpstreamCredentials maps a run-as user to the backend's own
	// credential for that user (normally an {env.*} or {file.*}
	// placeholder), exposed as {apikey.upstream_credential}. Never stored.
	UpstreamCredentials map[string]string `json:"upstream_credentials,omitempty"`

	// SelfServiceOnly restricts even keys:admin to creating keys for its
	// own user, like Maximo's mxe.apikeyforloggedinuser. The local admin
	// endpoint is exempt.
	SelfServiceOnly bool `json:"self_service_only,omitempty"`

	// Cache tunes the key cache.
	Cache *CacheConfig `json:"cache,omitempty"`

	// DefaultRate applies to keys that set no rate of their own.
	DefaultRate *RateConfig `json:"default_rate,omitempty"`

	// DefaultQuota applies to keys that set no quota of their own.
	DefaultQuota *QuotaConfig `json:"default_quota,omitempty"`

	// FailedAttempts limits invalid keys per client IP: after Limit
	// failures within Window the client gets 429 until the window ends.
	// Default 100 per 1m; "off" disables it.
	FailedAttempts *FailedAttemptsConfig `json:"failed_attempts,omitempty"`

	// FlushInterval is how often usage counts are written to the store.
	// Default 10s. Counts are also flushed on reload and shutdown.
	FlushInterval caddy.Duration `json:"flush_interval,omitempty"`

	// Notify are the webhook destinations: signed JSON events (key
	// created, rotated, revoked, expiring, expired; quota and licence
	// thresholds), kept in the store until each destination accepts them.
	Notify []NotifyConfig `json:"notify,omitempty"`

	// Webhooks tunes webhook delivery (timeouts, retries, scan interval).
	Webhooks *WebhooksConfig `json:"webhooks,omitempty"`

	areas   *keystore.Areas
	creds   map[string]any // run-as user → credential, boxed once for the replacer
	poolKey string
	res     *resources
	logger  *zap.Logger
	ctx     caddy.Context
	svc     *keystore.Service
	gate    *keystore.Gate // the request policy, built in Start
	// failures is the failed-attempt limiter of this config's setting
	// (shared with live configs of the same setting); nil when off.
	failures *keystore.FailureLimiter
	admin    http.Handler    // the admin API over svc, built in Start
	targets  []notify.Target // Notify with secrets resolved
	notifier *notifier       // nil without Notify
}

// StorageConfig selects and configures the key store.
type StorageConfig struct {
	// Type is "file" (embedded bbolt, default) or "postgres".
	Type string `json:"type,omitempty"`
	// Path of the bbolt file (file only). Default: keys.db in Caddy's
	// data directory.
	Path string `json:"path,omitempty"`
	// DSN of the Postgres database (postgres only); placeholders such as
	// {env.KEYGATE_DATABASE_URL} are resolved.
	DSN string `json:"dsn,omitempty"`
	// MaxConns is the Postgres pool size. Default 10.
	MaxConns int `json:"max_conns,omitempty"`
	// PollInterval is the change-log poll backstop (postgres). Default 5s.
	PollInterval caddy.Duration `json:"poll_interval,omitempty"`
}

// AreaConfig is one functional area.
type AreaConfig struct {
	// Name of the area, used in rights ("assets:read").
	Name string `json:"name"`
	// Paths are the path patterns of the area.
	Paths []string `json:"paths"`
	// Level "write" makes every method, GET included, need write access
	// (for paths that change data on a GET, such as Maximo's
	// /oslc/script/*). Empty: GET, HEAD and OPTIONS need read.
	Level string `json:"level,omitempty"`
}

// GraphQLConfig is one GraphQL endpoint.
type GraphQLConfig struct {
	// Paths of the endpoint (area path syntax), e.g. /mce/api/graphql.
	Paths []string `json:"paths"`
	// Fields maps an area to the root fields that belong to it.
	Fields map[string][]string `json:"fields,omitempty"`
	// Default is the area of root fields not listed; empty refuses them.
	Default string `json:"default,omitempty"`
	// MaxBody is the largest request body read, in bytes. Default 1 MiB;
	// larger bodies get 413 and never reach the backend.
	MaxBody int64 `json:"max_body,omitempty"`
}

// FailedAttemptsConfig limits failed key attempts per client.
type FailedAttemptsConfig struct {
	// Off disables the limit.
	Off bool `json:"off,omitempty"`
	// Limit is the number of failures allowed per window.
	Limit int `json:"limit,omitempty"`
	// Window is the length of the window, from the first failure.
	Window caddy.Duration `json:"window,omitempty"`
}

const (
	defaultFailedLimit  = 100
	defaultFailedWindow = time.Minute
)

// CacheConfig tunes the key cache.
type CacheConfig struct {
	// Size is the most cached keys (positive and negative). Default 100000.
	Size int64 `json:"size,omitempty"`
	// NegativeTTL is how long unknown keys are remembered. Default 30s.
	NegativeTTL caddy.Duration `json:"negative_ttl,omitempty"`
	// RefreshAfter is the age after which a cached key is re-read from the
	// store. Default 1m.
	RefreshAfter caddy.Duration `json:"refresh_after,omitempty"`
	// MaxStale is how much longer a cached key keeps working while the
	// store is unreachable. Default 1m.
	MaxStale caddy.Duration `json:"max_stale,omitempty"`
	// MaxConcurrentLookups caps concurrent store lookups for cache misses.
	// Default 32.
	MaxConcurrentLookups int `json:"max_concurrent_lookups,omitempty"`
	// LookupTimeout bounds each store lookup (503 past it). Default 2s.
	LookupTimeout caddy.Duration `json:"lookup_timeout,omitempty"`
}

// RateConfig is a rate limit: Limit requests per Per.
type RateConfig struct {
	Limit int64          `json:"limit"`
	Per   caddy.Duration `json:"per"`
}

// QuotaConfig is a request budget per UTC day or month.
type QuotaConfig struct {
	Limit  int64  `json:"limit"`
	Period string `json:"period"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "apikey",
		New: func() caddy.Module { return new(App) },
	}
}

// pool holds the resources that must survive config reloads, keyed by
// storage location.
var pool = caddy.NewUsagePool()

// Provision fills defaults, resolves placeholders and takes a reference on
// the pooled resources. It opens nothing: the store is opened in Start, so
// `caddy validate` never writes to it.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	if a.Prefix == "" {
		a.Prefix = keystore.DefaultPrefix
	}
	if a.Storage == nil {
		a.Storage = &StorageConfig{}
	}
	if a.Storage.Type == "" {
		a.Storage.Type = "file"
	}
	switch a.Storage.Type {
	case "file":
		if a.Storage.Path == "" {
			a.Storage.Path = filepath.Join(caddy.AppDataDir(), "keygate", "keys.db")
		}
		p, err := filepath.Abs(repl.ReplaceKnown(a.Storage.Path, ""))
		if err != nil {
			return fmt.Errorf("storage file %q: %w", a.Storage.Path, err)
		}
		a.Storage.Path = p
		a.poolKey = "file:" + p
	case "postgres":
		dsn, err := repl.ReplaceOrErr(a.Storage.DSN, true, true)
		if err != nil {
			return fmt.Errorf("storage postgres: resolving the DSN: %w", err)
		}
		if strings.TrimSpace(dsn) == "" {
			return errors.New("storage postgres: the DSN is empty; set it, e.g. storage postgres {env.KEYGATE_DATABASE_URL}, and make sure the variable is set")
		}
		a.Storage.DSN = dsn
		a.poolKey = "postgres:" + dsn
	default:
		return fmt.Errorf("storage type %q is unknown; use file or postgres", a.Storage.Type)
	}
	defs := make(map[string][]string, len(a.Areas))
	for _, ar := range a.Areas {
		if _, dup := defs[ar.Name]; dup {
			return fmt.Errorf("area %q is defined twice; merge its paths into one area line", ar.Name)
		}
		defs[ar.Name] = ar.Paths
	}
	areas, err := keystore.NewAreas(defs)
	if err != nil {
		return err
	}
	for _, ar := range a.Areas {
		switch ar.Level {
		case "":
		case "write":
			if err := areas.RequireWrite(ar.Name); err != nil {
				return err
			}
		default:
			return fmt.Errorf("area %q: level %q is unknown; the only level is write", ar.Name, ar.Level)
		}
	}
	for _, g := range a.GraphQL {
		ep, err := graphql.NewEndpoint(g.Paths, g.Fields, g.Default)
		if err != nil {
			return err
		}
		if err := areas.AddGraphQL(ep, g.MaxBody); err != nil {
			return err
		}
	}
	a.areas = areas
	a.creds = make(map[string]any, len(a.UpstreamCredentials))
	for user, v := range a.UpstreamCredentials {
		val, err := repl.ReplaceOrErr(v, true, true)
		if err != nil {
			return fmt.Errorf("upstream_credential for %q: %w", user, err)
		}
		if val == "" {
			return fmt.Errorf("upstream_credential for %q is empty; check the placeholder's variable or file", user)
		}
		a.creds[user] = val
	}
	if a.FlushInterval == 0 {
		a.FlushInterval = caddy.Duration(10 * time.Second)
	}
	if err := a.provisionNotify(repl); err != nil {
		return err
	}
	v, _, err := pool.LoadOrNew(a.poolKey, func() (caddy.Destructor, error) {
		lookup, flush := newHistograms()
		return &resources{key: a.poolKey, logger: a.logger, lookupHist: lookup, flushHist: flush}, nil
	})
	if err != nil {
		return err
	}
	a.res = v.(*resources)
	return registerMetrics(ctx.GetMetricsRegistry(), a.res)
}

// Validate checks the configuration without touching the store.
func (a *App) Validate() error {
	if err := keystore.ValidatePrefix(a.Prefix); err != nil {
		return err
	}
	if a.License < 0 {
		return fmt.Errorf("license %d must not be negative (0 means no cap)", a.License)
	}
	if a.MaxKeysPerUser != nil && *a.MaxKeysPerUser < 0 {
		return fmt.Errorf("max_keys_per_user %d must not be negative (0 means no cap)", *a.MaxKeysPerUser)
	}
	if a.Storage.Type == "file" {
		dir := filepath.Dir(a.Storage.Path)
		if err := checkWritableDir(dir); err != nil {
			return fmt.Errorf("storage file %s: %w", a.Storage.Path, err)
		}
	}
	if r := a.DefaultRate; r != nil && (r.Limit <= 0 || r.Per <= 0) {
		return errors.New("default_rate needs a positive limit and duration, e.g. default_rate 100/1m")
	}
	if fa := a.FailedAttempts; fa != nil && !fa.Off && (fa.Limit <= 0 || fa.Window <= 0) {
		return errors.New("failed_attempts needs a positive limit and window, e.g. failed_attempts 100/1m, or off")
	}
	if q := a.DefaultQuota; q != nil && (q.Limit <= 0 || (q.Period != "day" && q.Period != "month")) {
		return errors.New("default_quota needs a positive limit and a period of day or month, e.g. default_quota 10000/month")
	}
	return a.validateNotify()
}

// checkWritableDir reports whether dir exists and is writable, or can be
// created, without creating anything.
func checkWritableDir(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", d)
			}
			if err := unixAccessW(d); err != nil {
				return fmt.Errorf("directory %s is not writable by this process", d)
			}
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) || d == filepath.Dir(d) {
			return err
		}
	}
}

// Start opens the pooled store (once per storage location), starts the
// background loops of the resources, and builds the key service.
func (a *App) Start() error {
	if err := a.res.open(a); err != nil {
		return err
	}
	a.svc = &keystore.Service{
		Store:           a.res.store,
		Prefix:          a.Prefix,
		License:         a.License,
		Areas:           a.areas,
		SelfServiceOnly: a.SelfServiceOnly,
		MaxKeysPerUser:  a.maxKeysPerUser(),
		Invalidator:     a.res.auth,
		Pending:         a.res.meter,
		Logger:          a.logger,
		OnAudit:         []func(context.Context, keystore.AuditEvent){auditLogger(a.logger.Named("audit"))},
	}
	a.startNotify()
	a.gate = &keystore.Gate{
		Auth:        a.res.auth,
		Areas:       a.areas,
		Limiter:     a.res.limiter,
		Meter:       a.res.meter,
		Failures:    a.failures,
		Credentials: a.creds,
	}
	a.admin = admin.New(admin.Config{Service: a.svc, Logger: a.logger})
	a.logger.Info("apikey app started", zap.String("storage", a.Storage.Type), zap.Int("areas", len(a.Areas)))
	return nil
}

// Stop takes this config's settings out of force (a newer config, or on a
// failed reload the running one, takes over). Shared resources stop when
// the last config using them is cleaned up.
func (a *App) Stop() error {
	a.stopNotify()
	a.res.release(a)
	return nil
}

// Cleanup flushes usage counts (a reload loses none) and releases this
// config's reference on the shared resources.
func (a *App) Cleanup() error {
	if a.res == nil {
		return nil
	}
	a.stopNotify() // in case Stop was not called
	a.res.release(a)

	if a.res.opened() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.res.flush(ctx); err != nil {
			a.logger.Error("flushing usage counts on reload", zap.Error(err))
		}
	}
	_, err := pool.Delete(a.poolKey)
	return err
}

func (a *App) defaultRate() *keystore.Rate {
	if a.DefaultRate == nil {
		return nil
	}
	return &keystore.Rate{Limit: a.DefaultRate.Limit, Per: time.Duration(a.DefaultRate.Per)}
}

func (a *App) defaultQuota() *keystore.Quota {
	if a.DefaultQuota == nil {
		return nil
	}
	return &keystore.Quota{Limit: a.DefaultQuota.Limit, Period: a.DefaultQuota.Period}
}

// Interface guards.
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)

// maxKeysPerUser is max_keys_per_user with its default.
func (a *App) maxKeysPerUser() int {
	if a.MaxKeysPerUser == nil {
		return keystore.DefaultMaxKeysPerUser
	}
	return *a.MaxKeysPerUser
}

// auditLogger writes every audit event through Caddy's logging as logger
// apikey.audit, one structured line each, so that `log { include
// apikey.audit … }` can ship them to a file, syslog or a SIEM. Audit
// details never hold a secret or a digest (keystore guarantees it).
func auditLogger(l *zap.Logger) func(context.Context, keystore.AuditEvent) {
	return func(_ context.Context, e keystore.AuditEvent) {
		l.Info("audit",
			zap.Time("at", e.At),
			zap.String("actor", e.Actor),
			zap.String("action", e.Action),
			zap.String("key_id", e.KeyID),
			zap.Any("details", e.Details))
	}
}
