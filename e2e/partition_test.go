package e2e

import (
	"net/http"
	"testing"
	"time"
)

// TestPostgresSilentPartition puts keygate behind a proxy to Postgres that
// goes silent (connections accepted and held, nothing forwarded), the
// network partition that refuses nothing: a cached key past refresh_after
// is served stale at once, and an unknown key gets 503 after about
// lookup_timeout instead of hanging for the whole outage.
func TestPostgresSilentPartition(t *testing.T) {
	db := newTestDB(t)
	be := newBackend(t)
	proxy := newPGProxy(t, db.target())
	const lookupTimeout = 500 * time.Millisecond
	cache := "cache {\n\t\t\trefresh_after 1s\n\t\t\tmax_stale 1m\n\t\t\tlookup_timeout 500ms\n\t\t}"
	in := start(t, pgConfig(be, "max_conns 4", cache), pgDSNEnv+"="+db.via(proxy.addr))
	c := &http.Client{Timeout: 30 * time.Second}
	url := in.siteURL + assetPath
	k := in.createKey(newKeyFields("cached"))
	// The change feed evicts the new key's digest when it applies the
	// creation (the first change of this database): wait for that before
	// caching the key, or the eviction can land during the partition.
	feedDeadline := time.Now().Add(10 * time.Second)
	for scrapeCounter(t, in, "keygate_invalidation_lag_seconds") == 0 {
		if time.Now().After(feedDeadline) {
			t.Fatal("the change feed never applied the key's creation")
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitStatus(t, c, url, k.Key, 200, 10*time.Second)
	cachedAt := time.Now()
	staleBefore := scrapeCounter(t, in, "keygate_cache_stale_served_total")

	proxy.silence()
	defer proxy.speak() // so keygate's shutdown flush is not held up

	// Cached key: 200 on every request, each well under lookup_timeout,
	// until one has been served stale (the entry is past refresh_after
	// 1s after it was loaded).
	deadline := time.Now().Add(10 * time.Second)
	var worst time.Duration
	for n := 0; ; n++ {
		code, d := timedGet(c, url, k.Key)
		worst = max(worst, d)
		if code != 200 {
			t.Fatalf("cached key during the partition (request %d, %v after caching): got %d, want 200", n, time.Since(cachedAt), code)
		}
		if d >= lookupTimeout {
			t.Fatalf("cached key during the partition took %v, want it served from cache at once", d)
		}
		if scrapeCounter(t, in, "keygate_cache_stale_served_total") > staleBefore {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no stale cached key served 10s into the partition")
		}
	}

	// Unknown keys: 503 store_unavailable after about lookup_timeout.
	var took []time.Duration
	for range 5 {
		start := time.Now()
		code, body := get(c, url, newUnknownKey(t))
		d := time.Since(start)
		if code != 503 || errorCode(body) != "store_unavailable" {
			t.Fatalf("unknown key during the partition: got %d %s after %v, want 503 store_unavailable", code, body, d)
		}
		if d > lookupTimeout+time.Second {
			t.Fatalf("unknown key during the partition: 503 after %v, want about lookup_timeout (%v)", d, lookupTimeout)
		}
		took = append(took, d)
	}
	// Still served stale, right after the failed lookups.
	if code, d := timedGet(c, url, k.Key); code != 200 || d >= lookupTimeout {
		t.Fatalf("cached key after the failed lookups: got %d in %v, want 200 at once", code, d)
	}
	t.Logf("partition: cached key 200 (stale, slowest %v); unknown keys 503 after %v (median %v, lookup_timeout %v)",
		worst, took, percentile(took, 50), lookupTimeout)
}
