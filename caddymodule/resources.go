package caddymodule

import (
	"context"
	"fmt"
	"sync"
	"time"

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

	flushEvery time.Duration      // interval of the running flush loop
	stopFlush  context.CancelFunc // stops that loop alone

	limiter *keystore.Limiter
	meter   *keystore.Meter
	results resultCounters

	listener *postgres.Listener       // nil unless the store is Postgres
	failures *keystore.FailureLimiter // nil: failed attempts not limited

	lookupHist, flushHist prometheus.Histogram
}

func (r *resources) count(res result) { r.results.add(res) }

func (r *resources) opened() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.isOpen
}

// open opens the store and builds the cache on first use. Later configs
// (reloads) reuse them; options that shape them (storage, cache size) take
// effect on restart, except flush_interval, which follows the latest config.
func (r *resources) open(a *App) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.isOpen {
		r.runFlush(time.Duration(a.FlushInterval))
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	store, err := openStore(ctx, a)
	if err != nil {
		cancel()
		return err
	}
	opts := keystore.AuthOptions{}
	if c := a.Cache; c != nil {
		opts = keystore.AuthOptions{
			CacheSize:            c.Size,
			NegativeTTL:          time.Duration(c.NegativeTTL),
			RefreshAfter:         time.Duration(c.RefreshAfter),
			MaxStale:             time.Duration(c.MaxStale),
			MaxConcurrentLookups: c.MaxConcurrentLookups,
		}
	}
	auth, err := keystore.NewAuthenticator(store, opts)
	if err != nil {
		cancel()
		store.Close()
		return err
	}
	auth.OnLookup = observe(r.lookupHist)
	meter := keystore.NewMeter(store, keystore.MeterOptions{Logger: r.logger, OnFlush: observe(r.flushHist)})
	if fa := a.FailedAttempts; fa == nil || !fa.Off {
		limit, window := defaultFailedLimit, defaultFailedWindow
		if fa != nil {
			limit, window = fa.Limit, time.Duration(fa.Window)
		}
		r.failures = keystore.NewFailureLimiter(limit, window, 0)
	}
	// No default limits here: they belong to each config, and handlers
	// pass theirs to AdmitDefaults, so a reload can change them.
	limiter := keystore.NewLimiter(keystore.LimiterOptions{
		Store:  store,
		Meter:  meter,
		Logger: r.logger,
	})
	r.done.Add(1)
	go func() { defer r.done.Done(); limiter.Run(ctx, 0) }()
	if r.failures != nil {
		r.done.Add(1)
		go func() { defer r.done.Done(); sweepEvery(ctx, time.Minute, r.failures.Sweep) }()
	}
	if pg, ok := store.(*postgres.Store); ok {
		// The change feed evicts keys changed by other instances.
		r.listener = pg.Listen(ctx, 0, func(digests []keystore.Digest) { auth.Invalidate(digests...) })
	}
	r.store, r.auth, r.meter, r.limiter, r.ctx, r.cancel = store, auth, meter, limiter, ctx, cancel
	r.runFlush(time.Duration(a.FlushInterval))
	r.isOpen = true
	return nil
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
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := r.meter.Close(ctx)
	if err != nil {
		r.logger.Error("flushing usage counts at shutdown", zap.Error(err))
	}
	r.limiter.Wait()
	r.auth.Close()
	if cerr := r.store.Close(); cerr != nil {
		return fmt.Errorf("closing key store: %w", cerr)
	}
	r.isOpen, r.stopFlush = false, nil
	return err
}
