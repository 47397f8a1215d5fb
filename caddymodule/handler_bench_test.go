package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/bolt"
)

// Benchmarks of the apikey handler in process, without Caddy's server: the
// pieces resources.open builds (bolt store, Authenticator, Meter, Limiter,
// FailureLimiter) wired into an App and a Handler, ServeHTTP called with a
// request shaped like Caddy's (replacer and vars in its context) and a no-op
// next handler. bench/run measures the same paths end to end with wrk.
//
//	go test ./caddymodule -run '^$' -bench Handler -benchmem
//
// Storage lookups by digest are benchmarked in keystore/bolt
// (BenchmarkLookupDigest, 1k/100k/1M keys); the Meter and Limiter on their
// own in keystore (BenchmarkMeterCountParallel, BenchmarkLimiterAdmit).

const benchTarget = "/maximo/oslc/os/mxasset?lean=1&oslc.select=assetnum,status"

// countingStore counts LookupDigest calls of the store it wraps. Lookups
// fail while down is set, and when their context is done, as a network
// store's would.
type countingStore struct {
	keystore.Store
	lookups atomic.Int64
	down    atomic.Bool
}

func (s *countingStore) LookupDigest(ctx context.Context, d keystore.Digest) (*keystore.Key, error) {
	s.lookups.Add(1)
	if s.down.Load() {
		return nil, keystore.ErrUnavailable
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.Store.LookupDigest(ctx, d)
}

type benchOptions struct {
	defaultRate *keystore.Rate
}

// benchRig is an App and a Handler over a bolt store holding one key.
type benchRig struct {
	h     *Handler
	store *countingStore
	key   string // the stored key, rights assets:read
}

func newBenchRig(tb testing.TB, o benchOptions) *benchRig {
	tb.Helper()
	bs, err := bolt.Open(filepath.Join(tb.TempDir(), "keys.db"), bolt.Options{})
	if err != nil {
		tb.Fatalf("opening store: %v", err)
	}
	tb.Cleanup(func() { bs.Close() })
	store := &countingStore{Store: bs}
	secret, err := keystore.GenerateKey(keystore.DefaultPrefix)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	k := &keystore.Key{
		ID: "key_bench0000000000000001", Name: "bench", User: "MXINTADM",
		Rights: []string{"assets:read"}, Start: keystore.DisplayStart(secret),
		Digest: keystore.DigestOf(secret), CreatedAt: now, CreatedBy: keystore.LocalActorID,
	}
	if err := store.CreateKey(context.Background(), k, keystore.CreateLimits{}, now); err != nil {
		tb.Fatalf("creating key: %v", err)
	}
	areas, err := keystore.NewAreas(map[string][]string{
		"assets":     {"/maximo/oslc/os/mxasset*", "/maximo/oslc/os/mxapiasset*"},
		"workorders": {"/maximo/oslc/os/mxwo*"},
	})
	if err != nil {
		tb.Fatal(err)
	}
	auth, err := keystore.NewAuthenticator(store, keystore.AuthOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(auth.Close)
	meter := keystore.NewMeter(store, keystore.MeterOptions{})
	limiter := keystore.NewLimiter(keystore.LimiterOptions{Store: store, Meter: meter, DefaultRate: o.defaultRate})
	res := &resources{
		logger:  zap.NewNop(),
		store:   store,
		auth:    auth,
		meter:   meter,
		limiter: limiter,
		isOpen:  true,
	}
	app := &App{areas: areas, creds: map[string]any{}, res: res, logger: zap.NewNop(),
		// On the path, as by default, but never refusing: the invalid-key
		// benchmark sends millions of bad keys from one client.
		failures: keystore.NewFailureLimiter(1<<40, time.Minute, 0)}
	app.gate = &keystore.Gate{Auth: auth, Areas: areas, Limiter: limiter, Meter: meter, Failures: app.failures, Credentials: app.creds}
	h := &Handler{app: app, extractor: KeySources{}.extractor()}
	return &benchRig{h: h, store: store, key: secret}
}

// discardWriter is a ResponseWriter that keeps one header map and drops the
// body, so the benchmarks measure the handler, not a recorder.
type discardWriter struct {
	hdr    http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.hdr }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

func (w *discardWriter) reset() {
	clear(w.hdr)
	w.status = 0
}

// caddyRequest is a request as the handler sees it inside Caddy: a replacer
// and the vars map (with the client IP) in its context.
func caddyRequest(target string) (*http.Request, *caddy.Replacer) {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	repl := caddy.NewReplacer()
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "192.0.2.10"})
	return r.WithContext(ctx), repl
}

var nopNext = caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })

// serveOnce runs the handler once with key in the apikey header and
// returns the status (200 when next was reached).
func (rig *benchRig) serveOnce(tb testing.TB, key string) int {
	tb.Helper()
	r, _ := caddyRequest(benchTarget)
	r.Header.Set("Apikey", key)
	w := httptest.NewRecorder()
	if err := rig.h.ServeHTTP(w, r, nopNext); err != nil {
		tb.Fatalf("ServeHTTP: %v", err)
	}
	return w.Code
}

func BenchmarkHandlerHit(b *testing.B) {
	cases := []struct {
		name string
		opts benchOptions
	}{
		// No limits configured: the limiter returns at once.
		{"no_limits", benchOptions{}},
		// The bench/run configuration: default_rate 1000000/1s, so the
		// limiter runs GCRA and the RateLimit-* headers are set.
		{"default_rate", benchOptions{defaultRate: &keystore.Rate{Limit: 1_000_000, Per: time.Second}}},
		// A limit whose header values are small, like a real one (600/1m
		// answers Limit 600, Reset ≤ 60): they come from a shared table.
		// 4000 per millisecond, so that the benchmark never exhausts it.
		{"rate_small_values", benchOptions{defaultRate: &keystore.Rate{Limit: 4000, Per: time.Millisecond}}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			rig := newBenchRig(b, c.opts)
			if got := rig.serveOnce(b, rig.key); got != http.StatusOK {
				b.Fatalf("warm-up request: got status %d, want 200", got)
			}
			rig.h.app.res.auth.Wait()
			lookups := rig.store.lookups.Load()

			r, repl := caddyRequest(benchTarget)
			keyHeader := []string{rig.key}
			w := &discardWriter{hdr: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				r.Header["Apikey"] = keyHeader // scrubbed by every call
				w.reset()
				if err := rig.h.ServeHTTP(w, r, nopNext); err != nil || w.status != 0 {
					b.Fatalf("got error %v, status %d; want next called", err, w.status)
				}
			}
			b.StopTimer()
			if got, _ := repl.Get("apikey.user"); got != "MXINTADM" {
				b.Fatalf("apikey.user: got %v, want MXINTADM", got)
			}
			if n := rig.store.lookups.Load() - lookups; n > 0 {
				b.Fatalf("cache hits made %d store lookups, want 0", n)
			}
		})
	}
}

// BenchmarkHandlerHitFreshRequest gives the handler a new replacer per
// request, as Caddy does: its placeholders go into an empty map. The
// baseline sub-benchmark is the cost of the fresh replacer and context
// alone, to subtract.
func BenchmarkHandlerHitFreshRequest(b *testing.B) {
	rig := newBenchRig(b, benchOptions{defaultRate: &keystore.Rate{Limit: 1_000_000, Per: time.Second}})
	if got := rig.serveOnce(b, rig.key); got != http.StatusOK {
		b.Fatalf("warm-up request: got status %d, want 200", got)
	}
	rig.h.app.res.auth.Wait()
	base := httptest.NewRequest(http.MethodGet, benchTarget, nil)
	vars := map[string]any{caddyhttp.ClientIPVarKey: "192.0.2.10"}
	keyHeader := []string{rig.key}
	w := &discardWriter{hdr: http.Header{}}
	fresh := func() *http.Request {
		repl := caddy.NewReplacer()
		ctx := context.WithValue(context.Background(), caddy.ReplacerCtxKey, repl)
		ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, vars)
		return base.WithContext(ctx)
	}
	b.Run("baseline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r := fresh()
			r.Header["Apikey"] = keyHeader
		}
	})
	b.Run("handler", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r := fresh()
			r.Header["Apikey"] = keyHeader
			w.reset()
			if err := rig.h.ServeHTTP(w, r, nopNext); err != nil || w.status != 0 {
				b.Fatalf("got error %v, status %d; want next called", err, w.status)
			}
		}
	})
}

func BenchmarkHandlerHitParallel(b *testing.B) {
	rig := newBenchRig(b, benchOptions{defaultRate: &keystore.Rate{Limit: 1 << 40, Per: time.Second}})
	if got := rig.serveOnce(b, rig.key); got != http.StatusOK {
		b.Fatalf("warm-up request: got status %d, want 200", got)
	}
	rig.h.app.res.auth.Wait()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r, _ := caddyRequest(benchTarget)
		keyHeader := []string{rig.key}
		w := &discardWriter{hdr: http.Header{}}
		for pb.Next() {
			r.Header["Apikey"] = keyHeader
			w.reset()
			if err := rig.h.ServeHTTP(w, r, nopNext); err != nil || w.status != 0 {
				b.Errorf("got error %v, status %d; want next called", err, w.status)
				return
			}
		}
	})
}

// BenchmarkHandlerReject covers the refusals that must stay cheap: a key
// with a wrong checksum (refused offline, never reaching cache or store), a
// request without a key, and a well-formed unknown key (refused from the
// negative cache after one store lookup).
func BenchmarkHandlerReject(b *testing.B) {
	rig := newBenchRig(b, benchOptions{})
	unknown, err := keystore.GenerateKey(keystore.DefaultPrefix)
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name       string
		key        string // "" sends no key
		maxLookups int64
	}{
		{"bad_checksum", withBadChecksum(rig.key), 0},
		{"no_key", "", 0},
		{"unknown_key", unknown, 1},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if c.key != "" && c.maxLookups > 0 {
				if got := rig.serveOnce(b, c.key); got != http.StatusUnauthorized {
					b.Fatalf("warm-up request: got status %d, want 401", got)
				}
				rig.h.app.res.auth.Wait()
			}
			before := rig.store.lookups.Load()
			r, _ := caddyRequest(benchTarget)
			var keyHeader []string
			if c.key != "" {
				keyHeader = []string{c.key}
			}
			w := &discardWriter{hdr: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				if keyHeader != nil {
					r.Header["Apikey"] = keyHeader
				}
				w.reset()
				if err := rig.h.ServeHTTP(w, r, nopNext); err != nil || w.status != http.StatusUnauthorized {
					b.Fatalf("got error %v, status %d; want 401", err, w.status)
				}
			}
			b.StopTimer()
			if n := rig.store.lookups.Load() - before; n > c.maxLookups {
				b.Fatalf("got %d store lookups, want at most %d", n, c.maxLookups)
			}
		})
	}
}

// TestRejectBadChecksumWithoutStore: a key with a wrong checksum is refused
// without a store lookup (docs/design.md §1 step 2).
func TestRejectBadChecksumWithoutStore(t *testing.T) {
	t.Parallel()
	rig := newBenchRig(t, benchOptions{})
	bad := withBadChecksum(rig.key)
	if !keystore.LooksGenerated(bad) || keystore.ChecksumValid(bad) {
		t.Fatalf("test key %q: want generated shape with a wrong checksum", bad)
	}
	for range 100 {
		if got := rig.serveOnce(t, bad); got != http.StatusUnauthorized {
			t.Fatalf("got status %d, want 401", got)
		}
	}
	if n := rig.store.lookups.Load(); n != 0 {
		t.Fatalf("got %d store lookups for a bad checksum, want 0", n)
	}
}

// TestConcurrentColdKeyOneLookup: 5,000 concurrent requests with the same
// valid key, not yet cached, make exactly one store lookup (docs/design.md §1 step 3:
// one flight per digest), and all of them pass.
// ristretto applies Set asynchronously, so the Authenticator waits for its
// fill inside the flight and re-checks the cache at the start of a flight.
func TestConcurrentColdKeyOneLookup(t *testing.T) {
	t.Parallel()
	const n = 5000
	rig := newBenchRig(t, benchOptions{})
	var (
		start   = make(chan struct{})
		ready   sync.WaitGroup
		done    sync.WaitGroup
		refused atomic.Int64
	)
	ready.Add(n)
	done.Add(n)
	for range n {
		go func() {
			defer done.Done()
			r, _ := caddyRequest(benchTarget)
			r.Header.Set("Apikey", rig.key)
			w := httptest.NewRecorder()
			ready.Done()
			<-start
			if err := rig.h.ServeHTTP(w, r, nopNext); err != nil || w.Code != http.StatusOK {
				refused.Add(1)
			}
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
	if got := refused.Load(); got != 0 {
		t.Errorf("got %d of %d requests refused, want 0", got, n)
	}
	if got := rig.store.lookups.Load(); got != 1 {
		t.Errorf("got %d store lookups for %d concurrent requests with one cold key, want 1", got, n)
	}
}

// withBadChecksum returns key with its last checksum character changed: the
// same shape, a wrong checksum.
func withBadChecksum(key string) string {
	last := byte('A')
	if key[len(key)-1] == last {
		last = 'B'
	}
	return key[:len(key)-1] + string(last)
}

// Interface guard: the wrapper is a full Store.
var _ keystore.Store = (*countingStore)(nil)
