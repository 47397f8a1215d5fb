package keystore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

// ErrInvalidKey is returned for every authentication failure that must look
// the same to the caller: missing, malformed, unknown, revoked, expired.
var ErrInvalidKey = errors.New("invalid api key")

// UserUsageID is the id under which the requests of all keys of user are
// counted, for per-user quotas. Key ids start with "key_", so it never
// names a key.
func UserUsageID(user string) string { return userUsagePrefix + user }

const userUsagePrefix = "user:"

// AuthOptions configures an Authenticator. Zero values mean the defaults.
type AuthOptions struct {
	// Users, if set, gives every key loaded its user's limits (normally
	// the same Store). Nil: no per-user limits.
	Users UserLimitsReader
	// CacheSize is the most keys (positive and negative entries) cached.
	// Default 100,000.
	CacheSize int64
	// NegativeTTL is how long an unknown digest is remembered. Default 30s.
	NegativeTTL time.Duration
	// RefreshAfter is the age after which a cached key is re-read from the
	// store on its next use. Default 1m. Changes made through this process
	// (or announced by a change feed) evict entries at once regardless.
	RefreshAfter time.Duration
	// MaxStale is how much longer than RefreshAfter a cached key keeps
	// working while the store is unreachable. Default 1m. Within it, a
	// stale key is served at once and re-read in the background.
	MaxStale time.Duration
	// LookupTimeout bounds each store lookup, waiting for a lookup slot
	// included. Default 2s. A store that stops answering without refusing
	// (a silent network partition) then costs unknown keys a 503 after
	// LookupTimeout instead of a hang for the whole outage.
	LookupTimeout time.Duration
	// MaxConcurrentLookups caps store lookups for cache misses, so a flood
	// of random well-formed keys cannot overload the store. Default 32.
	MaxConcurrentLookups int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// AuthStats are counters for metrics.
type AuthStats struct {
	Hits, Misses, Lookups, LookupErrors, StaleServed uint64
	LookupNanos                                      uint64
}

// Authenticator resolves presented keys to principals through a ristretto
// cache in front of the Store, with one store lookup per digest at a time
// on misses and negative caching. It is safe for concurrent use and meant to be shared by every
// handler of a process (it outlives config reloads).
type Authenticator struct {
	store DigestLookup
	// users, when set, gives each key its user's limits; both, when the
	// store reads a key and its user's limits together.
	users UserLimitsReader
	both  KeyWithUserLimitsLookup
	opts  AuthOptions // as built; the options in force are in set
	set   atomic.Pointer[authSettings]
	cache *ristretto.Cache[uint64, *Principal]
	// recent holds the keys served most recently, in front of cache.
	recent recentTable
	// profiles interns what cached keys have in common.
	profiles profiles
	// flights are the store lookups under way (flight.go).
	fmu     sync.Mutex
	flights map[flightKey]*flight
	// gen increases on every invalidation; a lookup that started before
	// an invalidation neither fills the cache nor is shared with lookups
	// that start after it, so a racing fill cannot resurrect a revoked key.
	gen atomic.Uint64

	hits, misses, lookups, lookupErrors, staleServed, lookupNanos atomic.Uint64

	// background counts lookups that may outlive their callers (flights,
	// refreshes of stale entries); Close waits for them before closing
	// the cache they write to.
	mu         sync.Mutex
	closed     bool
	background sync.WaitGroup

	// OnLookup, if set, observes every store lookup's duration and error.
	OnLookup func(d time.Duration, err error)
}

// authSettings are the options that Reconfigure can change while the
// Authenticator serves. sem belongs to them: lookups take and give back a
// slot of the semaphore they started with.
type authSettings struct {
	negativeTTL, refreshAfter, maxStale, lookupTimeout time.Duration
	size                                               int64
	sem                                                chan struct{}
}

// NewAuthenticator returns an Authenticator over store.
func NewAuthenticator(store DigestLookup, opts AuthOptions) (*Authenticator, error) {
	opts = opts.withDefaults()
	cache, err := ristretto.NewCache(&ristretto.Config[uint64, *Principal]{
		NumCounters:        opts.CacheSize * 10,
		MaxCost:            opts.CacheSize,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("creating key cache: %w", err)
	}
	a := &Authenticator{store: store, users: opts.Users, opts: opts, cache: cache}
	if b, ok := store.(KeyWithUserLimitsLookup); ok && opts.Users != nil && any(opts.Users) == any(store) {
		a.both = b
	}
	a.set.Store(opts.settings())
	return a, nil
}

// Reconfigure puts new options in force (a config reload). Entries already
// cached keep their age and are judged by the new durations from the next
// request on; a smaller CacheSize evicts down to it as new entries come in.
// A new MaxConcurrentLookups counts the lookups that start from now on;
// those under way finish under the old one. Now is ignored. The
// cache's admission counters stay sized for the CacheSize the Authenticator
// was built with: a CacheSize larger than that works, but its hit ratio may
// be lower than after a restart. Reconfigure then returns a note saying so
// (empty otherwise), for the caller to log.
func (a *Authenticator) Reconfigure(opts AuthOptions) (note string) {
	opts = opts.withDefaults()
	old := a.set.Load()
	s := opts.settings()
	if opts.MaxConcurrentLookups == cap(old.sem) {
		s.sem = old.sem // keep the slots in use
	}
	a.set.Store(s)
	if s.size != old.size {
		a.cache.UpdateMaxCost(s.size)
		if s.size > a.opts.CacheSize {
			return fmt.Sprintf("cache size %d is larger than the %d this process started with: the cache holds up to %d keys at once, but its admission counters keep the starting size until a restart, so the hit ratio may be lower",
				s.size, a.opts.CacheSize, s.size)
		}
	}
	return ""
}

func (o AuthOptions) settings() *authSettings {
	return &authSettings{
		negativeTTL: o.NegativeTTL, refreshAfter: o.RefreshAfter, maxStale: o.MaxStale,
		lookupTimeout: o.LookupTimeout, size: o.CacheSize,
		sem: make(chan struct{}, o.MaxConcurrentLookups),
	}
}

func (opts AuthOptions) withDefaults() AuthOptions {
	if opts.CacheSize <= 0 {
		opts.CacheSize = 100_000
	}
	if opts.NegativeTTL <= 0 {
		opts.NegativeTTL = 30 * time.Second
	}
	if opts.RefreshAfter <= 0 {
		opts.RefreshAfter = time.Minute
	}
	if opts.MaxStale <= 0 {
		opts.MaxStale = time.Minute
	}
	if opts.LookupTimeout <= 0 {
		opts.LookupTimeout = 2 * time.Second
	}
	if opts.MaxConcurrentLookups <= 0 {
		opts.MaxConcurrentLookups = 32
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return opts
}

// cacheKey uses the first 8 bytes of the digest; entries keep the whole
// digest and are compared in full, so a collision is only a miss.
func cacheKey(d *Digest) uint64 { return binary.LittleEndian.Uint64(d[:8]) }

// Authenticate resolves a presented key. It returns ErrInvalidKey for every
// key that must be refused with 401, and an error wrapping ErrUnavailable
// when the store cannot answer and the cache has nothing usable (503: fail
// closed). Callers should have checked PlausibleKey first.
func (a *Authenticator) Authenticate(ctx context.Context, key string) (*Principal, error) {
	d := DigestOf(key)
	return a.AuthenticateDigest(ctx, &d)
}

// AuthenticateDigest is Authenticate for an already computed digest.
func (a *Authenticator) AuthenticateDigest(ctx context.Context, d *Digest) (*Principal, error) {
	return a.authenticateAt(ctx, d, a.opts.Now())
}

// AuthenticateAt is Authenticate with the caller's clock reading.
func (a *Authenticator) AuthenticateAt(ctx context.Context, key string, now time.Time) (*Principal, error) {
	d := DigestOf(key)
	return a.authenticateAt(ctx, &d, now)
}

func (a *Authenticator) authenticateAt(ctx context.Context, d *Digest, now time.Time) (*Principal, error) {
	set := a.set.Load()
	if p := a.recent.get(d); p != nil && time.Duration(now.UnixNano()-p.loadedAt) <= set.refreshAfter {
		a.hits.Add(1)
		return a.check(p, now)
	}
	gen := a.gen.Load() // before the cache read: see rememberRecent
	e, ok := a.cache.Get(cacheKey(d))
	if ok && e.matches(d) {
		age := time.Duration(now.UnixNano() - e.loadedAt)
		if e.profile == nil {
			a.hits.Add(1)
			return nil, ErrInvalidKey
		}
		if age <= set.refreshAfter {
			a.hits.Add(1)
			a.rememberRecent(e, gen)
			return a.check(e, now)
		}
		if age <= set.refreshAfter+set.maxStale {
			// Stale but usable: answer now and re-read in the
			// background, so a slow or silent store never holds up a
			// key it could be served from cache. The entry keeps
			// serving until MaxStale if the refresh fails.
			a.staleServed.Add(1)
			if e.refreshing.CompareAndSwap(false, true) {
				if a.enter() {
					go a.refresh(e, *d)
				} else {
					e.refreshing.Store(false)
				}
			}
			return a.check(e, now)
		}
		// Past MaxStale only the store's answer will do.
		p, err := a.load(ctx, d)
		if err != nil {
			return nil, err
		}
		return a.check(p, now)
	}
	a.misses.Add(1)
	// A client already gone gets no lookup; checking here also keeps the
	// answer from depending on which of two ready channels select picks.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("before a key lookup: %w", errors.Join(ErrUnavailable, err))
	}
	p, err := a.load(ctx, d)
	if err != nil {
		return nil, err
	}
	return a.check(p, now)
}

// refresh re-reads a stale entry. A failure (counted by load) leaves the
// entry as it is, to be retried by a later request.
func (a *Authenticator) refresh(e *Principal, d Digest) {
	defer a.background.Done()
	defer e.refreshing.Store(false)
	a.load(context.Background(), &d)
}

// check admits an entry whose digest is the presented one.
func (a *Authenticator) check(p *Principal, now time.Time) (*Principal, error) {
	if p == nil || !p.accepts(now) {
		return nil, ErrInvalidKey
	}
	return p, nil
}

// Invalidate evicts the given digests (positive and negative entries) and
// makes in-flight lookups discard their results. It implements Invalidator.
func (a *Authenticator) Invalidate(digests ...Digest) {
	a.gen.Add(1) // first: see rememberRecent
	for i := range digests {
		a.cache.Del(cacheKey(&digests[i]))
		a.recent.forget(&digests[i])
	}
}

// Wait blocks until pending cache writes are applied (tests).
func (a *Authenticator) Wait() { a.cache.Wait() }

// Stats returns a snapshot of the counters.
func (a *Authenticator) Stats() AuthStats {
	return AuthStats{
		Hits: a.hits.Load(), Misses: a.misses.Load(), Lookups: a.lookups.Load(),
		LookupErrors: a.lookupErrors.Load(), StaleServed: a.staleServed.Load(),
		LookupNanos: a.lookupNanos.Load(),
	}
}

// enter registers background work unless the Authenticator is closed.
func (a *Authenticator) enter() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.background.Add(1)
	return true
}

// Close waits for lookups still under way (each ends by LookupTimeout) and
// releases the cache.
func (a *Authenticator) Close() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.background.Wait()
	a.recent.clear()
	a.cache.Close()
}

var _ Invalidator = (*Authenticator)(nil)
