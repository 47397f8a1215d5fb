package notify_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/notify"
	"github.com/keygate/keygate/keystore/storetest"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestSignVerify(t *testing.T) {
	t.Parallel()
	body := []byte(`{"id":"evt_1","type":"key.created"}`)
	at := time.Unix(1764000000, 0)
	h := notify.Sign("s3cret", at, body)
	// Reference value, as docs/events.md computes it:
	// printf '%s.' 1764000000 | cat - body.json | openssl dgst -sha256 -hmac s3cret
	if want := "t=1764000000,v1=abd0e4b6410ccad07b3c5cc31e52f674c5c1326f956423fca764f01b4128b6c1"; h != want {
		t.Fatalf("Sign: got %q, want %q", h, want)
	}
	tests := []struct {
		name   string
		secret string
		header string
		body   []byte
		now    time.Time
		ok     bool
	}{
		{"valid", "s3cret", h, body, at.Add(time.Minute), true},
		{"valid among several v1", "s3cret", "t=1764000000,v1=00," + strings.TrimPrefix(h, "t=1764000000,"), body, at, true},
		{"wrong secret", "other", h, body, at, false},
		{"body changed", "s3cret", h, []byte(`{"id":"evt_2","type":"key.created"}`), at, false},
		{"time changed", "s3cret", strings.Replace(h, "t=1764000000", "t=1764000001", 1), body, at, false},
		{"too old", "s3cret", h, body, at.Add(6 * time.Minute), false},
		{"from the future", "s3cret", h, body, at.Add(-6 * time.Minute), false},
		{"no signature", "s3cret", "t=1764000000", body, at, false},
		{"garbage", "s3cret", "garbage", body, at, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := notify.Verify(tt.secret, tt.header, tt.body, tt.now, 5*time.Minute)
			if (err == nil) != tt.ok {
				t.Fatalf("Verify: got %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		attempts int
		want     time.Duration
	}{
		{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {10, 512 * time.Second},
		{12, 2048 * time.Second}, {13, time.Hour}, {1000, time.Hour},
	}
	for _, tt := range tests {
		if got := notify.Backoff(tt.attempts, time.Second, time.Hour); got != tt.want {
			t.Errorf("Backoff(%d): got %v, want %v", tt.attempts, got, tt.want)
		}
	}
}

func TestTargetValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		target notify.Target
		err    string
	}{
		{"ok", notify.Target{URL: "https://hooks.example/k", Secret: "x", Events: []string{"key.created"}}, ""},
		{"relative", notify.Target{URL: "/hook", Secret: "x"}, "absolute http or https"},
		{"ftp", notify.Target{URL: "ftp://h/x", Secret: "x"}, "absolute http or https"},
		{"no secret", notify.Target{URL: "https://h/x"}, "secret is required"},
		{"unknown event", notify.Target{URL: "https://h/x", Secret: "x", Events: []string{"key.exploded"}}, `event "key.exploded" is unknown`},
		{"query redacted", notify.Target{URL: "https://h/x?token=abc"}, "https://h/x:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.target.Validate()
			if tt.err == "" {
				if err != nil {
					t.Fatalf("Validate: got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) || strings.Contains(err.Error(), "abc") {
				t.Fatalf("Validate: got %v, want an error with %q and no query", err, tt.err)
			}
		})
	}
}

// receiver is a webhook destination recording what it got.
type receiver struct {
	srv    *httptest.Server
	secret string
	clk    *clock

	mu     sync.Mutex
	status int // answered; 0 means 200
	got    []map[string]any
	errs   []string
}

func newReceiver(t *testing.T, secret string, clk *clock) *receiver {
	r := &receiver{secret: secret, clk: clk}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.status != 0 {
			w.WriteHeader(r.status)
			return
		}
		if ct := req.Header.Get("Content-Type"); ct != "application/json" {
			r.errs = append(r.errs, "content type "+ct)
		}
		if err := notify.Verify(r.secret, req.Header.Get(notify.SignatureHeader), body, r.clk.Now(), 5*time.Minute); err != nil {
			r.errs = append(r.errs, err.Error())
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			r.errs = append(r.errs, err.Error())
		}
		r.got = append(r.got, m)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) setStatus(s int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = s
}

func (r *receiver) events(t *testing.T) []map[string]any {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) > 0 {
		t.Fatalf("receiver: %v", r.errs)
	}
	return append([]map[string]any(nil), r.got...)
}

func types(evs []map[string]any) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e["type"].(string))
	}
	return out
}

type fixture struct {
	store *storetest.Memory
	svc   *keystore.Service
	n     *notify.Notifier
	clk   *clock
	rcv   *receiver
}

func newFixture(t *testing.T, opts notify.Options) *fixture {
	t.Helper()
	clk := &clock{now: t0}
	rcv := newReceiver(t, "s3cret", clk)
	store := storetest.NewMemory()
	if opts.Targets == nil {
		opts.Targets = []notify.Target{{URL: rcv.srv.URL + "/hook", Secret: "s3cret", ExpiringWithin: 24 * time.Hour}}
	}
	opts.Store, opts.Now = store, clk.Now
	n := notify.New(opts)
	svc := &keystore.Service{Store: store, Now: clk.Now, License: opts.License, OnAudit: []func(context.Context, keystore.AuditEvent){n.Audit}}
	return &fixture{store: store, svc: svc, n: n, clk: clk, rcv: rcv}
}

// deliver sends everything due now.
func (f *fixture) deliver(t *testing.T) {
	t.Helper()
	for {
		n, err := f.n.DeliverDue(t.Context())
		if err != nil {
			t.Fatalf("DeliverDue: %v", err)
		}
		if n == 0 {
			return
		}
	}
}

func (f *fixture) create(t *testing.T, spec keystore.KeySpec) *keystore.Key {
	t.Helper()
	if spec.Rights == nil {
		spec.Rights = []string{"assets:read"}
	}
	k, secret, err := f.svc.Create(t.Context(), keystore.LocalActor(), spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if secret == "" {
		t.Fatal("Create: no secret")
	}
	return k
}

func TestLifecycleEvents(t *testing.T) {
	t.Parallel()
	f := newFixture(t, notify.Options{})
	ctx := t.Context()
	k := f.create(t, keystore.KeySpec{Name: "mx-int", User: "MXINTADM"})
	if _, _, err := f.svc.Rotate(ctx, keystore.LocalActor(), k.ID, keystore.RotateSpec{Grace: "1h"}); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if _, err := f.svc.Revoke(ctx, keystore.LocalActor(), k.ID); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if _, err := f.svc.Revoke(ctx, keystore.LocalActor(), k.ID); err != nil { // idempotent: no second event
		t.Fatalf("Revoke again: %v", err)
	}
	k2 := f.create(t, keystore.KeySpec{Name: "other", User: "BOB"})
	if _, err := f.svc.RevokeUser(ctx, keystore.LocalActor(), "BOB"); err != nil {
		t.Fatalf("RevokeUser: %v", err)
	}
	f.deliver(t)
	evs := f.rcv.events(t)
	if got, want := strings.Join(types(evs), " "), "key.created key.rotated key.revoked key.created key.revoked"; got != want {
		t.Fatalf("events: got %s, want %s", got, want)
	}
	ids := map[string]bool{}
	for _, e := range evs {
		ids[e["id"].(string)] = true
		key := e["key"].(map[string]any)
		if key["id"] == nil || key["name"] == nil || key["user"] == nil {
			t.Fatalf("event %v: key needs id, name and user", e)
		}
		for k := range key {
			if k != "id" && k != "name" && k != "user" {
				t.Fatalf("event %v: key holds %q; it must hold only id, name and user", e, k)
			}
		}
	}
	if len(ids) != len(evs) {
		t.Fatalf("event ids: got %d distinct of %d events, want all distinct", len(ids), len(evs))
	}
	if evs[4]["key"].(map[string]any)["id"] != k2.ID || evs[4]["reason"] != "revoke_user" {
		t.Fatalf("revoke_user event: got %v, want key %s and reason revoke_user", evs[4], k2.ID)
	}
	if evs[1]["grace_until"] == nil {
		t.Fatalf("key.rotated: got %v, want grace_until", evs[1])
	}
	// Delivered: nothing is sent again.
	f.clk.Add(time.Hour)
	f.deliver(t)
	if n := len(f.rcv.events(t)); n != 5 {
		t.Fatalf("after another round: got %d events, want still 5", n)
	}
}

func TestRetryWithBackoffUntilDelivered(t *testing.T) {
	t.Parallel()
	f := newFixture(t, notify.Options{MinBackoff: time.Second, MaxBackoff: 4 * time.Second})
	f.rcv.setStatus(http.StatusInternalServerError)
	f.create(t, keystore.KeySpec{Name: "a", User: "U"})
	f.create(t, keystore.KeySpec{Name: "b", User: "U"})
	for i, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		f.deliver(t)
		failed, n, err := f.store.ListDeliveries(t.Context(), keystore.DeliveryFailed, 0)
		if err != nil || n != 2 || failed[0].Attempts != i+1 || failed[0].LastError != "HTTP 500" {
			t.Fatalf("round %d: failed deliveries %d %+v %v, want 2 with %d attempts and HTTP 500", i, n, failed, err, i+1)
		}
		if got := failed[0].NextAt.Sub(f.clk.Now()); got != wait {
			t.Fatalf("round %d: retry in %v, want %v", i, got, wait)
		}
		// Not due before the backoff ends.
		f.clk.Add(wait - time.Millisecond)
		if n, _ := f.n.DeliverDue(t.Context()); n != 0 {
			t.Fatalf("round %d: %d deliveries claimed before the backoff ended, want 0", i, n)
		}
		f.clk.Add(time.Millisecond)
	}
	f.rcv.setStatus(0)
	f.deliver(t)
	if got := types(f.rcv.events(t)); len(got) != 2 {
		t.Fatalf("after the receiver is back: got %v, want both key.created", got)
	}
	if _, n, _ := f.store.ListDeliveries(t.Context(), keystore.DeliveryPending, 0); n != 0 {
		t.Fatalf("pending after delivery: %d, want 0", n)
	}
}

func TestFiltersAndTargets(t *testing.T) {
	t.Parallel()
	clk := &clock{now: t0} // the receivers' clock; the fixture's stays at t0 too
	only := newReceiver(t, "one", clk)
	all := newReceiver(t, "two", clk)
	f := newFixture(t, notify.Options{Targets: []notify.Target{
		{URL: only.srv.URL, Secret: "one", Events: []string{notify.EventKeyRevoked}},
		{URL: all.srv.URL, Secret: "two"},
	}})
	k := f.create(t, keystore.KeySpec{Name: "a", User: "U"})
	f.svc.Revoke(t.Context(), keystore.LocalActor(), k.ID)
	f.deliver(t)
	if got := strings.Join(types(only.events(t)), " "); got != "key.revoked" {
		t.Fatalf("target subscribed to key.revoked: got %q", got)
	}
	if got := strings.Join(types(all.events(t)), " "); got != "key.created key.revoked" {
		t.Fatalf("target of all events: got %q", got)
	}
	if only.events(t)[0]["id"] != all.events(t)[1]["id"] {
		t.Fatal("one event sent to two targets: got two ids, want one")
	}
}

func TestExpiryEventsOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, notify.Options{})
	k := f.create(t, keystore.KeySpec{Name: "a", User: "U", ExpiresIn: "48h"})
	f.create(t, keystore.KeySpec{Name: "forever", User: "U"})
	scan := func() {
		t.Helper()
		if err := f.n.Scan(t.Context()); err != nil {
			t.Fatalf("Scan: %v", err)
		}
		f.deliver(t)
	}
	scan()
	if got := types(f.rcv.events(t)); len(got) != 2 {
		t.Fatalf("48h before expiry (expiring_within 24h): got %v, want only the two key.created", got)
	}
	f.clk.Add(24 * time.Hour)
	scan()
	f.clk.Add(time.Hour)
	scan()
	// A second notifier on the same store (another instance) finds it enqueued.
	other := notify.New(notify.Options{Store: f.store, Now: f.clk.Now, Targets: []notify.Target{{URL: f.rcv.srv.URL + "/hook", Secret: "s3cret", ExpiringWithin: 24 * time.Hour}}})
	if err := other.Scan(t.Context()); err != nil {
		t.Fatalf("Scan of another instance: %v", err)
	}
	f.deliver(t)
	evs := f.rcv.events(t)
	if got := strings.Join(types(evs), " "); got != "key.created key.created key.expiring" {
		t.Fatalf("within 24h of expiry, scanned three times: got %s, want one key.expiring", got)
	}
	if evs[2]["key"].(map[string]any)["id"] != k.ID || evs[2]["expires_at"] != k.ExpiresAt.Format(time.RFC3339) {
		t.Fatalf("key.expiring: got %v, want key %s expiring at %s", evs[2], k.ID, k.ExpiresAt)
	}
	f.clk.Add(24 * time.Hour)
	scan()
	scan()
	if got := strings.Join(types(f.rcv.events(t)), " "); got != "key.created key.created key.expiring key.expired" {
		t.Fatalf("after expiry: got %s, want one key.expired", got)
	}
}

func TestQuotaThresholds(t *testing.T) {
	t.Parallel()
	f := newFixture(t, notify.Options{})
	k := f.create(t, keystore.KeySpec{Name: "a", User: "U", Quota: &keystore.Quota{Limit: 10, Period: "day"}})
	use := func(n int64) {
		t.Helper()
		err := f.store.AddUsage(t.Context(), "batch-"+strconv.Itoa(int(n))+f.clk.Now().String(), []keystore.UsageDelta{{KeyID: k.ID, Day: t0.Truncate(24 * time.Hour), Requests: n, LastUsed: f.clk.Now()}})
		if err != nil {
			t.Fatalf("AddUsage: %v", err)
		}
	}
	scan := func() {
		t.Helper()
		if err := f.n.Scan(t.Context()); err != nil {
			t.Fatalf("Scan: %v", err)
		}
		f.deliver(t)
	}
	use(7)
	scan()
	use(1)
	scan()
	scan()
	use(2)
	scan()
	var pcts []float64
	for _, e := range f.rcv.events(t) {
		if e["type"] == notify.EventQuotaThreshold {
			pcts = append(pcts, e["percent"].(float64))
		}
	}
	if len(pcts) != 2 || pcts[0] != 80 || pcts[1] != 100 {
		t.Fatalf("quota.threshold percents: got %v, want [80 100] once each", pcts)
	}
}

func TestLicenseThreshold(t *testing.T) {
	t.Parallel()
	f := newFixture(t, notify.Options{License: 10})
	var keys []*keystore.Key
	for range 9 {
		keys = append(keys, f.create(t, keystore.KeySpec{Name: "k", User: "U"}))
	}
	count := func() int {
		n := 0
		for _, e := range f.rcv.events(t) {
			if e["type"] == notify.EventLicenseThreshold {
				n++
			}
		}
		return n
	}
	scan := func() {
		t.Helper()
		if err := f.n.Scan(t.Context()); err != nil {
			t.Fatalf("Scan: %v", err)
		}
		f.deliver(t)
	}
	scan()
	scan()
	if n := count(); n != 1 {
		t.Fatalf("9 of 10 in use, two scans: %d license.threshold, want 1", n)
	}
	f.svc.Revoke(t.Context(), keystore.LocalActor(), keys[0].ID)
	scan()
	f.create(t, keystore.KeySpec{Name: "k", User: "U"})
	scan()
	if n := count(); n != 2 {
		t.Fatalf("dropped below 90 %% and back: %d license.threshold, want 2", n)
	}
}

func TestUserQuotaThreshold(t *testing.T) {
	t.Parallel()
	f := newFixture(t, notify.Options{})
	f.create(t, keystore.KeySpec{Name: "a", User: "U"})
	f.create(t, keystore.KeySpec{Name: "b", User: "U"})
	if err := f.store.SetUserLimits(t.Context(), "U", keystore.UserLimits{Quota: &keystore.Quota{Limit: 100, Period: "month"}}); err != nil {
		t.Fatalf("SetUserLimits: %v", err)
	}
	err := f.store.AddUsage(t.Context(), "b1", []keystore.UsageDelta{{KeyID: keystore.UserUsageID("U"), Day: t0.Truncate(24 * time.Hour), Requests: 85, LastUsed: t0}})
	if err != nil {
		t.Fatalf("AddUsage: %v", err)
	}
	for range 2 {
		if err := f.n.Scan(t.Context()); err != nil {
			t.Fatalf("Scan: %v", err)
		}
	}
	f.deliver(t)
	var got []map[string]any
	for _, e := range f.rcv.events(t) {
		if e["type"] == notify.EventQuotaThreshold {
			got = append(got, e)
		}
	}
	if len(got) != 1 || got[0]["user"] != "U" || got[0]["percent"] != 80.0 || got[0]["used"] != 85.0 || got[0]["key"] != nil ||
		got[0]["period_start"] != "2026-11-01T00:00:00Z" {
		t.Fatalf("user quota at 85 of 100 a month: got %v, want one quota.threshold of user U at 80 %%, used 85, no key, period from 2026-11-01", got)
	}
}

func TestPurgeKeepsOnceOnlyEvents(t *testing.T) {
	t.Parallel()
	f := newFixture(t, notify.Options{Retention: 24 * time.Hour})
	f.create(t, keystore.KeySpec{Name: "a", User: "U", ExpiresIn: "2h"})
	if err := f.n.Scan(t.Context()); err != nil {
		t.Fatalf("Scan: %v", err)
	}
	f.deliver(t)
	f.clk.Add(25 * time.Hour) // expired, and both deliveries past retention
	if n, err := f.n.Purge(t.Context()); err != nil || n != 1 {
		t.Fatalf("Purge: got %d %v, want 1 (key.created; key.expiring stays: it is once-only)", n, err)
	}
	// Back before expiry, on a fresh instance (no memory of its own): the
	// warning must not come again.
	f.clk.Add(-24 * time.Hour)
	other := notify.New(notify.Options{Store: f.store, Now: f.clk.Now, Targets: []notify.Target{{URL: f.rcv.srv.URL + "/hook", Secret: "s3cret", ExpiringWithin: 24 * time.Hour}}})
	if err := other.Scan(t.Context()); err != nil {
		t.Fatalf("Scan: %v", err)
	}
	f.deliver(t)
	if got := strings.Join(types(f.rcv.events(t)), " "); got != "key.created key.expiring" {
		t.Fatalf("events: got %s, want key.created key.expiring, each once", got)
	}
}

// TestSlowDestinationStaysWithinLease: POSTs that use up the lease leave
// the rest of the batch handed back, due, with no attempt counted, so no
// other instance sends them while this one still holds them.
func TestSlowDestinationStaysWithinLease(t *testing.T) {
	t.Parallel()
	clk := &clock{now: t0}
	var mu sync.Mutex
	got := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got++
		mu.Unlock()
		clk.Add(15 * time.Second) // each POST takes 15s of the 50s lease
	}))
	t.Cleanup(srv.Close)
	store := storetest.NewMemory()
	n := notify.New(notify.Options{Store: store, Now: clk.Now, Timeout: 10 * time.Second,
		Targets: []notify.Target{{URL: srv.URL, Secret: "s"}}})
	svc := &keystore.Service{Store: store, Now: clk.Now, OnAudit: []func(context.Context, keystore.AuditEvent){n.Audit}}
	for range 6 {
		if _, _, err := svc.Create(t.Context(), keystore.LocalActor(), keystore.KeySpec{Name: "k", User: "U", Rights: []string{"a:read"}}); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	claimed, err := n.DeliverDue(t.Context())
	if err != nil || claimed != 6 {
		t.Fatalf("DeliverDue: claimed %d %v, want 6", claimed, err)
	}
	// Lease 2×10s+30s = 50s; a POST may start until 35s: at 0, 15s and 30s.
	if got != 3 {
		t.Fatalf("POSTs within one lease: got %d, want 3", got)
	}
	pending, total, err := store.ListDeliveries(t.Context(), keystore.DeliveryPending, 0)
	if err != nil || total != 3 {
		t.Fatalf("pending after the lease was used up: %d %v, want 3", total, err)
	}
	for _, d := range pending {
		if d.Attempts != 0 || d.NextAt.After(clk.Now()) {
			t.Fatalf("handed-back delivery %+v: want no attempt and due now (%v)", d, clk.Now())
		}
	}
}

// TestSlowDestinationHoldsUpOnlyItself: a destination that hangs does not
// delay another's events.
func TestSlowDestinationHoldsUpOnlyItself(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	t.Cleanup(hung.Close)
	t.Cleanup(func() { close(release) })
	clk := &clock{now: t0}
	fast := newReceiver(t, "two", clk)
	store := storetest.NewMemory()
	n := notify.New(notify.Options{Store: store, Now: clk.Now, Timeout: time.Minute, Targets: []notify.Target{
		{URL: hung.URL, Secret: "one"}, {URL: fast.srv.URL, Secret: "two"},
	}})
	svc := &keystore.Service{Store: store, Now: clk.Now, OnAudit: []func(context.Context, keystore.AuditEvent){n.Audit}}
	for range 3 {
		if _, _, err := svc.Create(t.Context(), keystore.LocalActor(), keystore.KeySpec{Name: "k", User: "U", Rights: []string{"a:read"}}); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	go n.DeliverDue(context.WithoutCancel(t.Context()))
	deadline := time.Now().Add(10 * time.Second)
	for len(fast.events(t)) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the fast destination got %d of 3 events while the other hung, want all", len(fast.events(t)))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
