package keystore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lookupStore is a Store whose LookupDigest is served from a map, counted,
// and can be made to fail. Only LookupDigest is used by the Authenticator.
type lookupStore struct {
	Store
	mu      sync.Mutex
	keys    map[Digest]*Key
	down    bool
	lookups atomic.Int64
}

func (s *lookupStore) LookupDigest(_ context.Context, d Digest) (*Key, error) {
	s.lookups.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return nil, errors.Join(ErrUnavailable, errors.New("connection refused"))
	}
	if k, ok := s.keys[d]; ok {
		return k.Clone(), nil
	}
	return nil, ErrNotFound
}

func (s *lookupStore) set(d Digest, k *Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[d] = k
}

func (s *lookupStore) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newAuthFixture(t *testing.T) (*Authenticator, *lookupStore, *testClock, string) {
	t.Helper()
	clock := &testClock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	store := &lookupStore{keys: map[Digest]*Key{}}
	a, err := NewAuthenticator(store, AuthOptions{Now: clock.Now, RefreshAfter: time.Minute, MaxStale: time.Minute, NegativeTTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	key, _ := GenerateKey("kg")
	store.set(DigestOf(key), &Key{ID: "key_1", User: "MXINTADM", Rights: []string{"assets:read"}, Digest: DigestOf(key)})
	return a, store, clock, key
}

func TestAuthenticatorCachesHitsAndMisses(t *testing.T) {
	t.Parallel()
	a, store, _, key := newAuthFixture(t)
	ctx := t.Context()
	p, err := a.Authenticate(ctx, key)
	if err != nil || p.ID() != "key_1" || p.Rights().Level("assets") != LevelRead || p.UserValue() != "MXINTADM" {
		t.Fatalf("got %+v %v, want key_1 with assets:read", p, err)
	}
	a.Wait()
	for i := 0; i < 10; i++ {
		if _, err := a.Authenticate(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	if got := store.lookups.Load(); got != 1 {
		t.Fatalf("store lookups for a cached key: got %d, want 1", got)
	}
	unknown, _ := GenerateKey("kg")
	for i := 0; i < 5; i++ {
		if _, err := a.Authenticate(ctx, unknown); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("unknown key: got %v, want ErrInvalidKey", err)
		}
		a.Wait()
	}
	if got := store.lookups.Load(); got != 2 {
		t.Fatalf("store lookups after 5 tries of one unknown key: got %d, want 2 (negative cache)", got)
	}
	st := a.Stats()
	if st.Hits != 14 || st.Misses != 2 {
		t.Fatalf("stats: got %+v, want 14 hits and 2 misses", st)
	}
}

func TestAuthenticatorInvalidate(t *testing.T) {
	t.Parallel()
	a, store, clock, key := newAuthFixture(t)
	ctx := t.Context()
	if _, err := a.Authenticate(ctx, key); err != nil {
		t.Fatal(err)
	}
	a.Wait()
	revoked := clock.Now()
	store.set(DigestOf(key), &Key{ID: "key_1", Digest: DigestOf(key), RevokedAt: &revoked, Rights: []string{"assets:read"}})
	// Still cached: the store change alone is not seen...
	if _, err := a.Authenticate(ctx, key); err != nil {
		t.Fatalf("before invalidation: got %v, want the cached key", err)
	}
	// ...until it is invalidated.
	a.Invalidate(DigestOf(key))
	a.Wait()
	if _, err := a.Authenticate(ctx, key); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("after invalidation: got %v, want ErrInvalidKey", err)
	}

	// A negative entry is dropped by invalidation too (a key imported
	// after someone tried it).
	other, _ := GenerateKey("kg")
	if _, err := a.Authenticate(ctx, other); !errors.Is(err, ErrInvalidKey) {
		t.Fatal(err)
	}
	a.Wait()
	store.set(DigestOf(other), &Key{ID: "key_2", Digest: DigestOf(other), Rights: []string{"assets:read"}})
	a.Invalidate(DigestOf(other))
	a.Wait()
	if p, err := a.Authenticate(ctx, other); err != nil || p.ID() != "key_2" {
		t.Fatalf("after import: got %v %v, want key_2", p, err)
	}
}

func TestAuthenticatorExpiryAndGrace(t *testing.T) {
	t.Parallel()
	a, store, clock, key := newAuthFixture(t)
	ctx := t.Context()
	newKey, _ := GenerateKey("kg")
	grace := clock.Now().Add(10 * time.Second)
	expires := clock.Now().Add(20 * time.Second)
	rotated := &Key{ID: "key_1", Digest: DigestOf(newKey), PrevDigest: DigestOf(key), GraceUntil: &grace, ExpiresAt: &expires, Rights: []string{"assets:read"}}
	store.set(DigestOf(key), rotated)
	store.set(DigestOf(newKey), rotated)
	for _, k := range []string{key, newKey} {
		if _, err := a.Authenticate(ctx, k); err != nil {
			t.Fatalf("during grace: %v", err)
		}
	}
	a.Wait()
	clock.Add(10 * time.Second) // grace over: cached entry, judged at now
	if _, err := a.Authenticate(ctx, key); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("old secret after grace: got %v, want ErrInvalidKey", err)
	}
	if _, err := a.Authenticate(ctx, newKey); err != nil {
		t.Fatalf("new secret after grace: %v", err)
	}
	clock.Add(10 * time.Second) // expired
	if _, err := a.Authenticate(ctx, newKey); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("expired key: got %v, want ErrInvalidKey", err)
	}
}

func TestAuthenticatorStoreDown(t *testing.T) {
	t.Parallel()
	a, store, clock, key := newAuthFixture(t)
	ctx := t.Context()
	if _, err := a.Authenticate(ctx, key); err != nil {
		t.Fatal(err)
	}
	a.Wait()
	store.setDown(true)
	unknown, _ := GenerateKey("kg")
	if _, err := a.Authenticate(ctx, unknown); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("unknown key, store down: got %v, want ErrUnavailable (503, never 401 or 200)", err)
	}
	// Fresh cached key: served.
	if _, err := a.Authenticate(ctx, key); err != nil {
		t.Fatalf("cached key, store down: %v", err)
	}
	// Stale but within max_stale: served from cache, counted.
	clock.Add(90 * time.Second)
	if _, err := a.Authenticate(ctx, key); err != nil {
		t.Fatalf("stale cached key within max_stale: %v", err)
	}
	if a.Stats().StaleServed != 1 {
		t.Fatalf("StaleServed: got %d, want 1", a.Stats().StaleServed)
	}
	// Beyond refresh_after + max_stale: fail closed.
	clock.Add(31 * time.Second)
	if _, err := a.Authenticate(ctx, key); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("cached key beyond max_stale: got %v, want ErrUnavailable", err)
	}
	// The store returns: the key works again.
	store.setDown(false)
	if _, err := a.Authenticate(ctx, key); err != nil {
		t.Fatalf("store back: %v", err)
	}
}

// TestAuthenticatorReconfigure: a reload's cache options are in force from
// the next request on, without a new cache.
func TestAuthenticatorReconfigure(t *testing.T) {
	t.Parallel()
	a, store, clock, key := newAuthFixture(t) // refresh_after 1m, max_stale 1m
	ctx := t.Context()
	if _, err := a.Authenticate(ctx, key); err != nil {
		t.Fatal(err)
	}
	a.Wait()

	// Longer refresh_after and max_stale: a key 3m old is still served
	// from the cache with the store down (it would fail at 1m + 1m).
	if note := a.Reconfigure(AuthOptions{RefreshAfter: 10 * time.Minute, MaxStale: time.Minute}); note != "" {
		t.Errorf("same cache size: got note %q, want none", note)
	}
	store.setDown(true)
	clock.Add(3 * time.Minute)
	if _, err := a.Authenticate(ctx, key); err != nil {
		t.Fatalf("3m old, refresh_after 10m: got %v, want the cached key", err)
	}
	if got := store.lookups.Load(); got != 1 {
		t.Errorf("store lookups: got %d, want 1 (still fresh under the new refresh_after)", got)
	}
	// Back to short durations: the same entry is now past max_stale.
	a.Reconfigure(AuthOptions{RefreshAfter: time.Minute, MaxStale: time.Minute})
	if _, err := a.Authenticate(ctx, key); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("3m old, refresh_after 1m + max_stale 1m, store down: got %v, want ErrUnavailable", err)
	}
	store.setDown(false)

	// negative_ttl: an unknown key is remembered for the new duration.
	a.Reconfigure(AuthOptions{NegativeTTL: time.Hour})
	unknown, _ := GenerateKey("kg")
	if _, err := a.Authenticate(ctx, unknown); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("unknown key: got %v, want ErrInvalidKey", err)
	}
	a.Wait()
	if s := a.set.Load(); s.negativeTTL != time.Hour {
		t.Errorf("negative TTL in force: got %v, want 1h", s.negativeTTL)
	}

	// Cache size: smaller is applied at once, larger too, with a note
	// (the admission counters keep their first size).
	if note := a.Reconfigure(AuthOptions{CacheSize: 10}); note != "" || a.cache.MaxCost() != 10 {
		t.Errorf("size 10: got note %q and capacity %d, want no note and 10", note, a.cache.MaxCost())
	}
	if note := a.Reconfigure(AuthOptions{CacheSize: 200_000}); note == "" || a.cache.MaxCost() != 200_000 {
		t.Errorf("size 200000 (started with 100000): got note %q and capacity %d, want a note and 200000", note, a.cache.MaxCost())
	}

	// max_concurrent_lookups and lookup timeout.
	a.Reconfigure(AuthOptions{MaxConcurrentLookups: 3, LookupTimeout: 5 * time.Second})
	if s := a.set.Load(); cap(s.sem) != 3 || s.lookupTimeout != 5*time.Second {
		t.Errorf("lookups in force: got %d slots and timeout %v, want 3 and 5s", cap(s.sem), s.lookupTimeout)
	}
}
