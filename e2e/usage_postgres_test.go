package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/keystore"
)

// usageDatabase creates a database of its own for the test on the server of
// KEYGATE_TEST_DATABASE_URL (skipping the test when it is unset), drops it
// when the test ends, and returns its DSN.
func usageDatabase(t *testing.T) string {
	t.Helper()
	// Created before the instances start, so it is dropped after they stop.
	_, dsn := pgtest.Database(t, "kg_usage")
	return dsn
}

// usageOnPostgres turns a standard render into one storing in Postgres at dsn.
func usageOnPostgres(t *testing.T, render func(int, int, string) string, dsn string) func(int, int, string) string {
	return func(adminPort, sitePort int, dir string) string {
		cfg := render(adminPort, sitePort, dir)
		file := "storage file " + dir + "/keys.db"
		if !strings.Contains(cfg, file) {
			t.Fatalf("rendered config has no %q line", file)
		}
		// The DSN goes through an environment placeholder, as in production.
		return strings.Replace(cfg, file, "storage postgres {env.KEYGATE_USAGE_DSN}", 1)
	}
}

func TestUsageNoLostCountsPostgres(t *testing.T) {
	dsn := usageDatabase(t)
	be := newBackend(t)
	usageNoLostCounts(t, usageOnPostgres(t, standard(be, "flush_interval 1h", ""), dsn), "KEYGATE_USAGE_DSN="+dsn)
}

// TestUsageQuotaAcrossInstances hammers one key with a daily quota through two
// instances sharing a Postgres store and checks the documented bound.
//
// Each instance counts its own requests exactly and sees the other's only
// once they are flushed (every flush interval F) and it has re-read the
// stored total (every quota refresh R, in the background): it is blind to
// at most W = F + R (+ the latency of a flush and a read) of the other's
// requests. The other admits at most burst + rate·W requests in W (its
// GCRA, per instance), and never more than the quota on its own. So, with N
// instances, the total admitted is at most
//
//	limit + (N-1)·min(limit, burst + rate·W) + N·(workers-1)
//
// where the last term allows for requests one instance admits
// concurrently, between the quota check and the count, at the last unit.
func TestUsageQuotaAcrossInstances(t *testing.T) {
	usageSkipNearMidnight(t, 2*time.Minute)
	dsn := usageDatabase(t)
	const (
		instances = 2
		limit     = 200
		rate      = 20 // per second per instance; burst = rate
		workers   = 4  // per instance
		flush     = time.Second
	)
	be := newBackend(t)
	render := usageOnPostgres(t, standard(be, "flush_interval 1s", ""), dsn)
	a := start(t, render, "KEYGATE_USAGE_DSN="+dsn)
	b := start(t, render, "KEYGATE_USAGE_DSN="+dsn)
	k := a.createKey(map[string]any{"name": "shared", "user": "MXINTADM", "rights": []string{"assets:read"},
		"rate":  map[string]any{"limit": rate, "per": "1s"},
		"quota": map[string]any{"limit": limit, "period": "day"}})

	window := flush + keystore.DefaultQuotaRefresh + time.Second // + a flush's and a read's latency
	perOther := min(limit, rate+int(float64(rate)*window.Seconds()))
	bound := limit + (instances-1)*perOther + instances*(workers-1)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ta, tb usageTally
	// 4 workers at most 25 requests/s each: 5× the key's rate per instance.
	waitA := usageLoad(ctx, a.siteURL+usageAsset, k.Key, workers, 40*time.Millisecond, &ta)
	waitB := usageLoad(ctx, b.siteURL+usageAsset, k.Key, workers, 40*time.Millisecond, &tb)
	deadline := time.Now().Add(40 * time.Second)
	for ta.count("429 quota_exceeded") == 0 || tb.count("429 quota_exceeded") == 0 {
		if time.Now().After(deadline) {
			cancel()
			waitA()
			waitB()
			t.Fatalf("the quota was never exhausted on both instances: a: %v; b: %v", &ta, &tb)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Keep going for one more window: nothing more may pass once the quota
	// is used up, and a refusal that only a transient double count caused
	// (see keystore.Limiter) is lifted by the next read.
	time.Sleep(window)
	cancel()
	waitA()
	waitB()
	total := ta.ok.Load() + tb.ok.Load()
	t.Logf("a: %v", &ta)
	t.Logf("b: %v", &tb)
	t.Logf("admitted %d with quota %d; documented bound %d", total, limit, bound)
	if total < limit {
		t.Fatalf("admitted %d, want at least the quota %d", total, limit)
	}
	if total > int64(bound) {
		t.Fatalf("admitted %d, want at most %d (quota %d + overshoot bound)", total, bound, limit)
	}
	for _, n := range []int64{ta.failed.Load(), tb.failed.Load()} {
		if n != 0 {
			t.Fatalf("requests without an answer: a: %v; b: %v", &ta, &tb)
		}
	}

	// The counts are exact across instances: b's last counts reach the
	// store when it stops; a's have been flushed (no flush may run while
	// the usage is read: its store read and its unflushed counts are not
	// one snapshot).
	time.Sleep(flush + 500*time.Millisecond)
	b.usageStop()
	if got := a.usageOf(k.ID); got != total {
		t.Fatalf("stored usage %d, want %d (the 2xx answers of both instances)", got, total)
	}
}
