package keystore

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRecentTableServesFreshHitsOnly: a key read from the cache is served
// from the table afterwards (no ristretto read: its entry can be deleted
// from under it), until it is due for a refresh; then the cache's rules
// (stale serving, background refresh) apply again.
var revokedLongAgo = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestRecentTableServesFreshHitsOnly(t *testing.T) {
	t.Parallel()
	a, store, clock, key := newAuthFixture(t)
	ctx := t.Context()
	d := DigestOf(key)
	if _, err := a.Authenticate(ctx, key); err != nil { // miss: store, cache
		t.Fatal(err)
	}
	a.Wait()
	if a.recent.get(&d) != nil {
		t.Fatal("a key filled from the store is in the table before any cache hit")
	}
	if _, err := a.Authenticate(ctx, key); err != nil { // cache hit: table
		t.Fatal(err)
	}
	if a.recent.get(&d) == nil {
		t.Fatal("a cache hit did not fill the table")
	}
	// Proof that the table, not the cache, answers: remove the cache's
	// entry behind the Authenticator's back.
	a.cache.Del(cacheKey(&d))
	a.cache.Wait()
	if _, err := a.Authenticate(ctx, key); err != nil || store.lookups.Load() != 1 {
		t.Fatalf("table hit: err %v, %d store lookups, want nil and 1", err, store.lookups.Load())
	}
	// Past RefreshAfter the table no longer serves it: the cache has
	// nothing, so the store is read.
	clock.Add(time.Minute + time.Second)
	if _, err := a.Authenticate(ctx, key); err != nil || store.lookups.Load() != 2 {
		t.Fatalf("after RefreshAfter: err %v, %d store lookups, want nil and 2", err, store.lookups.Load())
	}
}

// inRecentTable authenticates key twice, which puts it in the cache (the
// store's answer) and then in the table (a cache hit), and returns its digest.
func inRecentTable(t *testing.T, a *Authenticator, key string) Digest {
	t.Helper()
	for range 2 {
		if _, err := a.Authenticate(t.Context(), key); err != nil {
			t.Fatal(err)
		}
		a.Wait()
	}
	d := DigestOf(key)
	if a.recent.get(&d) == nil {
		t.Fatal("two requests did not put the key in the table")
	}
	return d
}

// TestRecentTableStaleEntryRefreshed: a table entry due for a refresh goes
// through the cache, which serves it stale and re-reads it; the refreshed
// entry replaces it on the next hit.
func TestRecentTableStaleEntryRefreshed(t *testing.T) {
	t.Parallel()
	a, store, clock, key := newAuthFixture(t)
	ctx := t.Context()
	d := inRecentTable(t, a, key)
	first := a.recent.get(&d)
	clock.Add(time.Minute + time.Second)
	store.set(d, &Key{ID: "key_1", User: "MXINTADM", Rights: []string{"assets:write"}, Digest: d})
	if _, err := a.Authenticate(ctx, key); err != nil {
		t.Fatal(err)
	}
	if a.Stats().StaleServed != 1 {
		t.Fatalf("stale served: got %d, want 1 (the table must not serve an entry due for a refresh)", a.Stats().StaleServed)
	}
	a.background.Wait() // the refresh
	a.Wait()
	p, err := a.Authenticate(ctx, key)
	if err != nil || p.Rights().Level("assets") != LevelWrite {
		t.Fatalf("after the refresh: got %v, want assets:write", err)
	}
	if now := a.recent.get(&d); now == nil || now == first {
		t.Fatal("the refreshed entry did not replace the old one in the table")
	}
}

func TestRecentTableInvalidate(t *testing.T) {
	t.Parallel()
	a, store, _, key := newAuthFixture(t)
	ctx := t.Context()
	d := inRecentTable(t, a, key)
	store.set(d, &Key{ID: "key_1", User: "MXINTADM", Digest: d, RevokedAt: &revokedLongAgo})
	a.Invalidate(d)
	if a.recent.get(&d) != nil {
		t.Fatal("Invalidate left the key in the table")
	}
	if _, err := a.Authenticate(ctx, key); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("revoked key after Invalidate: got %v, want ErrInvalidKey", err)
	}
}

// TestRecentTableFillAfterInvalidate: a request that read a key from the
// cache before an invalidation and fills the table after it must not leave
// the key there.
func TestRecentTableFillAfterInvalidate(t *testing.T) {
	t.Parallel()
	a, _, clock, key := newAuthFixture(t)
	d := DigestOf(key)
	k := &Key{ID: "key_1", User: "MXINTADM", Rights: []string{"assets:read"}, Digest: d}
	p := newPrincipal(&d, k, UserLimits{}, &a.profiles, clock.Now())
	gen := a.gen.Load() // the request reads gen, then the cache...
	a.Invalidate(d)     // ...the key is revoked meanwhile...
	a.rememberRecent(p, gen)
	if a.recent.get(&d) != nil {
		t.Fatal("a fill that raced an Invalidate left the key in the table")
	}
	// Without an invalidation the same fill stays.
	a.rememberRecent(p, a.gen.Load())
	if a.recent.get(&d) != p {
		t.Fatal("a fill without an invalidation did not stay")
	}
}

// TestRecentTableRevocationUnderLoad: requests hammer a key while it is
// revoked; once Invalidate has returned and the requests under way at that
// moment have finished, no request is served with it.
func TestRecentTableRevocationUnderLoad(t *testing.T) {
	t.Parallel()
	for round := range 20 {
		a, store, _, key := newAuthFixture(t)
		ctx := t.Context()
		d := DigestOf(key)
		var stop atomic.Bool
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for !stop.Load() {
					_, _ = a.Authenticate(ctx, key)
				}
			})
		}
		for a.recent.get(&d) == nil {
			_, _ = a.Authenticate(ctx, key)
		}
		store.set(d, &Key{ID: "key_1", User: "MXINTADM", Digest: d, RevokedAt: &revokedLongAgo})
		a.Invalidate(d)
		stop.Store(true)
		wg.Wait()
		for i := range 100 {
			if p, err := a.Authenticate(ctx, key); err == nil {
				t.Fatalf("round %d, request %d after the revocation: served as %s", round, i, p.ID())
			}
		}
	}
}
