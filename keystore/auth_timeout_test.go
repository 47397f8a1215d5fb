package keystore

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// hangingStore is a Store whose LookupDigest blocks until release is closed
// (a silent network partition), optionally ignoring its context as a
// driver stuck in a write would. Each call announces itself on entered.
type hangingStore struct {
	Store
	keys      map[Digest]*Key
	ignoreCtx bool
	entered   chan context.Context
	release   chan struct{}

	mu      sync.Mutex
	hanging bool
}

// UserLimits answers at once: the tests hang the digest lookup.
func (s *hangingStore) UserLimits(context.Context, string) (UserLimits, error) {
	return UserLimits{}, nil
}

func newHangingStore() *hangingStore {
	return &hangingStore{keys: map[Digest]*Key{}, entered: make(chan context.Context, 16), release: make(chan struct{})}
}

func (s *hangingStore) hang(on bool) { s.mu.Lock(); s.hanging = on; s.mu.Unlock() }

func (s *hangingStore) LookupDigest(ctx context.Context, d Digest) (*Key, error) {
	s.mu.Lock()
	hanging := s.hanging
	s.mu.Unlock()
	if hanging {
		s.entered <- ctx
		if s.ignoreCtx {
			<-s.release
		} else {
			select {
			case <-s.release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.keys[d]; ok {
		return k.Clone(), nil
	}
	return nil, ErrNotFound
}

func newHangingFixture(t *testing.T, opts AuthOptions) (*Authenticator, *hangingStore, *testClock, string) {
	t.Helper()
	clock := &testClock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	store := newHangingStore()
	opts.Now, opts.RefreshAfter, opts.MaxStale = clock.Now, time.Minute, time.Minute
	a, err := NewAuthenticator(store, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Registered first so it runs last: the hung calls end before Close
	// waits for background refreshes.
	t.Cleanup(a.Close)
	t.Cleanup(func() {
		select {
		case <-store.release:
		default:
			close(store.release)
		}
	})
	key, _ := GenerateKey("kg")
	store.keys[DigestOf(key)] = &Key{ID: "key_1", Name: "before", User: "MXINTADM", Rights: []string{"assets:read"}, Digest: DigestOf(key)}
	return a, store, clock, key
}

func TestAuthenticatorLookupTimeout(t *testing.T) {
	t.Parallel()
	for _, ignore := range []bool{false, true} {
		a, store, _, _ := newHangingFixture(t, AuthOptions{LookupTimeout: 20 * time.Millisecond})
		store.ignoreCtx = ignore
		store.hang(true)
		unknown, _ := GenerateKey("kg")
		_, err := a.Authenticate(context.Background(), unknown)
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("unknown key, store silent (store ignores ctx: %v): got %v, want ErrUnavailable after the deadline", ignore, err)
		}
		if st := a.Stats(); st.LookupErrors != 1 {
			t.Fatalf("LookupErrors: got %d, want 1", st.LookupErrors)
		}
	}
}

func TestAuthenticatorLookupSlotTimeout(t *testing.T) {
	t.Parallel()
	a, store, _, _ := newHangingFixture(t, AuthOptions{LookupTimeout: time.Hour, MaxConcurrentLookups: 1})
	store.hang(true)
	first, _ := GenerateKey("kg")
	go a.Authenticate(context.Background(), first)
	<-store.entered // the only slot is taken by a hung lookup
	a.Reconfigure(AuthOptions{LookupTimeout: 20 * time.Millisecond, MaxConcurrentLookups: 1})
	second, _ := GenerateKey("kg")
	if _, err := a.Authenticate(context.Background(), second); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting for a slot held by a hung lookup: got %v, want ErrUnavailable after the deadline", err)
	}
}

func TestAuthenticatorStaleServedWhileStoreHangs(t *testing.T) {
	t.Parallel()
	// A deadline of an hour: were the stale key's refresh synchronous, the
	// test would hang rather than pass.
	a, store, clock, key := newHangingFixture(t, AuthOptions{LookupTimeout: time.Hour})
	ctx := t.Context()
	if _, err := a.Authenticate(ctx, key); err != nil {
		t.Fatal(err)
	}
	a.Wait()
	store.hang(true)
	clock.Add(90 * time.Second) // stale, within max_stale
	for range 3 {
		p, err := a.Authenticate(ctx, key)
		if err != nil || p.Name() != "before" {
			t.Fatalf("stale key, store silent: got %v %v, want the cached key at once", p, err)
		}
	}
	<-store.entered // one background refresh, not one per request
	select {
	case <-store.entered:
		t.Fatal("a second refresh started while the first one runs")
	default:
	}
	if st := a.Stats(); st.StaleServed != 3 || st.Lookups != 1 {
		t.Fatalf("stats: got %+v, want 3 stale served and 1 lookup so far", st)
	}
	// The store answers: the refresh replaces the entry.
	store.mu.Lock()
	store.keys[DigestOf(key)].Name = "after"
	store.mu.Unlock()
	close(store.release)
	a.background.Wait()
	a.Wait()
	if p, err := a.Authenticate(ctx, key); err != nil || p.Name() != "after" {
		t.Fatalf("after the refresh: got %v %v, want the re-read key", p, err)
	}
}

func TestAuthenticatorPastMaxStaleTimesOut(t *testing.T) {
	t.Parallel()
	a, store, clock, key := newHangingFixture(t, AuthOptions{LookupTimeout: 20 * time.Millisecond})
	ctx := t.Context()
	if _, err := a.Authenticate(ctx, key); err != nil {
		t.Fatal(err)
	}
	a.Wait()
	store.hang(true)
	clock.Add(121 * time.Second) // beyond refresh_after + max_stale
	if _, err := a.Authenticate(ctx, key); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("key past max_stale, store silent: got %v, want ErrUnavailable after the deadline", err)
	}
}

// TestAuthenticatorCallerCancelKeepsSharedLookup: one client giving up does
// not cancel the lookup other clients of the same key wait for.
func TestAuthenticatorCallerCancelKeepsSharedLookup(t *testing.T) {
	t.Parallel()
	a, store, _, key := newHangingFixture(t, AuthOptions{LookupTimeout: time.Hour})
	store.hang(true)
	cctx, cancel := context.WithCancel(context.Background())
	errA := make(chan error, 1)
	go func() { _, err := a.Authenticate(cctx, key); errA <- err }()
	lookupCtx := <-store.entered
	cancel()
	if err := <-errA; !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("cancelled caller: got %v, want ErrUnavailable wrapping context.Canceled", err)
	}
	if err := lookupCtx.Err(); err != nil {
		t.Fatalf("the shared lookup's context ended with its first caller: %v", err)
	}
	close(store.release)
	if p, err := a.Authenticate(context.Background(), key); err != nil || p.ID() != "key_1" {
		t.Fatalf("another caller: got %v %v, want key_1", p, err)
	}
}

// TestAuthenticatorHitDoesNotAllocate: the lookup machinery (a flight
// that may outlive its caller) must not make the hit path's digest escape.
func TestAuthenticatorHitDoesNotAllocate(t *testing.T) {
	a, _, clock, key := newHangingFixture(t, AuthOptions{})
	ctx := context.Background()
	if _, err := a.Authenticate(ctx, key); err != nil {
		t.Fatal(err)
	}
	a.Wait()
	now := clock.Now()
	if n := testing.AllocsPerRun(100, func() { a.AuthenticateAt(ctx, key, now) }); n != 0 {
		t.Fatalf("%v allocations per cache hit, want 0", n)
	}
}

// TestAuthenticatorStuckLookupDoesNotStickTheKey: a lookup stuck in a store
// that ignores its context ends at the deadline, the next request for the
// same key starts a lookup of its own (instead of waiting for the stuck
// one), and the stuck call answering late changes nothing.
func TestAuthenticatorStuckLookupDoesNotStickTheKey(t *testing.T) {
	t.Parallel()
	a, store, _, key := newHangingFixture(t, AuthOptions{LookupTimeout: 20 * time.Millisecond, MaxConcurrentLookups: 4})
	store.ignoreCtx = true
	store.hang(true)
	if _, err := a.Authenticate(context.Background(), key); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stuck store: got %v, want ErrUnavailable after the deadline", err)
	}
	<-store.entered
	store.hang(false)
	p, err := a.Authenticate(context.Background(), key)
	if err != nil || p.ID() != "key_1" {
		t.Fatalf("after the store recovered, with the first call still stuck: got %v %v, want key_1", p, err)
	}
	close(store.release) // the stuck call returns now
	a.background.Wait()
	if p, err := a.Authenticate(context.Background(), key); err != nil || p.ID() != "key_1" {
		t.Fatalf("after the stuck call returned: got %v %v, want key_1", p, err)
	}
	if st := a.Stats(); st.Lookups != 2 || st.LookupErrors != 1 {
		t.Fatalf("stats: %+v, want 2 lookups (one timed out) and 1 error", st)
	}
}
