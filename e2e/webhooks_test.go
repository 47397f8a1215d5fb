package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/keystore/notify"
)

const webhookSecret = "whsec-e2e-0123456789"

// webhookReceiver is a real local webhook destination: it verifies every
// signature, answers 500 while down, and records the events it accepted.
type webhookReceiver struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	down     bool
	slow     time.Duration // how long an accepted POST takes to answer
	refused  int
	accepted []map[string]any
	problems []string
}

func newWebhookReceiver(t *testing.T) *webhookReceiver {
	r := &webhookReceiver{t: t}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if !r.down && r.slow > 0 {
			// A slow receiver: deliveries under way overlap the other
			// instance's polls.
			r.mu.Unlock()
			time.Sleep(r.slow)
			r.mu.Lock()
		}
		if r.down {
			r.refused++
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		if err := notify.Verify(webhookSecret, req.Header.Get(notify.SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
			r.problems = append(r.problems, "signature: "+err.Error())
		}
		if ct := req.Header.Get("Content-Type"); ct != "application/json" {
			r.problems = append(r.problems, "content type "+ct)
		}
		if req.Method != http.MethodPost {
			r.problems = append(r.problems, "method "+req.Method)
		}
		if strings.Contains(string(body), "kg_") {
			r.problems = append(r.problems, "a body holds something like a key: "+string(body))
		}
		var ev map[string]any
		if err := json.Unmarshal(body, &ev); err != nil {
			r.problems = append(r.problems, "body: "+err.Error())
		}
		r.accepted = append(r.accepted, ev)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *webhookReceiver) setDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

func (r *webhookReceiver) refusedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused
}

func (r *webhookReceiver) events() []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.problems) > 0 {
		r.t.Fatalf("webhook receiver: %v", r.problems)
	}
	return append([]map[string]any(nil), r.accepted...)
}

// has reports whether an event of type typ about key id was accepted.
func hasEvent(evs []map[string]any, typ, id string) bool {
	for _, e := range evs {
		if k, _ := e["key"].(map[string]any); e["type"] == typ && k["id"] == id {
			return true
		}
	}
	return false
}

func countEvents(evs []map[string]any, typ string) int {
	n := 0
	for _, e := range evs {
		if e["type"] == typ {
			n++
		}
	}
	return n
}

// waitEvents polls until cond holds for the accepted events.
func (r *webhookReceiver) waitEvents(what string, within time.Duration, cond func([]map[string]any) bool) []map[string]any {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for {
		evs := r.events()
		if cond(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("webhooks: %s did not happen within %s; accepted: %v", what, within, evs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitEventsOrNot polls until cond holds or within passes, and returns the
// accepted events.
func (r *webhookReceiver) waitEventsOrNot(within time.Duration, cond func([]map[string]any) bool) []map[string]any {
	deadline := time.Now().Add(within)
	for {
		evs := r.events()
		if cond(evs) || time.Now().After(deadline) {
			return evs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// assertUniqueIDs fails if an event id was accepted twice.
func assertUniqueIDs(t *testing.T, evs []map[string]any) {
	t.Helper()
	seen := map[string]int{}
	for _, e := range evs {
		id, _ := e["id"].(string)
		if id == "" {
			t.Fatalf("event without an id: %v", e)
		}
		seen[id]++
		if seen[id] > 1 {
			t.Fatalf("event %s accepted %d times, want once: %v", id, seen[id], e)
		}
	}
}

// webhookConfig is the apikey app's webhook lines, tuned for tests.
func webhookConfig(r *webhookReceiver) string {
	return fmt.Sprintf(`notify %s/hook {
			secret {env.KG_WEBHOOK_SECRET}
			expiring_within 2h
		}
		webhooks {
			timeout 2s
			retry_min 100ms
			retry_max 400ms
			poll_interval 100ms
			scan_interval 200ms
		}`, r.srv.URL)
}

// TestWebhooksDeliveredSignedThroughOutageAndRestart: events arrive signed
// and verifiable; a receiver down for a while gets every event once it is
// back, none lost, none twice, also with a restart and a reload in between;
// the expiry warning fires once.
func TestWebhooksDeliveredSignedThroughOutageAndRestart(t *testing.T) {
	rcv := newWebhookReceiver(t)
	be := newBackend(t)
	in := start(t, standard(be, webhookConfig(rcv), ""), "KG_WEBHOOK_SECRET="+webhookSecret)

	k1 := in.createKey(map[string]any{"name": "mx-int", "user": "MXINTADM", "rights": []string{"assets:read"}, "expires_in": "1h"})
	evs := rcv.waitEvents("key.created and key.expiring of the first key", 15*time.Second, func(evs []map[string]any) bool {
		return hasEvent(evs, "key.created", k1.ID) && hasEvent(evs, "key.expiring", k1.ID)
	})
	for _, e := range evs {
		k, _ := e["key"].(map[string]any)
		if k["name"] != "mx-int" || k["user"] != "MXINTADM" || e["at"] == nil {
			t.Fatalf("event %v: want key name mx-int, user MXINTADM and at", e)
		}
	}

	// The receiver goes down; events keep happening.
	rcv.setDown(true)
	k2 := in.createKey(map[string]any{"name": "second", "user": "BOB", "rights": []string{"assets:read"}})
	if code := in.adminJSON("POST", "/keys/"+k1.ID+"/rotate", map[string]any{"grace": "1m"}, nil); code != http.StatusOK {
		t.Fatalf("rotate: got %d, want 200", code)
	}
	if code := in.adminJSON("DELETE", "/keys/"+k2.ID, nil, nil); code != http.StatusOK {
		t.Fatalf("revoke: got %d, want 200", code)
	}
	deadline := time.Now().Add(15 * time.Second)
	for rcv.refusedCount() < 6 { // several retries of the three events
		if time.Now().After(deadline) {
			t.Fatalf("the receiver refused %d attempts, want retries", rcv.refusedCount())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var pending struct {
		Deliveries []map[string]any `json:"deliveries"`
		Total      int              `json:"total"`
	}
	if code := in.adminJSON("GET", "/events?status=failed", nil, &pending); code != http.StatusOK || pending.Total != 3 {
		t.Fatalf("GET /events?status=failed while down: got %d %+v, want 3 failed deliveries", code, pending)
	}

	// A restart while it is down loses nothing, nor does a reload.
	in.stop()
	in.run()
	in.reload()
	rcv.setDown(false)
	rcv.waitEvents("the events of the outage", 15*time.Second, func(evs []map[string]any) bool {
		return hasEvent(evs, "key.created", k2.ID) && hasEvent(evs, "key.rotated", k1.ID) && hasEvent(evs, "key.revoked", k2.ID)
	})
	// A marker after everything: events are sent in order of due time, so
	// once it is in, nothing is left behind.
	k3 := in.createKey(map[string]any{"name": "marker", "user": "BOB", "rights": []string{"assets:read"}})
	evs = rcv.waitEvents("the marker", 15*time.Second, func(evs []map[string]any) bool { return hasEvent(evs, "key.created", k3.ID) })
	assertUniqueIDs(t, evs)
	if n := countEvents(evs, "key.expiring"); n != 1 {
		t.Fatalf("key.expiring: got %d, want 1 (many scans, a restart)", n)
	}
	if got, want := len(evs), 6; got != want {
		t.Fatalf("accepted %d events, want %d (created ×3, expiring, rotated, revoked): %v", got, want, evs)
	}
	// The marker is recorded as delivered just after the receiver took it.
	deadline = time.Now().Add(10 * time.Second)
	for {
		if code := in.adminJSON("GET", "/events?status=pending", nil, &pending); code != http.StatusOK {
			t.Fatalf("GET /events?status=pending: got %d, want 200", code)
		}
		if pending.Total == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /events?status=pending at the end: got %+v, want none", pending)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Metrics of the restarted process: its deliveries, and nothing pending
	// once its deliverer has polled again.
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, samples := parseMetrics(scrape(t, in))
		delivered, _ := metricValue(samples, "keygate_webhook_deliveries_total", map[string]string{"result": "delivered"})
		_, hasFailed := metricValue(samples, "keygate_webhook_deliveries_total", map[string]string{"result": "failed"})
		left, hasPending := metricValue(samples, "keygate_webhook_pending", nil)
		if delivered >= 4 && hasFailed && hasPending && left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics: delivered %v (want ≥ 4: the outage's three and the marker), failed present %v, pending %v %v (want 0)",
				delivered, hasFailed, left, hasPending)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWebhooksTwoInstancesPostgres: two instances on one database deliver
// each event once between them, the expiry warning included.
func TestWebhooksTwoInstancesPostgres(t *testing.T) {
	dsn := usageDatabase(t)
	rcv := newWebhookReceiver(t)
	rcv.setDown(true) // both instances retry the same deliveries
	be := newBackend(t)
	render := usageOnPostgres(t, standard(be, webhookConfig(rcv), ""), dsn)
	env := []string{"KEYGATE_USAGE_DSN=" + dsn, "KG_WEBHOOK_SECRET=" + webhookSecret}
	a := start(t, render, env...)
	b := start(t, render, env...)
	var ids []string
	for i := range 10 {
		in := a
		if i%2 == 1 {
			in = b
		}
		fields := map[string]any{"name": fmt.Sprintf("k%d", i), "user": "MXINTADM", "rights": []string{"assets:read"}}
		if i == 0 {
			fields["expires_in"] = "1h"
		}
		ids = append(ids, in.createKey(fields).ID)
	}
	for _, id := range ids[1:5] { // not ids[0]: it expires soon
		if code := b.adminJSON("DELETE", "/keys/"+id, nil, nil); code != http.StatusOK {
			t.Fatalf("revoke %s: got %d, want 200", id, code)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for rcv.refusedCount() < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("the receiver refused %d attempts, want retries from both instances", rcv.refusedCount())
		}
		time.Sleep(50 * time.Millisecond)
	}
	rcv.mu.Lock()
	rcv.down, rcv.slow = false, 100*time.Millisecond
	rcv.mu.Unlock()
	const want = 10 + 4 + 1 // created, revoked, expiring
	if evs := rcv.waitEventsOrNot(20*time.Second, func(evs []map[string]any) bool { return len(evs) >= want }); len(evs) < want {
		t.Fatalf("webhooks: got %d events within 20s, want %d: %v\nlogs of a:\n%s", len(evs), want, evs, readLog(a))
	}
	// Wait until the outbox is empty, then nothing more may arrive.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer conn.Close(context.Background())
	for {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM webhook_outbox WHERE delivered_at IS NULL`).Scan(&n); err != nil {
			t.Fatalf("counting undelivered: %v", err)
		}
		if n == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d deliveries still undelivered", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	evs := rcv.events()
	assertUniqueIDs(t, evs)
	if len(evs) != want || countEvents(evs, "key.expiring") != 1 || countEvents(evs, "key.revoked") != 4 {
		t.Fatalf("accepted %d events (%d key.expiring, %d key.revoked), want %d with 1 and 4: %v",
			len(evs), countEvents(evs, "key.expiring"), countEvents(evs, "key.revoked"), want, evs)
	}
	for _, id := range ids {
		if !hasEvent(evs, "key.created", id) {
			t.Fatalf("no key.created for %s", id)
		}
	}
}

func readLog(in *instance) string {
	b, _ := os.ReadFile(filepath.Join(in.dir, "keygate.log"))
	return string(b)
}

// TestWebhooksThresholds: requests through the proxy take a key's quota to
// 80 % and 100 %, and keys take the licence to 90 %: each is told once.
func TestWebhooksThresholds(t *testing.T) {
	rcv := newWebhookReceiver(t)
	be := newBackend(t)
	in := start(t, standard(be, "license 3\n\t\t"+webhookConfig(rcv), ""), "KG_WEBHOOK_SECRET="+webhookSecret)
	k := in.createKey(map[string]any{"name": "metered", "user": "MXINTADM", "rights": []string{"assets:read"},
		"quota": map[string]any{"limit": 5, "period": "day"}})
	asset := in.siteURL + "/maximo/oslc/os/mxapiasset"
	for range 4 {
		if code, body, _ := call(t, "GET", asset, hdr("apikey", k.Key)); code != http.StatusOK {
			t.Fatalf("request: got %d %s, want 200", code, body)
		}
	}
	rcv.waitEvents("quota.threshold at 80 %", 15*time.Second, func(evs []map[string]any) bool {
		return countEvents(evs, "quota.threshold") == 1
	})
	if code, body, _ := call(t, "GET", asset, hdr("apikey", k.Key)); code != http.StatusOK {
		t.Fatalf("fifth request: got %d %s, want 200", code, body)
	}
	in.createKey(map[string]any{"name": "second", "user": "BOB", "rights": []string{"assets:read"}}) // 2 of 3
	// 3 of 3, for a few seconds: the licence reaches 90 %, then falls below.
	k3 := in.createKey(map[string]any{"name": "marker", "user": "BOB", "rights": []string{"assets:read"}, "expires_in": "3s"})
	rcv.waitEvents("quota.threshold at 100 % and license.threshold", 15*time.Second, func(evs []map[string]any) bool {
		return countEvents(evs, "quota.threshold") >= 2 && countEvents(evs, "license.threshold") >= 1
	})
	// Later scans send neither again.
	rcv.waitEvents("key.expired of the marker (scans went on)", 15*time.Second, func(evs []map[string]any) bool {
		return hasEvent(evs, "key.expired", k3.ID)
	})
	evs := rcv.events()
	assertUniqueIDs(t, evs)
	var pcts []any
	for _, e := range evs {
		if e["type"] == "quota.threshold" {
			pcts = append(pcts, e["percent"])
			if key, _ := e["key"].(map[string]any); key["id"] != k.ID {
				t.Fatalf("quota.threshold of another key: %v", e)
			}
		}
	}
	if fmt.Sprint(pcts) != "[80 100]" || countEvents(evs, "license.threshold") != 1 {
		t.Fatalf("got quota.threshold percents %v and %d license.threshold, want [80 100] and 1: %v", pcts, countEvents(evs, "license.threshold"), evs)
	}
}
