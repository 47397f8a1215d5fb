package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/bolt"
	"github.com/keygate/keygate/keystore/postgres"
)

// resources are the parts of the apikey app that outlive config reloads:
// the store handle, the key cache and the usage meter. They live in the
// UsagePool keyed by storage location and are opened by the first app that
// starts; Destruct (when the last config using them is cleaned up) flushes
// the meter and closes everything.
type resources struct {
	key    string
	logger *zap.Logger

	mu     sync.Mutex
	isOpen bool
	store  keystore.Store
	auth   *keystore.Authenticator
	ctx    context.Context    // of the background loops
	cancel context.CancelFunc // stops the background loops
	done   sync.WaitGroup

	flushEvery   time.Duration      // interval of the running flush loop
	cacheInForce CacheConfig        // cache options in force
	stopFlush    context.CancelFunc // stops that loop alone

	// live are the configs started and not yet stopped, oldest first. The
	// newest one's settings are in force: a reload's new config starts
	// before the old one stops, and a config whose start fails is stopped
	// again (Caddy stops the apps it started), so its settings never
	// outlive the failed reload.
	live []*App

	limiter  *keystore.Limiter
	meter    *keystore.Meter
	outcomes outcomeCounters // requests per Gate outcome, for metrics
	webhooks webhookCounters // webhook deliveries, for metrics

	listener keystore.FeedWatcher // nil unless the store has a change feed
	// failures holds one failed-attempt limiter per setting in use by a
	// live config, so a reload that keeps the setting keeps the counts,
	// and a failed reload leaves the running config's limiter untouched.
	failures       map[failedSetting]*keystore.FailureLimiter
	blockedRetired uint64 // blocks counted by limiters no config uses any more

	lookupHist, flushHist prometheus.Histogram

	// journal takes the usage counts the store cannot take at shutdown.
	journal *keystore.Journal
	// finalFlush is how long Destruct keeps trying the store before it
	// journals the counts; zero means 15s.
	finalFlush time.Duration
}

func (r *resources) opened() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.isOpen
}

// open opens the store and builds the cache on first use, and puts a's
// settings in force. Later configs (reloads) reuse the store and cache.
func (r *resources) open(a *App) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.isOpen {
		r.live = append(r.live, a)
		a.failures = r.failuresFor(a)
		r.applyNewest()
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	store, err := openStore(ctx, a)
	if err != nil {
		cancel()
		return err
	}
	opts := a.authOptions()
	opts.Users = store // per-user limits
	auth, err := keystore.NewAuthenticator(store, opts)
	if err != nil {
		cancel()
		store.Close()
		return err
	}
	auth.OnLookup = observe(r.lookupHist)
	r.cacheInForce = a.cacheConfig()
	r.journal = &keystore.Journal{Path: journalPath(a)}
	if n, err := r.journal.Replay(ctx, store); err != nil {
		cancel()
		store.Close()
		return fmt.Errorf("usage counts saved at the last shutdown could not be added to the store: %w", err)
	} else if n > 0 {
		r.logger.Info("usage counts saved at the last shutdown added to the store", zap.Int("batches", n), zap.String("journal", r.journal.Path))
	}
	meter := keystore.NewMeter(store, keystore.MeterOptions{Logger: r.logger, OnFlush: observe(r.flushHist)})
	// No default limits here: they belong to each config, and handlers
	// pass theirs to AdmitDefaults, so a reload can change them.
	limiter := keystore.NewLimiter(keystore.LimiterOptions{
		Store:  store,
		Meter:  meter,
		Logger: r.logger,
	})
	r.done.Add(1)
	go func() { defer r.done.Done(); limiter.Run(ctx, 0) }()
	r.done.Add(1)
	go func() { defer r.done.Done(); sweepEvery(ctx, time.Minute, r.sweepFailures) }()
	if feed, ok := store.(keystore.ChangeFeed); ok {
		// The change feed evicts keys changed by other instances.
		r.listener = feed.WatchChanges(ctx, func(digests []keystore.Digest) { auth.Invalidate(digests...) })
	}
	r.store, r.auth, r.meter, r.limiter, r.ctx, r.cancel = store, auth, meter, limiter, ctx, cancel
	r.isOpen = true
	r.live = append(r.live, a)
	a.failures = r.failuresFor(a)
	r.applyNewest()
	return nil
}

// release takes a stopped config's settings out of force; the newest
// config still live takes over (on a failed reload: the running one).
func (r *resources) release(a *App) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, l := range r.live {
		if l == a {
			r.live = append(r.live[:i], r.live[i+1:]...)
			break
		}
	}
	for set, f := range r.failures {
		if !slices.ContainsFunc(r.live, func(l *App) bool { return l.failedSetting() == set }) {
			r.blockedRetired += f.BlockedTotal()
			delete(r.failures, set)
		}
	}
	if r.isOpen && len(r.live) > 0 {
		r.applyNewest()
	}
}

// newest returns the config whose settings are in force, nil if none is
// running.
func (r *resources) newest() *App {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.live) == 0 {
		return nil
	}
	return r.live[len(r.live)-1]
}

// failedSetting is a config's failed_attempts setting.
type failedSetting struct {
	limit  int
	window time.Duration
}

func (a *App) failedSetting() failedSetting {
	fa := a.FailedAttempts
	switch {
	case fa == nil:
		return failedSetting{defaultFailedLimit, defaultFailedWindow}
	case fa.Off:
		return failedSetting{}
	}
	return failedSetting{fa.Limit, time.Duration(fa.Window)}
}

// failuresFor returns the failed-attempt limiter of a's setting (nil when
// it is off), shared with live configs of the same setting. r.mu must be
// held.
func (r *resources) failuresFor(a *App) *keystore.FailureLimiter {
	set := a.failedSetting()
	if set.limit == 0 {
		return nil
	}
	if f, ok := r.failures[set]; ok {
		return f
	}
	if r.failures == nil {
		r.failures = map[failedSetting]*keystore.FailureLimiter{}
	}
	f := keystore.NewFailureLimiter(set.limit, set.window, 0)
	r.failures[set] = f
	return f
}

func (r *resources) sweepFailures(now time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, f := range r.failures {
		n += f.Sweep(now)
	}
	return n
}

// blockedTotal counts requests refused for too many failed attempts, by
// every limiter since start.
func (r *resources) blockedTotal() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.blockedRetired
	for _, f := range r.failures {
		n += f.BlockedTotal()
	}
	return n
}

// cacheConfig is a config's cache block, zero when it has none.
func (a *App) cacheConfig() CacheConfig {
	if a.Cache == nil {
		return CacheConfig{}
	}
	return *a.Cache
}

// authOptions are a config's cache options.
func (a *App) authOptions() keystore.AuthOptions {
	c := a.cacheConfig()
	return keystore.AuthOptions{
		CacheSize:            c.Size,
		NegativeTTL:          time.Duration(c.NegativeTTL),
		RefreshAfter:         time.Duration(c.RefreshAfter),
		MaxStale:             time.Duration(c.MaxStale),
		MaxConcurrentLookups: c.MaxConcurrentLookups,
		LookupTimeout:        time.Duration(c.LookupTimeout),
	}
}

// applyNewest puts the settings of the newest live config in force: its
// flush interval and cache options (its failed-attempt limiter is its own,
// see failuresFor). r.mu must be held.
func (r *resources) applyNewest() {
	a := r.live[len(r.live)-1]
	r.runFlush(time.Duration(a.FlushInterval))
	if c := a.cacheConfig(); c != r.cacheInForce {
		r.cacheInForce = c
		if note := r.auth.Reconfigure(a.authOptions()); note != "" {
			r.logger.Warn("reload: " + note)
		}
	}
}

// runFlush runs the meter's periodic flush every interval, replacing a loop
// with another interval (a reload changed flush_interval). A flush the old
// loop had under way fails and is resent by the next one, without double
// counting. r.mu must be held.
func (r *resources) runFlush(every time.Duration) {
	if r.stopFlush != nil {
		if every == r.flushEvery {
			return
		}
		r.stopFlush()
	}
	ctx, cancel := context.WithCancel(r.ctx)
	r.flushEvery, r.stopFlush = every, cancel
	r.done.Add(1)
	go func() { defer r.done.Done(); r.meter.Run(ctx, every) }()
}

// sweepEvery calls sweep on every tick until ctx ends.
func sweepEvery(ctx context.Context, every time.Duration, sweep func(time.Time) int) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			sweep(now)
		}
	}
}

func openStore(ctx context.Context, a *App) (keystore.Store, error) {
	switch a.Storage.Type {
	case "file":
		s, err := bolt.Open(a.Storage.Path, bolt.Options{})
		if err != nil {
			return nil, fmt.Errorf("opening key store: %w", err)
		}
		return s, nil
	case "postgres":
		s, err := postgres.Open(ctx, a.Storage.DSN, postgres.Options{
			MaxConns:   int32(a.Storage.MaxConns),
			ListenPoll: time.Duration(a.Storage.PollInterval),
			Logger:     a.logger.Named("postgres"),
		})
		if err != nil {
			return nil, fmt.Errorf("opening postgres key store: %w", err)
		}
		// Migrations run at start, never from caddy validate; a database
		// that cannot be reached is a clear error, not a hang.
		mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := s.Migrate(mctx); err != nil {
			s.Close()
			return nil, fmt.Errorf("postgres key store: migrating the schema (is the database reachable and the DSN right?): %w", err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("storage type %q is not supported", a.Storage.Type)
}

// journalPath is where usage counts go when the store cannot take them at
// shutdown: beside the bolt file, or in Caddy's data directory for a
// database (one file per DSN).
func journalPath(a *App) string {
	if a.Storage.Type == "file" {
		return a.Storage.Path + ".usage-journal"
	}
	sum := sha256.Sum256([]byte(a.Storage.DSN))
	return filepath.Join(caddy.AppDataDir(), "keygate", "usage-journal-"+hex.EncodeToString(sum[:8]))
}

// countsLost is set when usage counts could be saved nowhere; the process
// then exits non-zero, so a service manager and an operator notice.
var countsLost atomic.Bool

func init() {
	caddy.OnExit(func(context.Context) {
		if countsLost.Load() {
			fmt.Fprintln(os.Stderr, "keygate: usage counts were lost at shutdown: the key store and the local usage journal both failed (see the log)")
			os.Exit(1)
		}
	})
}

// flush writes pending usage counts to the store.
func (r *resources) flush(ctx context.Context) error {
	return r.meter.Flush(ctx)
}

// Destruct flushes pending usage and closes the store. It runs when the last
// config referencing these resources is cleaned up (shutdown, or a reload to
// another storage location).
func (r *resources) Destruct() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.isOpen {
		return nil
	}
	r.cancel()
	r.done.Wait()
	wait := r.finalFlush
	if wait <= 0 {
		wait = 15 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	err := r.meter.Close(ctx)
	if err != nil {
		// The store cannot take them: keep them locally, for the next start.
		jerr := r.meter.FlushTo(context.Background(), r.journal)
		if jerr == nil {
			r.logger.Warn("the key store could not take the last usage counts; they were saved locally and are added at the next start",
				zap.String("journal", r.journal.Path), zap.Error(err))
			err = nil
		} else {
			r.logger.Error("usage counts lost: neither the key store nor the local journal could take them",
				zap.String("journal", r.journal.Path), zap.Error(err), zap.NamedError("journal_error", jerr))
			countsLost.Store(true)
			err = errors.Join(err, jerr)
		}
	}
	r.limiter.Wait()
	r.auth.Close()
	if cerr := r.store.Close(); cerr != nil {
		return fmt.Errorf("closing key store: %w", cerr)
	}
	r.isOpen, r.stopFlush = false, nil
	return err
}
