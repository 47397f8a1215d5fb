package e2e

import (
	"net/http"
	"testing"
	"time"
)

// Per-user limits (docs/policy.md, docs/design.md §2) with the real binary.

// userCall sends one GET of an asset with key and returns the status, the
// error code of a refusal and the response headers.
func userCall(t *testing.T, base, key string) (int, string, http.Header) {
	t.Helper()
	code, body, h := call(t, "GET", base+usageAsset, hdr("apikey", key))
	if code == 200 {
		return code, "", h
	}
	return code, errorCode(body), h
}

func wantUserCall(t *testing.T, what string, base, key string, wantCode int, wantErr string) http.Header {
	t.Helper()
	code, e, h := userCall(t, base, key)
	if code != wantCode || e != wantErr {
		t.Fatalf("%s: got %d %s, want %d %s", what, code, e, wantCode, wantErr)
	}
	if code == 429 && h.Get("Retry-After") == "" {
		t.Fatalf("%s: 429 without Retry-After", what)
	}
	return h
}

func TestUserLimitsSharedByKeysAndKeptOverRestart(t *testing.T) {
	usageSkipNearMidnight(t, 2*time.Minute)
	be := newBackend(t)
	// Nothing is flushed before the restart: the shutdown's flush must
	// carry the user's count too.
	in := start(t, standard(be, "flush_interval 1h", ""))
	k1 := in.createKey(map[string]any{"name": "k1", "user": "SHARED", "rights": []string{"assets:read"}})
	k2 := in.createKey(map[string]any{"name": "k2", "user": "SHARED", "rights": []string{"assets:read"}})
	other := in.createKey(map[string]any{"name": "other", "user": "OTHER", "rights": []string{"assets:read"}})
	var u struct {
		User       string `json:"user"`
		ActiveKeys int    `json:"active_keys"`
	}
	if code := in.adminJSON("PUT", "/users/SHARED/limits", map[string]any{"quota": map[string]any{"limit": 5, "period": "day"}}, &u); code != 200 || u.ActiveKeys != 2 {
		t.Fatalf("PUT /users/SHARED/limits: got %d %+v", code, u)
	}
	for i := range 3 {
		h := wantUserCall(t, "k1 within the user's quota", in.siteURL, k1.Key, 200, "")
		if h.Get("RateLimit-Limit") != "5" {
			t.Fatalf("request %d: RateLimit-Limit %q, want the user's 5", i, h.Get("RateLimit-Limit"))
		}
	}
	in.usageStop()
	in.usageRestart()
	wantUserCall(t, "k2, 4th request of the user", in.siteURL, k2.Key, 200, "")
	wantUserCall(t, "k2, 5th request of the user", in.siteURL, k2.Key, 200, "")
	seen := be.count()
	wantUserCall(t, "k2 past the user's quota", in.siteURL, k2.Key, 429, "quota_exceeded")
	wantUserCall(t, "k1 past the user's quota", in.siteURL, k1.Key, 429, "quota_exceeded")
	if be.count() != seen {
		t.Fatal("a request refused by the user's quota reached the backend")
	}
	wantUserCall(t, "a key of another user", in.siteURL, other.Key, 200, "")
	if got := in.usageOf(k1.ID) + in.usageOf(k2.ID); got != 5 {
		t.Errorf("usage of the user's keys: %d, want 5 (refusals never count)", got)
	}

	// A rate instead: shared by both keys; a key's refusal costs nothing.
	if code := in.adminJSON("PUT", "/users/SHARED/limits", map[string]any{"rate": map[string]any{"limit": 2, "per": "1h"}}, nil); code != 200 {
		t.Fatalf("PUT rate: %d", code)
	}
	wantUserCall(t, "k1 within the user's rate", in.siteURL, k1.Key, 200, "")
	wantUserCall(t, "k2 within the user's rate", in.siteURL, k2.Key, 200, "")
	wantUserCall(t, "k1 past the user's rate", in.siteURL, k1.Key, 429, "rate_limited")

	if code := in.adminJSON("DELETE", "/users/SHARED/limits", nil, nil); code != 200 {
		t.Fatalf("DELETE limits: %d", code)
	}
	wantUserCall(t, "k1 without user limits", in.siteURL, k1.Key, 200, "")
}

// TestUserLimitsAcrossInstances: a change made on one instance reaches the
// other's cached keys (the change feed), rates are per instance like key
// rates, and a user quota is shared through the store with the documented
// overshoot bound.
func TestUserLimitsAcrossInstances(t *testing.T) {
	usageSkipNearMidnight(t, 2*time.Minute)
	dsn := usageDatabase(t)
	be := newBackend(t)
	render := usageOnPostgres(t, standard(be, "flush_interval 1s", ""), dsn)
	a := start(t, render, "KEYGATE_USAGE_DSN="+dsn)
	b := start(t, render, "KEYGATE_USAGE_DSN="+dsn)
	k1 := a.createKey(map[string]any{"name": "k1", "user": "SHARED", "rights": []string{"assets:read"}})
	k2 := a.createKey(map[string]any{"name": "k2", "user": "SHARED", "rights": []string{"assets:read"}})
	wantUserCall(t, "b caches k1", b.siteURL, k1.Key, 200, "")

	if code := a.adminJSON("PUT", "/users/SHARED/limits", map[string]any{"rate": map[string]any{"limit": 3, "per": "1h"}}, nil); code != 200 {
		t.Fatalf("PUT on a: %d", code)
	}
	// b evicts its cached k1 when the change arrives; until then it
	// answers without the user's limit.
	admitted := 1
	deadline := time.Now().Add(10 * time.Second)
	for {
		h := wantUserCall(t, "b, k1 while the change propagates", b.siteURL, k1.Key, 200, "")
		admitted++
		if h.Get("RateLimit-Limit") == "3" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b never applied the user's rate set on a")
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantUserCall(t, "b, k2 (2nd of the user's 3 on b)", b.siteURL, k2.Key, 200, "")
	wantUserCall(t, "b, k1 (3rd)", b.siteURL, k1.Key, 200, "")
	wantUserCall(t, "b, k2 past the rate", b.siteURL, k2.Key, 429, "rate_limited")
	admitted += 2
	for i := range 3 {
		wantUserCall(t, "a has its own rate budget", a.siteURL, []string{k1.Key, k2.Key}[i%2], 200, "")
	}
	wantUserCall(t, "a past the rate", a.siteURL, k1.Key, 429, "rate_limited")
	admitted += 3

	// Every admitted request so far is in the store before the quota is
	// set: a's view is the store plus a's own unflushed counts, so once it
	// adds up, b's requests have been flushed (one flush carries the keys'
	// and the user's counts).
	deadline = time.Now().Add(15 * time.Second)
	for {
		got := a.usageOf(k1.ID) + a.usageOf(k2.ID)
		if got == int64(admitted) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage of the user's keys seen by a: %d, want %d", got, admitted)
		}
		time.Sleep(100 * time.Millisecond)
	}

	const extra = 3
	limit := admitted + extra
	if code := a.adminJSON("PUT", "/users/SHARED/limits", map[string]any{"quota": map[string]any{"limit": limit, "period": "day"}}, nil); code != 200 {
		t.Fatalf("PUT quota on a: %d", code)
	}
	for i := range extra {
		wantUserCall(t, "a within the user's quota", a.siteURL, []string{k1.Key, k2.Key}[i%2], 200, "")
	}
	wantUserCall(t, "a past the user's quota (it counted the earlier requests of both instances)", a.siteURL, k2.Key, 429, "quota_exceeded")

	// b learns of a's last requests within a flush and a quota refresh; it
	// may admit what the documented bound allows meanwhile, never more.
	overshoot := 0
	deadline = time.Now().Add(20 * time.Second)
	for {
		code, e, _ := userCall(t, b.siteURL, k1.Key)
		if code == 429 && e == "quota_exceeded" {
			break
		}
		if code != 200 {
			t.Fatalf("b: got %d %s", code, e)
		}
		overshoot++
		if overshoot > extra {
			t.Fatalf("b admitted %d requests past the user's quota, want at most %d (a's requests it had not seen)", overshoot, extra)
		}
		if time.Now().After(deadline) {
			t.Fatal("b never refused past the user's quota")
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("b admitted %d past the quota before seeing a's last %d requests (bound %d)", overshoot, extra, extra)
}
