package e2e

import (
	"strings"
	"testing"
	"time"
)

// A reload through Caddy's /load puts the new failed_attempts and cache
// options in force (they belong to resources that outlive reloads, so
// they must be handed over, not kept from the first config).
func TestReloadFollowsFailedAttemptsAndCache(t *testing.T) {
	be := newBackend(t)
	before := "failed_attempts 100/1m\n\t\tcache {\n\t\t\trefresh_after 1h\n\t\t}"
	in := start(t, floodConfig(be, before))
	k := in.createKey(map[string]any{"name": "valid", "user": "MXINTADM", "rights": []string{"assets:read"}})
	asset := in.siteURL + "/maximo/oslc/os/mxapiasset"
	get := func(key string) int {
		t.Helper()
		code, _, _ := call(t, "GET", asset, hdr("apikey", key))
		return code
	}
	if code := get(k.Key); code != 200 {
		t.Fatalf("valid key: got %d, want 200", code)
	}
	if stale := scrapeCounter(t, in, "keygate_cache_stale_served_total"); stale != 0 {
		t.Fatalf("stale served before the reload: %v, want 0", stale)
	}

	after := "failed_attempts 3/1m\n\t\tcache {\n\t\t\tsize 200000\n\t\t\trefresh_after 1s\n\t\t\tmax_stale 1h\n\t\t}"
	in.usageReload(strings.Replace(readFile(t, in.config), before, after, 1))
	// A larger cache than at start: said at the reload.
	if !strings.Contains(in.stderr.String(), "cache size 200000 is larger than the 100000 this process started with") {
		t.Errorf("no warning at a reload to a larger cache size:\n%s", in.stderr.String())
	}

	// refresh_after 1s: the key cached under refresh_after 1h is now
	// served stale (and re-read in the background) once a second old.
	deadline := time.Now().Add(15 * time.Second)
	for scrapeCounter(t, in, "keygate_cache_stale_served_total") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("15s after a reload to refresh_after 1s, the cached key was never served stale: the first config's refresh_after (1h) is still in force")
		}
		if code := get(k.Key); code != 200 {
			t.Fatalf("valid key after the reload: got %d, want 200", code)
		}
		time.Sleep(200 * time.Millisecond) // polling interval, not synchronisation
	}

	// failed_attempts 3/1m: the fourth request after three invalid keys is
	// refused (under 100/1m it would pass).
	for i := range 3 {
		if code := get(newUnknownKey(t)); code != 401 {
			t.Fatalf("invalid key %d: got %d, want 401", i+1, code)
		}
	}
	if code := get(k.Key); code != 429 {
		t.Fatalf("valid key after 3 failures with failed_attempts 3/1m reloaded: got %d, want 429", code)
	}
}
