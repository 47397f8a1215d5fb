package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Usage metering, rate limits and quotas (docs/design.md §1 steps 6–7, §2 Limits,
// §5) with the real binary.

const usageAsset = "/maximo/oslc/os/mxapiasset"

// usageRestart runs keygate again on the same directory, config and ports
// after usageStop, usageKill or in.stop.
func (in *instance) usageRestart() {
	in.t.Helper()
	in.run()
}

// usageStop stops keygate with SIGTERM (a clean shutdown: the last flush).
func (in *instance) usageStop() {
	in.t.Helper()
	in.stop()
	if in.t.Failed() {
		in.t.FailNow()
	}
}

// usageKill kills keygate with SIGKILL: no shutdown flush.
func (in *instance) usageKill() {
	in.t.Helper()
	select {
	case <-in.done:
		return
	default:
	}
	in.cmd.Process.Kill()
	<-in.done
}

// usageDays is GET /keys/{id}/usage.
type usageDays struct {
	ID   string `json:"id"`
	Days []struct {
		Date     string `json:"date"`
		Requests int64  `json:"requests"`
	} `json:"days"`
}

// usageOf returns the key's requests over the default range (the last
// 30 days), summed, so that a test crossing UTC midnight still adds up.
func (in *instance) usageOf(id string) int64 {
	in.t.Helper()
	var u usageDays
	if code := in.adminJSON("GET", "/keys/"+id+"/usage", nil, &u); code != 200 {
		in.t.Fatalf("GET /keys/%s/usage: got status %d, want 200", id, code)
	}
	if u.ID != id {
		in.t.Fatalf("usage of %s: got id %q", id, u.ID)
	}
	var n int64
	for _, d := range u.Days {
		n += d.Requests
	}
	return n
}

// usageReload forces a reload of the instance's (unchanged) config.
func (in *instance) usageReload(cfg string) {
	in.t.Helper()
	req, err := http.NewRequest("POST", "http://"+in.adminAddr+"/load", strings.NewReader(cfg))
	if err != nil {
		in.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	req.Header.Set("Cache-Control", "must-revalidate") // reload even an identical config
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		in.t.Fatalf("POST /load: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		in.t.Fatalf("POST /load: got status %d (%s), want 200", resp.StatusCode, b)
	}
	// The old config's server closes its idle keep-alive connections; a
	// request sent on one of them meanwhile is reset. Dial afresh.
	http.DefaultClient.CloseIdleConnections()
	// A connection the kernel queued during the listener handover can be
	// closed by the old server unanswered (EOF): wait until the site
	// answers on a new connection before the caller sends what it counts.
	// The path is one step 0 refuses (400): no key lookup, no usage, no
	// failed attempt.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(in.siteURL + "/maximo/%2e%2e/ready")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("the site did not answer after the reload: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// usageTally counts the answers a load generator got.
type usageTally struct {
	ok      atomic.Int64 // 2xx
	failed  atomic.Int64 // no HTTP answer (never reached keygate's handler)
	mu      sync.Mutex
	byCode  map[string]int64 // non-2xx answers by "status code"
	lastErr error
}

func (ta *usageTally) add(status int, code string, err error) {
	switch {
	case err != nil:
		ta.failed.Add(1)
		ta.mu.Lock()
		ta.lastErr = err
		ta.mu.Unlock()
	case status >= 200 && status < 300:
		ta.ok.Add(1)
	default:
		ta.mu.Lock()
		if ta.byCode == nil {
			ta.byCode = map[string]int64{}
		}
		ta.byCode[fmt.Sprintf("%d %s", status, code)]++
		ta.mu.Unlock()
	}
}

func (ta *usageTally) count(key string) int64 {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return ta.byCode[key]
}

func (ta *usageTally) String() string {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return fmt.Sprintf("%d ok, %d without answer (last: %v), others %v", ta.ok.Load(), ta.failed.Load(), ta.lastErr, ta.byCode)
}

// usageLoad sends GET requests with key to url from workers goroutines until
// ctx ends, at most one request per pace per worker (0: no pause).
func usageLoad(ctx context.Context, url, key string, workers int, pace time.Duration, ta *usageTally) (wait func()) {
	client := &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: workers, DisableCompression: true},
		Timeout:   15 * time.Second,
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				start := time.Now()
				req, _ := http.NewRequest("GET", url, nil)
				req.Header.Set("apikey", key)
				resp, err := client.Do(req)
				if err != nil {
					ta.add(0, "", err)
				} else {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					ta.add(resp.StatusCode, usageErrCode(string(b)), nil)
				}
				if d := pace - time.Since(start); d > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(d):
					}
				}
			}
		})
	}
	return func() { wg.Wait(); client.CloseIdleConnections() }
}

// usageErrCode extracts "code" from an error body, "" if there is none.
func usageErrCode(body string) string {
	const marker = `"code":"`
	i := strings.Index(body, marker)
	if i < 0 {
		return ""
	}
	rest := body[i+len(marker):]
	if j := strings.IndexByte(rest, '"'); j >= 0 {
		return rest[:j]
	}
	return ""
}

// usageHeaderInt parses an integer header or fails.
func usageHeaderInt(t *testing.T, h http.Header, name string) int64 {
	t.Helper()
	v := h.Get(name)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("%s: got %q, want an integer", name, v)
	}
	return n
}

// usageUntilMidnight is the time to the next UTC midnight.
func usageUntilMidnight(now time.Time) time.Duration {
	y, m, d := now.UTC().Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC).Sub(now)
}

// usageSkipNearMidnight skips a test whose day-based expectations would be
// split by UTC midnight.
func usageSkipNearMidnight(t *testing.T, margin time.Duration) {
	t.Helper()
	if now := time.Now(); usageUntilMidnight(now) < margin || now.Sub(now.UTC().Truncate(24*time.Hour)) < 5*time.Second {
		t.Skipf("too close to UTC midnight (%s) for day-based expectations", now.UTC().Format(time.TimeOnly))
	}
}

func TestUsageIsExactAndOnlyCountsAdmittedRequests(t *testing.T) {
	be := newBackend(t)
	// A long flush interval: nothing is flushed while the test runs, so the
	// usage endpoint must include this instance's unflushed counts.
	in := start(t, standard(be, "flush_interval 1h", ""))
	k := in.createKey(map[string]any{"name": "usage", "user": "MXINTADM", "rights": []string{"assets:read"}})
	limited := in.createKey(map[string]any{"name": "limited", "user": "MXINTADM", "rights": []string{"assets:read"},
		"rate": map[string]any{"limit": 2, "per": "1h"}})
	asset := in.siteURL + usageAsset

	if got := in.usageOf(k.ID); got != 0 {
		t.Fatalf("usage of a new key: got %d, want 0", got)
	}
	const n = 17
	for i := range n {
		if code, body, _ := call(t, "GET", asset, hdr("apikey", k.Key)); code != 200 {
			t.Fatalf("request %d: got %d (%s), want 200", i, code, body)
		}
	}
	if got := in.usageOf(k.ID); got != n {
		t.Fatalf("usage right after %d requests (unflushed): got %d, want %d", n, got, n)
	}

	// Refused requests never count: wrong area, wrong method, a method
	// override, a corrupted key, and rate-limited requests.
	refused := []struct {
		name   string
		method string
		path   string
		header http.Header
		want   int
	}{
		{"other area", "GET", "/maximo/oslc/os/mxapiwodetail", hdr("apikey", k.Key), 403},
		{"write method", "POST", usageAsset, hdr("apikey", k.Key), 403},
		{"method override", "GET", usageAsset, hdr("apikey", k.Key, "X-HTTP-Method-Override", "DELETE"), 403},
		{"corrupted key", "GET", usageAsset, hdr("apikey", k.Key[:len(k.Key)-1]+flip(k.Key[len(k.Key)-1])), 401},
	}
	for _, tc := range refused {
		if code, body, _ := call(t, tc.method, in.siteURL+tc.path, tc.header); code != tc.want {
			t.Fatalf("%s: got %d (%s), want %d", tc.name, code, body, tc.want)
		}
	}
	if got := in.usageOf(k.ID); got != n {
		t.Fatalf("usage after refused requests: got %d, want %d", got, n)
	}
	for i, want := range []int{200, 200, 429, 429, 429} {
		if code, body, _ := call(t, "GET", asset, hdr("apikey", limited.Key)); code != want {
			t.Fatalf("limited key, request %d: got %d (%s), want %d", i, code, body, want)
		}
	}
	if got := in.usageOf(limited.ID); got != 2 {
		t.Fatalf("usage of the rate-limited key: got %d, want 2 (429s never count)", got)
	}

	// A revoked key's requests (401) do not count either.
	if code := in.adminJSON("DELETE", "/keys/"+k.ID, nil, nil); code != 200 {
		t.Fatalf("revoke: got %d, want 200", code)
	}
	for range 3 {
		if code, body, _ := call(t, "GET", asset, hdr("apikey", k.Key)); code != 401 {
			t.Fatalf("revoked key: got %d (%s), want 401", code, body)
		}
	}
	if got := in.usageOf(k.ID); got != n {
		t.Fatalf("usage after 401s: got %d, want %d", got, n)
	}

	// The CLI shows the same exact, unflushed count.
	out, err := exec.Command(keygateBin, "apikey", "usage", k.ID, "--address", in.adminAddr).CombinedOutput()
	if err != nil {
		t.Fatalf("keygate apikey usage: %v\n%s", err, out)
	}
	total := ""
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "TOTAL" {
			total = f[1]
		}
	}
	if total != strconv.Itoa(n) {
		t.Fatalf("keygate apikey usage: TOTAL %q, want %d; output:\n%s", total, n, out)
	}
}

func TestUsageRateLimitAndQuotaAnswers(t *testing.T) {
	usageSkipNearMidnight(t, time.Minute)
	be := newBackend(t)
	in := start(t, standard(be, "default_rate 3/1m", ""))
	asset := in.siteURL + usageAsset
	rights := []string{"assets:read"}

	t.Run("rate 5/1m", func(t *testing.T) {
		k := in.createKey(map[string]any{"name": "rate", "user": "U", "rights": rights,
			"rate": map[string]any{"limit": 5, "per": "1m"}})
		for i := range 5 {
			code, body, h := call(t, "GET", asset, hdr("apikey", k.Key))
			if code != 200 {
				t.Fatalf("request %d: got %d (%s), want 200", i+1, code, body)
			}
			if got := usageHeaderInt(t, h, "RateLimit-Limit"); got != 5 {
				t.Fatalf("request %d: RateLimit-Limit %d, want 5", i+1, got)
			}
			if got, want := usageHeaderInt(t, h, "RateLimit-Remaining"), int64(4-i); got != want {
				t.Fatalf("request %d: RateLimit-Remaining %d, want %d", i+1, got, want)
			}
			// GCRA: each request moves the full-budget time 12 s on.
			if got, want := usageHeaderInt(t, h, "RateLimit-Reset"), int64(12*(i+1)); got < want-2 || got > want {
				t.Fatalf("request %d: RateLimit-Reset %d, want %d (±2)", i+1, got, want)
			}
		}
		code, body, h := call(t, "GET", asset, hdr("apikey", k.Key))
		if code != 429 || usageErrCode(body) != "rate_limited" {
			t.Fatalf("6th request: got %d %s, want 429 rate_limited", code, body)
		}
		// The next unit of budget frees up one emission interval (60 s / 5)
		// after the first request.
		if got := usageHeaderInt(t, h, "Retry-After"); got < 10 || got > 12 {
			t.Fatalf("Retry-After %d, want 12 (≥ 10 allowing for slow requests)", got)
		}
		if got := in.usageOf(k.ID); got != 5 {
			t.Fatalf("usage: got %d, want 5", got)
		}
	})

	t.Run("quota 3/day", func(t *testing.T) {
		k := in.createKey(map[string]any{"name": "quota", "user": "U", "rights": rights,
			"rate": map[string]any{"limit": 1000, "per": "1m"}, "quota": map[string]any{"limit": 3, "period": "day"}})
		for i := range 3 {
			code, body, h := call(t, "GET", asset, hdr("apikey", k.Key))
			if code != 200 {
				t.Fatalf("request %d: got %d (%s), want 200", i+1, code, body)
			}
			// The tightest limit is reported: the quota.
			if got := usageHeaderInt(t, h, "RateLimit-Limit"); got != 3 {
				t.Fatalf("request %d: RateLimit-Limit %d, want 3", i+1, got)
			}
			if got, want := usageHeaderInt(t, h, "RateLimit-Remaining"), int64(2-i); got != want {
				t.Fatalf("request %d: RateLimit-Remaining %d, want %d", i+1, got, want)
			}
			want := int64(usageUntilMidnight(time.Now()).Seconds())
			if got := usageHeaderInt(t, h, "RateLimit-Reset"); got < want-2 || got > want+2 {
				t.Fatalf("request %d: RateLimit-Reset %d, want %d (seconds to UTC midnight, ±2)", i+1, got, want)
			}
		}
		for range 2 {
			code, body, h := call(t, "GET", asset, hdr("apikey", k.Key))
			if code != 429 || usageErrCode(body) != "quota_exceeded" {
				t.Fatalf("4th request: got %d %s, want 429 quota_exceeded", code, body)
			}
			want := int64(usageUntilMidnight(time.Now()).Seconds())
			if got := usageHeaderInt(t, h, "Retry-After"); got < want-2 || got > want+2 {
				t.Fatalf("Retry-After %d, want %d (seconds to UTC midnight, ±2)", got, want)
			}
		}
		if got := in.usageOf(k.ID); got != 3 {
			t.Fatalf("usage: got %d, want 3 (refused requests never count)", got)
		}
	})

	t.Run("default rate 3/1m", func(t *testing.T) {
		k := in.createKey(map[string]any{"name": "default", "user": "U", "rights": rights})
		for i := range 3 {
			code, body, h := call(t, "GET", asset, hdr("apikey", k.Key))
			if code != 200 {
				t.Fatalf("request %d: got %d (%s), want 200", i+1, code, body)
			}
			if got := usageHeaderInt(t, h, "RateLimit-Limit"); got != 3 {
				t.Fatalf("request %d: RateLimit-Limit %d, want 3 (the app's default_rate)", i+1, got)
			}
		}
		code, body, h := call(t, "GET", asset, hdr("apikey", k.Key))
		if code != 429 || usageErrCode(body) != "rate_limited" {
			t.Fatalf("4th request: got %d %s, want 429 rate_limited", code, body)
		}
		if got := usageHeaderInt(t, h, "Retry-After"); got < 18 || got > 20 {
			t.Fatalf("Retry-After %d, want 20 (60 s / 3)", got)
		}
	})
}

// usageNoLostCounts sends requests from several goroutines while the config is
// reloaded 10 times, then checks the stored usage equals the number of 2xx
// answers exactly, through:
//   - reload flushes alone (a last reload, then SIGKILL, so no shutdown
//     flush can help),
//   - the shutdown flush (more requests, then SIGTERM),
//
// each followed by a restart on the same store. The flush interval is 1h,
// so no periodic flush runs.
func usageNoLostCounts(t *testing.T, render func(adminPort, sitePort int, dir string) string, env ...string) {
	in := start(t, render, env...)
	cfg := readFile(t, in.config)
	keys := []createdKey{
		in.createKey(map[string]any{"name": "busy-a", "user": "MXINTADM", "rights": []string{"assets:read"}}),
		in.createKey(map[string]any{"name": "busy-b", "user": "MXINTADM", "rights": []string{"assets:read"}}),
	}
	asset := in.siteURL + usageAsset
	tallies := make([]usageTally, len(keys))

	run := func(reloads int) {
		ctx, cancel := context.WithCancel(context.Background())
		var waits []func()
		for i, k := range keys {
			waits = append(waits, usageLoad(ctx, asset, k.Key, 3, 0, &tallies[i]))
		}
		for range reloads {
			time.Sleep(100 * time.Millisecond)
			in.usageReload(cfg)
		}
		time.Sleep(100 * time.Millisecond)
		cancel()
		for _, w := range waits {
			w()
		}
	}
	check := func(stage string) {
		t.Helper()
		for i, k := range keys {
			if got, want := in.usageOf(k.ID), tallies[i].ok.Load(); got != want {
				t.Fatalf("%s: key %d: stored usage %d, want %d (the 2xx answers); load: %v", stage, i, got, want, &tallies[i])
			}
		}
	}

	// 1. Traffic during 10 reloads, one more reload after it, then SIGKILL:
	// only the reload flushes (App.Cleanup) can have stored the counts.
	run(10)
	in.usageReload(cfg)
	in.usageKill()
	in.usageRestart()
	check("after 10 reloads and SIGKILL")
	for i := range tallies {
		if tallies[i].ok.Load() == 0 {
			t.Fatalf("key %d: no request succeeded; the test proves nothing: %v", i, &tallies[i])
		}
		t.Logf("key %d: %v", i, &tallies[i])
	}

	// 2. Traffic during reloads, then SIGTERM: the shutdown flush.
	run(3)
	in.usageStop()
	in.usageRestart()
	check("after SIGTERM")
	for i := range tallies {
		t.Logf("key %d: %v", i, &tallies[i])
	}
}

func TestUsageNoLostCountsBolt(t *testing.T) {
	be := newBackend(t)
	usageNoLostCounts(t, standard(be, "flush_interval 1h", ""))
}

func TestUsageDefaultLimitsFollowReload(t *testing.T) {
	be := newBackend(t)
	in := start(t, standard(be, "default_rate 3/1m", ""))
	k := in.createKey(map[string]any{"name": "default", "user": "U", "rights": []string{"assets:read"}})
	asset := in.siteURL + usageAsset
	if code, body, h := call(t, "GET", asset, hdr("apikey", k.Key)); code != 200 || h.Get("RateLimit-Limit") != "3" {
		t.Fatalf("before reload: got %d (%s) RateLimit-Limit %q, want 200 and 3", code, body, h.Get("RateLimit-Limit"))
	}
	cfg := strings.Replace(readFile(t, in.config), "default_rate 3/1m", "default_rate 50/1m\n\t\tdefault_quota 1000/day", 1)
	in.usageReload(cfg)
	code, body, h := callAfterReload(t, asset, k.Key)
	if code != 200 || h.Get("RateLimit-Limit") != "50" {
		t.Fatalf("after reload: got %d (%s) RateLimit-Limit %q, want 200 and 50", code, body, h.Get("RateLimit-Limit"))
	}
}

// TestUsageCrashLosesAtMostOneFlushInterval: counts older than one flush
// interval are in the store, so a SIGKILL loses none of them. The interval
// is changed by a reload, which must take effect.
func TestUsageCrashLosesAtMostOneFlushInterval(t *testing.T) {
	be := newBackend(t)
	in := start(t, standard(be, "flush_interval 1h", ""))
	k := in.createKey(map[string]any{"name": "crash", "user": "MXINTADM", "rights": []string{"assets:read"}})
	in.usageReload(strings.Replace(readFile(t, in.config), "flush_interval 1h", "flush_interval 1s", 1))
	const n = 25
	for i := range n {
		if code, body, _ := callAfterReload(t, in.siteURL+usageAsset, k.Key); code != 200 {
			t.Fatalf("request %d: got %d (%s), want 200", i, code, body)
		}
	}
	time.Sleep(3 * time.Second) // one interval, and ample time for the flush
	in.usageKill()
	in.usageRestart()
	if got := in.usageOf(k.ID); got != n {
		t.Fatalf("stored usage after SIGKILL: got %d, want %d (all older than one flush interval)", got, n)
	}
}

// callAfterReload GETs url with key, retrying a request that got no HTTP
// answer at all: right after a reload, a connection the old server had
// accepted can be closed unanswered. Such a request never reached the
// handler, so it was not counted; an HTTP answer is never retried.
func callAfterReload(t *testing.T, url, key string) (int, string, http.Header) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("apikey", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			if attempt < 3 {
				http.DefaultClient.CloseIdleConnections()
				continue
			}
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b), resp.Header
	}
}
