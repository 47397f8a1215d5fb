package e2e

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A reload that fails after the apikey app started (here: a port that is
// already taken) must change nothing live: usage keeps being flushed at the
// running config's interval, not the failed config's.
func TestFailedReloadKeepsFlushInterval(t *testing.T) {
	be := newBackend(t)
	in := start(t, standard(be, "flush_interval 1s", ""))
	k := in.createKey(map[string]any{"name": "mx", "user": "MXINTADM", "rights": []string{"assets:read"}})
	use := func(n int) {
		for range n {
			if code, body, _ := call(t, "GET", in.siteURL+"/maximo/oslc/os/mxapiasset", hdr("apikey", k.Key)); code != 200 {
				t.Fatalf("GET: %d %s", code, body)
			}
		}
	}
	flushedWithin := func(d time.Duration) bool {
		t.Helper()
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			if scrapeCounter(t, in, "keygate_meter_pending_requests") == 0 {
				return true
			}
			time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
		}
		return false
	}
	use(3)
	if !flushedWithin(10 * time.Second) {
		t.Fatal("counts not flushed within 10s at flush_interval 1s")
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0") // no SO_REUSEPORT: Caddy cannot bind it
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bad := strings.Replace(readFile(t, in.config), "flush_interval 1s", "flush_interval 1h", 1) +
		"\nhttp://" + busy.Addr().String() + " {\n\trespond ok\n}\n"
	// Caddy starts a config's apps in map order, so a failing config's
	// apikey app starts before or after the failing http app at random;
	// several tries cover both (the admin API must then still answer).
	for try := range 6 {
		req, _ := http.NewRequest("POST", "http://"+in.adminAddr+"/load", strings.NewReader(bad))
		req.Header.Set("Content-Type", "text/caddyfile")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("the reload onto a taken port succeeded; the test needs it to fail")
		}
		if !strings.Contains(string(msg), "address already in use") {
			t.Fatalf("the reload failed, but not at start (binding the port): %s", msg)
		}
		if got := in.usageOf(k.ID); got != 3 {
			t.Fatalf("after failed reload %d: usage %d, want 3", try+1, got)
		}
	}

	use(5)
	if !flushedWithin(10 * time.Second) {
		t.Fatal("after a failed reload to flush_interval 1h, counts are no longer flushed every 1s")
	}
	if got := in.usageOf(k.ID); got != 8 {
		t.Fatalf("usage %d, want 8", got)
	}
	// SIGKILL loses nothing flushed: the counts are in the store, not only
	// in the killed process.
	in.usageKill()
	in.usageRestart()
	if got := in.usageOf(k.ID); got != 8 {
		t.Fatalf("usage after SIGKILL and restart: %d, want 8 (flushed every 1s)", got)
	}
}
