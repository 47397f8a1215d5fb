package caddymodule

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// TestFailedReloadChangesNothingLive follows Caddy's lifecycle: a reload
// starts the new config before stopping the old one, and a reload that
// fails stops the new config again. The settings in force must be those of
// the config that serves.
func TestFailedReloadChangesNothingLive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	lookup, flush := newHistograms()
	res := &resources{key: "file:" + path, logger: zap.NewNop(), lookupHist: lookup, flushHist: flush}
	t.Cleanup(func() {
		if err := res.Destruct(); err != nil {
			t.Errorf("Destruct: %v", err)
		}
	})
	config := func(flush time.Duration, failed *FailedAttemptsConfig) *App {
		return &App{Storage: &StorageConfig{Type: "file", Path: path}, FlushInterval: caddy.Duration(flush),
			FailedAttempts: failed, res: res, logger: zap.NewNop()}
	}
	running := config(2*time.Second, nil)
	if err := res.open(running); err != nil {
		t.Fatal(err)
	}
	want := func(step string, every time.Duration, a *App) {
		t.Helper()
		res.mu.Lock()
		defer res.mu.Unlock()
		if res.flushEvery != every {
			t.Errorf("%s: flush interval %v, want %v", step, res.flushEvery, every)
		}
		if f := res.failures[a.failedSetting()]; f == nil || f != a.failures {
			t.Errorf("%s: the serving config's failed-attempt limiter is not the one kept", step)
		}
	}
	want("first start", 2*time.Second, running)
	original := running.failures

	// A reload whose http app fails to start (port conflict): Caddy
	// started our app, then stops it.
	failed := config(time.Hour, &FailedAttemptsConfig{Limit: 5, Window: caddy.Duration(time.Minute)})
	if err := res.open(failed); err != nil {
		t.Fatal(err)
	}
	want("new config starting", time.Hour, failed)
	if err := failed.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := failed.Cleanup(); err != nil {
		t.Fatal(err)
	}
	want("after the failed reload", 2*time.Second, running)
	if running.failures != original || len(res.failures) != 1 {
		t.Errorf("the failed reload replaced the running limiter or left its own (%d kept)", len(res.failures))
	}

	// A reload that succeeds with the same failed_attempts keeps its counts.
	next := config(5*time.Second, nil)
	if err := res.open(next); err != nil {
		t.Fatal(err)
	}
	if err := running.Stop(); err != nil {
		t.Fatal(err)
	}
	want("after a good reload", 5*time.Second, next)
	if next.failures != original {
		t.Error("a reload with the same failed_attempts dropped the failed-attempt counts")
	}
}

// TestReloadFollowsCacheAndFailedAttempts: a reload that commits puts its
// cache options and failed_attempts in force; a failed one puts the running
// config's back.
func TestReloadFollowsCacheAndFailedAttempts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	lookup, flush := newHistograms()
	res := &resources{key: "file:" + path, logger: zap.NewNop(), lookupHist: lookup, flushHist: flush}
	t.Cleanup(func() {
		if err := res.Destruct(); err != nil {
			t.Errorf("Destruct: %v", err)
		}
	})
	config := func(cache *CacheConfig, failed *FailedAttemptsConfig) *App {
		return &App{Storage: &StorageConfig{Type: "file", Path: path}, FlushInterval: caddy.Duration(time.Second),
			Cache: cache, FailedAttempts: failed, res: res, logger: zap.NewNop()}
	}
	inForce := func(step string, want CacheConfig) {
		t.Helper()
		res.mu.Lock()
		defer res.mu.Unlock()
		if res.cacheInForce != want {
			t.Errorf("%s: cache options in force %+v, want %+v", step, res.cacheInForce, want)
		}
	}
	first := &CacheConfig{Size: 1000, RefreshAfter: caddy.Duration(time.Minute)}
	running := config(first, nil)
	if err := res.open(running); err != nil {
		t.Fatal(err)
	}
	inForce("first start", *first)

	// A failed reload with other cache options changes nothing once it is
	// stopped again.
	other := &CacheConfig{Size: 50, NegativeTTL: caddy.Duration(time.Hour), LookupTimeout: caddy.Duration(time.Second)}
	failed := config(other, &FailedAttemptsConfig{Limit: 3, Window: caddy.Duration(time.Minute)})
	if err := res.open(failed); err != nil {
		t.Fatal(err)
	}
	inForce("failed reload starting", *other)
	if err := failed.Stop(); err != nil {
		t.Fatal(err)
	}
	inForce("after the failed reload", *first)

	// A reload that commits: its options are in force, and its
	// failed_attempts limiter (a new setting) is the one its gate uses.
	next := config(other, &FailedAttemptsConfig{Limit: 3, Window: caddy.Duration(time.Minute)})
	if err := res.open(next); err != nil {
		t.Fatal(err)
	}
	if err := running.Stop(); err != nil {
		t.Fatal(err)
	}
	inForce("after a good reload", *other)
	if next.failures == nil || next.failures == running.failures {
		t.Fatal("the new failed_attempts setting did not get its own limiter")
	}
	for i := 0; i < 3; i++ {
		next.failures.Fail("192.0.2.1", time.Now())
	}
	if blocked, _ := next.failures.Blocked("192.0.2.1", time.Now()); !blocked {
		t.Error("failed_attempts 3/1m after the reload: a client with 3 failures is not blocked")
	}
}

// TestShutdownJournalsWhatTheStoreCannotTake: at the final flush a file
// store that cannot be written (here: closed underneath, as a full disk
// fails every write) gets nothing, the counts go to the journal beside
// keys.db, and the next open adds them to the store once.
func TestShutdownJournalsWhatTheStoreCannotTake(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	newRes := func() (*resources, *App) {
		lookup, flush := newHistograms()
		res := &resources{key: "file:" + path, logger: zap.NewNop(), lookupHist: lookup, flushHist: flush,
			finalFlush: 300 * time.Millisecond}
		a := &App{Storage: &StorageConfig{Type: "file", Path: path}, FlushInterval: caddy.Duration(time.Hour),
			res: res, logger: zap.NewNop()}
		if err := res.open(a); err != nil {
			t.Fatal(err)
		}
		return res, a
	}
	res, _ := newRes()
	day := time.Now().UTC()
	for range 40 {
		res.meter.Count("key_j", day)
	}
	if err := res.store.Close(); err != nil { // every write now fails
		t.Fatal(err)
	}
	if err := res.Destruct(); err != nil {
		t.Fatalf("Destruct with a journal to write: %v, want nil", err)
	}
	if countsLost.Load() {
		t.Fatal("counts reported lost although the journal took them")
	}
	if _, err := os.Stat(path + ".usage-journal"); err != nil {
		t.Fatalf("no journal beside keys.db: %v", err)
	}

	for restart := range 2 {
		res, _ = newRes()
		from := day.Truncate(24 * time.Hour)
		days, err := res.store.Usage(t.Context(), "key_j", from, from)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, d := range days {
			n += d.Requests
		}
		if n != 40 {
			t.Fatalf("after restart %d: stored usage %d, want 40 (journal replayed once)", restart+1, n)
		}
		if err := res.Destruct(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(path + ".usage-journal"); !os.IsNotExist(err) {
		t.Fatalf("journal left after its replay: %v", err)
	}
}
