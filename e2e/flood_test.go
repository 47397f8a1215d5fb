package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Brute-force resistance (issue 8): the per-client failed-attempt limiter,
// the latency of valid cached keys under a flood of random well-formed
// keys, and the timing of the 401 path.

// floodConfig is a lean config (no access log, Caddy's default log at
// INFO) so the timing tests measure keygate rather than log I/O.
func floodConfig(be *backend, appExtra string) func(int, int, string) string {
	return func(adminPort, sitePort int, dir string) string {
		return fmt.Sprintf(`{
	admin 127.0.0.1:%[1]d
	apikey {
		storage file %[3]s/keys.db
		%[4]s
		%[5]s
	}
}

http://127.0.0.1:%[2]d {
	handle {
		apikey
		reverse_proxy %[6]s
	}
}
`, adminPort, sitePort, dir, maximoAreas, appExtra, be.addr())
	}
}

// timedGet sends GET url with the key and returns the status and how long
// the whole exchange took (0 status on a transport error).
func timedGet(c *http.Client, url, key string) (int, time.Duration) {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("apikey", key)
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, time.Since(start)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}

// quantile returns the nearest-rank quantile q (0 < q ≤ 1) of ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s))*q+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func oneConnClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
}

func TestFailedAttemptsLimiter(t *testing.T) {
	be := newBackend(t)
	in := start(t, floodConfig(be, "failed_attempts 10/1m"))
	k := in.createKey(map[string]any{"name": "valid", "user": "MXINTADM", "rights": []string{"assets:read"}})
	asset := in.siteURL + "/maximo/oslc/os/mxapiasset"

	if code, body, _ := call(t, "GET", asset, hdr("apikey", k.Key)); code != 200 {
		t.Fatalf("valid key before any failure: got %d %s, want 200", code, body)
	}
	for i := range 10 {
		key := newUnknownKey(t)
		if i%3 == 1 {
			key = corrupt(key) // malformed keys count too
		}
		if code, body, _ := call(t, "GET", asset, hdr("apikey", key)); code != 401 {
			t.Fatalf("failure %d: got %d %s, want 401", i+1, code, body)
		}
	}
	check := func(what, key string) {
		t.Helper()
		code, body, h := call(t, "GET", asset, hdr("apikey", key))
		if code != 429 {
			t.Fatalf("%s after 10 failures: got %d %s, want 429", what, code, body)
		}
		if c := floodErrorCode(body); c != "rate_limited" {
			t.Fatalf("%s: error code %q, want rate_limited", what, c)
		}
		if !strings.Contains(body, "too many requests with invalid API keys from this client") {
			t.Fatalf("%s: message %s does not say why", what, body)
		}
		ra, err := strconv.Atoi(h.Get("Retry-After"))
		if err != nil || ra < 1 || ra > 60 {
			t.Fatalf("%s: Retry-After %q, want 1..60 seconds (the rest of the window)", what, h.Get("Retry-After"))
		}
		t.Logf("%s: 429 %s Retry-After %d", what, strings.TrimSpace(body), ra)
	}
	check("another unknown key", newUnknownKey(t))
	// The limiter answers before the key is looked at: a valid key from the
	// blocked address is refused too until the window ends (the attacker
	// cannot learn that a guess was right).
	check("a valid key", k.Key)
	check("no key", "")

	// The block ends with the window; a fresh instance with a short one
	// shows it (the 1m window above would make the test slow).
	in2 := start(t, floodConfig(be, "failed_attempts 3/2s"))
	k2 := in2.createKey(map[string]any{"name": "valid", "user": "MXINTADM", "rights": []string{"assets:read"}})
	asset2 := in2.siteURL + "/maximo/oslc/os/mxapiasset"
	first := time.Now()
	for range 3 {
		call(t, "GET", asset2, hdr("apikey", newUnknownKey(t)))
	}
	if code, _, _ := call(t, "GET", asset2, hdr("apikey", k2.Key)); code != 429 {
		t.Fatalf("valid key after 3 failures in a 3/2s window: got %d, want 429", code)
	}
	time.Sleep(time.Until(first.Add(2100 * time.Millisecond)))
	if code, body, _ := call(t, "GET", asset2, hdr("apikey", k2.Key)); code != 200 {
		t.Fatalf("valid key after the window: got %d %s, want 200", code, body)
	}
}

func TestFloodKeepsValidKeysFast(t *testing.T) {
	be := newBackend(t)
	in := start(t, floodConfig(be, "failed_attempts off\n\t\tcache {\n\t\t\tmax_concurrent_lookups 8\n\t\t}"))
	k := in.createKey(map[string]any{"name": "valid", "user": "MXINTADM", "rights": []string{"assets:read"}})
	asset := in.siteURL + "/maximo/oslc/os/mxapiasset"
	valid := oneConnClient()
	if code, _ := timedGet(valid, asset, k.Key); code != 200 {
		t.Fatalf("valid key: got %d, want 200", code)
	}
	missesBefore := scrapeCounter(t, in, "keygate_cache_misses_total")

	const (
		floodConns = 4
		floodRate  = 1000 // unknown keys per second, paced
		block      = 25   // valid requests per block; blocks alternate idle and flood
		blocks     = 80   // so bursts of outside load hit both alike
	)
	// Fresh keys for every flood request of three attempts, so all reach the
	// store lookup path rather than the negative cache.
	fl := newFlooder(t, strings.TrimPrefix(in.siteURL, "http://"), "/maximo/oslc/os/mxapiasset", 12000)
	stop := fl.run(floodConns, floodRate)
	defer stop()

	var best struct{ idle, flood time.Duration }
	ok := false
	for attempt := 1; attempt <= 3 && !ok; attempt++ {
		var idle, flood []time.Duration
		answeredBefore := fl.answered.Load()
		var floodTime time.Duration
		for b := range blocks {
			on := b%2 == 1
			fl.on.Store(on)
			t0 := time.Now()
			for i := range block + 2 {
				code, d := timedGet(valid, asset, k.Key)
				if code != 200 {
					t.Fatalf("valid key: got %d, want 200", code)
				}
				if i < 2 {
					continue // the switch between idle and flood settles
				}
				if on {
					flood = append(flood, d)
				} else {
					idle = append(idle, d)
				}
			}
			if on {
				floodTime += time.Since(t0)
			}
		}
		fl.on.Store(false)
		pi, pf := quantile(idle, .99), quantile(flood, .99)
		rate := float64(fl.answered.Load()-answeredBefore) / floodTime.Seconds()
		t.Logf("attempt %d: valid cached key p50/p99 idle %v/%v; under a flood of ~%.0f random well-formed unknown keys/s: %v/%v; p99 ratio %.2f (%d samples each)",
			attempt, quantile(idle, .5), pi, rate, quantile(flood, .5), pf, float64(pf)/float64(pi), len(idle))
		if pf <= 2*pi {
			ok = true
		}
		if best.idle == 0 || float64(pf)/float64(pi) < float64(best.flood)/float64(best.idle) {
			best.idle, best.flood = pi, pf
		}
	}
	stop()
	if n := fl.bad.Load(); n > 0 {
		t.Errorf("%d flood requests were not answered 401", n)
	}
	misses := scrapeCounter(t, in, "keygate_cache_misses_total") - missesBefore
	t.Logf("flood: %d requests answered 401, %.0f cache misses (store lookups)", fl.answered.Load(), misses)
	if misses < float64(fl.answered.Load())*0.9 {
		t.Errorf("only %.0f of %d flood requests missed the cache; the flood did not reach the store", misses, fl.answered.Load())
	}
	if !ok {
		t.Fatalf("p99 of valid requests under the flood stayed above 2× the idle p99 in 3 attempts (best: idle %v, flood %v)", best.idle, best.flood)
	}
}

// flooder sends GET requests with random well-formed keys, pipelined on
// raw connections at a paced rate, and only counts the status lines of the
// answers: the cheapest client there is (keys and requests are made up
// front), so the test measures the proxy rather than its own HTTP client.
type flooder struct {
	t        *testing.T
	addr     string
	requests [][]byte     // one request per unknown key, used in turn
	next     atomic.Int64 // index into requests
	on       atomic.Bool  // sending; off, the connections stay open and idle
	answered atomic.Int64 // responses read
	bad      atomic.Int64 // responses other than 401
}

func newFlooder(t *testing.T, addr, path string, keys int) *flooder {
	f := &flooder{t: t, addr: addr, requests: make([][]byte, keys)}
	for i := range f.requests {
		f.requests[i] = fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: %s\r\napikey: %s\r\n\r\n", path, addr, newUnknownKey(t))
	}
	return f
}

// run opens conns connections that send rate requests per second in all
// while f.on is set, until the returned stop is called (idempotent).
func (f *flooder) run(conns int, rate float64) (stop func()) {
	done := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for range conns {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			f.t.Fatal(err)
		}
		wg.Add(2)
		go func() { // reader: counts status lines
			defer wg.Done()
			const status = "HTTP/1.1 "
			buf := make([]byte, 64<<10)
			carry := 0
			for {
				n, err := c.Read(buf[carry:])
				if n > 0 {
					data := buf[:carry+n]
					for {
						i := bytes.Index(data, []byte(status))
						if i < 0 || len(data) < i+len(status)+3 {
							if i < 0 {
								i = max(0, len(data)-len(status))
							}
							carry = copy(buf, data[i:])
							break
						}
						if string(data[i+len(status):i+len(status)+3]) != "401" {
							f.bad.Add(1)
						}
						f.answered.Add(1)
						data = data[i+len(status)+3:]
					}
				}
				if err != nil {
					return
				}
			}
		}()
		go func() { // paced writer
			defer wg.Done()
			defer c.Close()
			per := rate / float64(conns)
			begin, sent := time.Now(), 0
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			var buf []byte
			for {
				select {
				case <-done:
					time.Sleep(50 * time.Millisecond) // let the last answers arrive
					return
				case <-tick.C:
				}
				if !f.on.Load() {
					begin, sent = time.Now(), 0
					continue
				}
				due := int(time.Since(begin).Seconds()*per) - sent
				buf = buf[:0]
				for range min(due, 50) {
					buf = append(buf, f.requests[int(f.next.Add(1))%len(f.requests)]...)
					sent++
				}
				if len(buf) > 0 {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}
		}()
	}
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

func TestUnauthorizedTiming(t *testing.T) {
	be := newBackend(t)
	in := start(t, floodConfig(be, "failed_attempts off"))
	revoked := in.createKey(map[string]any{"name": "revoked", "user": "MXINTADM", "rights": []string{"assets:read"}})
	if code := in.adminJSON("DELETE", "/keys/"+revoked.ID, nil, nil); code != 200 {
		t.Fatalf("revoke: got %d, want 200", code)
	}
	unknown := newUnknownKey(t)
	malformed := corrupt(newUnknownKey(t))
	asset := in.siteURL + "/maximo/oslc/os/mxapiasset"
	c := oneConnClient()
	// Warm up: the first request of each loads it from the store; after it
	// the unknown key sits in the negative cache and the revoked key in
	// the cache, which is where an attacker probing repeatedly finds them.
	for range 50 {
		for _, k := range []string{unknown, revoked.Key, malformed} {
			if code, _ := timedGet(c, asset, k); code != 401 {
				t.Fatalf("got %d, want 401", code)
			}
		}
	}
	const n = 1500
	var du, dr, dm []time.Duration
	for i := range n {
		order := []*[]time.Duration{&du, &dr, &dm}
		keys := []string{unknown, revoked.Key, malformed}
		if i%2 == 1 { // alternate the order, so neither gains from going first
			order[0], order[1] = order[1], order[0]
			keys[0], keys[1] = keys[1], keys[0]
		}
		for j, k := range keys {
			_, d := timedGet(c, asset, k)
			*order[j] = append(*order[j], d)
		}
	}
	mu, mr, mm := quantile(du, .5), quantile(dr, .5), quantile(dm, .5)
	diff := mu - mr
	if diff < 0 {
		diff = -diff
	}
	t.Logf("401 latency over %d interleaved requests each: median unknown %v, revoked %v (difference %v, %.1f%%); p90 %v / %v; malformed (offline) %v",
		n, mu, mr, diff, 100*float64(diff)/float64(min(mu, mr)), quantile(du, .9), quantile(dr, .9), mm)
	// Generous: a real difference between the paths would be a store
	// lookup (hundreds of µs) on one side only; scheduling noise on a
	// shared machine is tens of µs.
	if tol := max(min(mu, mr)/4, 100*time.Microsecond); diff > tol {
		t.Fatalf("median 401 latency differs by %v between unknown and revoked keys (tolerance %v)", diff, tol)
	}
}

// floodErrorCode returns the code of a docs/design.md §1 error body, or "".
func floodErrorCode(body string) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	json.Unmarshal([]byte(body), &e)
	return e.Error.Code
}
