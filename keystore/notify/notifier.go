package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/keygate/keygate/keystore"
)

// Defaults of Options.
const (
	DefaultTimeout      = 10 * time.Second
	DefaultMinBackoff   = time.Second
	DefaultMaxBackoff   = time.Hour
	DefaultPollInterval = 2 * time.Second
	DefaultScanInterval = time.Minute
	// expiredLookback bounds how long after a key's expiry key.expired is
	// still sent (an instance that was down catches up within it).
	expiredLookback = 7 * 24 * time.Hour
	claimBatch      = 20
	// DefaultRetention is how long delivered events stay in the outbox.
	DefaultRetention = 7 * 24 * time.Hour
	purgeEvery       = time.Hour
)

// LocalCounter reports requests counted by this instance and not yet in the
// store (the Meter), so quota thresholds are seen at once.
type LocalCounter interface {
	LocalCount(keyID string, periodStart time.Time) int64
}

// Options configure a Notifier.
type Options struct {
	// Store holds the keys, usage and the outbox.
	Store keystore.Store
	// Targets are the destinations.
	Targets []Target
	// License is the licence (active keys allowed); 0 disables
	// license.threshold.
	License int
	// DefaultQuota applies to keys without a quota of their own.
	DefaultQuota *keystore.Quota
	// Local adds this instance's unflushed counts to quota usage; may be nil.
	Local LocalCounter
	// Client sends the requests. Default: a client that follows no
	// redirects.
	Client *http.Client
	// Timeout bounds each POST. Default 10s.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed attempt,
	// doubling from MinBackoff. Defaults 1s and 1h.
	MinBackoff, MaxBackoff time.Duration
	// PollInterval is how often the outbox is read for due deliveries
	// (events of this instance are sent at once). Default 2s.
	PollInterval time.Duration
	// ScanInterval is how often keys, quotas and the licence are checked.
	// Default 1m.
	ScanInterval time.Duration
	// Retention is how long delivered events stay in the outbox (those
	// that make a condition once-only stay for good). Default 7 days.
	Retention time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives delivery failures; nil discards.
	Logger *zap.Logger
	// OnResult is called after every attempt with "delivered" or "failed".
	OnResult func(result string)
	// OnPending is called with the number of undelivered deliveries in the
	// store after every poll.
	OnPending func(n int64)
}

// Notifier enqueues events and delivers them. Audit is its Service.OnAudit
// hook; Run delivers and scans.
type Notifier struct {
	o       Options
	targets []string
	kick    chan struct{}
	pending atomic.Int64

	mu          sync.Mutex
	enqueued    map[string]bool // dedupe values this instance enqueued or found held
	licenseHigh *bool           // last licence state seen; nil before the first scan
}

// New returns a Notifier; it sends nothing until Run.
func New(o Options) *Notifier {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.ScanInterval <= 0 {
		o.ScanInterval = DefaultScanInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Client == nil {
		o.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	n := &Notifier{o: o, kick: make(chan struct{}, 1), enqueued: map[string]bool{}}
	for _, t := range o.Targets {
		n.targets = append(n.targets, t.URL)
	}
	return n
}

// Pending is the number of undelivered deliveries seen at the last poll.
func (n *Notifier) Pending() int64 { return n.pending.Load() }

func (n *Notifier) now() time.Time { return n.o.Now().UTC() }

// event is one event before it is fanned out to the targets.
type event struct {
	typ    string
	at     time.Time
	key    *keyRef
	fields map[string]any
	// dedupe, when set, makes the event once-only across instances
	// (suffixed with each target's URL).
	dedupe string
}

// enqueue stores one delivery of e per target that wants it (and for which
// want, when given, says yes) and wakes the deliverer.
func (n *Notifier) enqueue(ctx context.Context, e event, want func(*Target) bool) error {
	id := newID("evt_")
	body := map[string]any{"id": id, "type": e.typ, "at": e.at.Format(time.RFC3339)}
	if e.key != nil {
		body["key"] = e.key
	}
	for k, v := range e.fields {
		body[k] = v
	}
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encoding event %s: %w", e.typ, err)
	}
	var ds []keystore.Delivery
	n.mu.Lock()
	for i := range n.o.Targets {
		t := &n.o.Targets[i]
		if !t.Wants(e.typ) || (want != nil && !want(t)) {
			continue
		}
		d := keystore.Delivery{ID: newID("dlv_"), Target: t.URL, Type: e.typ, Body: b, CreatedAt: n.now(), NextAt: n.now()}
		if e.dedupe != "" {
			d.Dedupe = e.dedupe + "|" + t.URL
			if n.enqueued[d.Dedupe] {
				continue
			}
		}
		ds = append(ds, d)
	}
	n.mu.Unlock()
	if len(ds) == 0 {
		return nil
	}
	if _, err := n.o.Store.EnqueueDeliveries(ctx, ds); err != nil {
		return fmt.Errorf("enqueueing event %s: %w", e.typ, err)
	}
	n.mu.Lock()
	for _, d := range ds {
		if d.Dedupe != "" {
			n.enqueued[d.Dedupe] = true
		}
	}
	n.mu.Unlock()
	n.Kick()
	return nil
}

// Kick wakes the deliverer.
func (n *Notifier) Kick() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// Audit is the Service.OnAudit hook: it turns key lifecycle audit events
// into webhook events, stored before the admin call returns.
func (n *Notifier) Audit(ctx context.Context, a keystore.AuditEvent) {
	e, ok := n.fromAudit(ctx, a)
	if !ok {
		return
	}
	if err := n.enqueue(ctx, e, nil); err != nil {
		n.o.Logger.Error("webhook event not stored", zap.String("type", e.typ), zap.String("key_id", a.KeyID), zap.Error(err))
	}
}

func (n *Notifier) fromAudit(ctx context.Context, a keystore.AuditEvent) (event, bool) {
	e := event{at: a.At.UTC(), fields: map[string]any{"actor": a.Actor}}
	switch a.Action {
	case keystore.ActionCreate, keystore.ActionImport:
		e.typ = EventKeyCreated
		if a.Action == keystore.ActionImport {
			e.fields["imported"] = true
		}
	case keystore.ActionRotate:
		e.typ = EventKeyRotated
		if g, ok := a.Details["grace_until"]; ok {
			e.fields["grace_until"] = g
		}
	case keystore.ActionRevoke:
		if a.Details["already_revoked"] == true {
			return e, false
		}
		e.typ = EventKeyRevoked
		e.fields["reason"] = "revoke"
		if a.Details["cascade"] == true {
			e.fields["reason"] = "cascade"
			e.fields["revoked_with"] = a.Details["revoked_with"]
		}
	case keystore.ActionRevokeUser:
		if a.KeyID == "" {
			return e, false
		}
		e.typ = EventKeyRevoked
		e.fields["reason"] = "revoke_user"
	case keystore.ActionRevokeLeaked:
		if a.Details["result"] != "revoked" {
			return e, false
		}
		e.typ = EventKeyRevoked
		e.fields["reason"] = "leaked"
	default:
		return e, false
	}
	e.key = &keyRef{ID: a.KeyID}
	if k, err := n.o.Store.GetKey(ctx, a.KeyID); err == nil {
		e.key = refOf(k)
		if e.typ == EventKeyCreated && k.ExpiresAt != nil {
			e.fields["expires_at"] = k.ExpiresAt.UTC().Format(time.RFC3339)
		}
	} else {
		n.o.Logger.Warn("webhook event without the key's name and user: reading the key failed", zap.String("key_id", a.KeyID), zap.Error(err))
	}
	return e, true
}

// Run delivers due events and scans for conditions until ctx is done. A
// POST under way when ctx ends is finished (within Timeout) and recorded,
// so a stop neither loses nor repeats it.
func (n *Notifier) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		n.scanLoop(ctx)
	}()
	n.deliverLoop(ctx)
	wg.Wait()
}

func (n *Notifier) scanLoop(ctx context.Context) {
	t := time.NewTicker(n.o.ScanInterval)
	defer t.Stop()
	var purged time.Time
	for {
		if err := n.Scan(ctx); err != nil && ctx.Err() == nil {
			n.o.Logger.Warn("webhook scan failed; retrying at the next", zap.Error(err))
		}
		if now := n.now(); now.Sub(purged) >= purgeEvery {
			if _, err := n.Purge(ctx); err != nil && ctx.Err() == nil {
				n.o.Logger.Warn("removing delivered webhook events failed; retrying later", zap.Error(err))
			} else {
				purged = now
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (n *Notifier) deliverLoop(ctx context.Context) {
	t := time.NewTicker(n.o.PollInterval)
	defer t.Stop()
	for {
		for ctx.Err() == nil {
			sent, err := n.DeliverDue(ctx)
			if err != nil {
				if ctx.Err() == nil {
					n.o.Logger.Warn("reading the webhook outbox failed", zap.Error(err))
				}
				break
			}
			if sent < claimBatch {
				break
			}
		}
		n.countPending(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.kick:
		}
	}
}

func (n *Notifier) countPending(ctx context.Context) {
	if _, total, err := n.o.Store.ListDeliveries(ctx, keystore.DeliveryPending, 1); err == nil {
		n.pending.Store(int64(total))
		if n.o.OnPending != nil {
			n.o.OnPending(int64(total))
		}
	}
}

// lease is how long a claimed delivery stays with this instance: longer
// than a POST may take.
func (n *Notifier) lease() time.Duration { return 2*n.o.Timeout + 30*time.Second }

// DeliverDue claims the deliveries due now and sends them; it returns how
// many it claimed.
func (n *Notifier) DeliverDue(ctx context.Context) (int, error) {
	if len(n.targets) == 0 {
		return 0, nil
	}
	claimed := n.now()
	ds, err := n.o.Store.ClaimDeliveries(ctx, n.targets, claimed, n.lease(), claimBatch)
	if err != nil {
		return 0, err
	}
	// A POST may start only while it can end within the lease; after that
	// another instance may claim the delivery.
	last := claimed.Add(n.lease() - n.o.Timeout - 5*time.Second)
	// Each destination gets its own sender, in due order, so a slow one
	// holds up only its own events.
	byTarget := map[string][]keystore.Delivery{}
	var order []string
	for _, d := range ds {
		if byTarget[d.Target] == nil {
			order = append(order, d.Target)
		}
		byTarget[d.Target] = append(byTarget[d.Target], d)
	}
	var wg sync.WaitGroup
	for _, target := range order {
		wg.Add(1)
		go func(ds []keystore.Delivery) {
			defer wg.Done()
			n.send(ctx, ds, last)
		}(byTarget[target])
	}
	wg.Wait()
	return len(ds), nil
}

// send delivers ds in order, starting a POST only until last.
func (n *Notifier) send(ctx context.Context, ds []keystore.Delivery, last time.Time) {
	// Claimed deliveries are sent even if ctx ends meanwhile, so they are
	// recorded rather than left to the lease.
	sendCtx := context.WithoutCancel(ctx)
	for i, d := range ds {
		if i > 0 && (ctx.Err() != nil || n.now().After(last)) {
			// Stopping, or a slow destination used up the lease: hand the
			// rest back unsent, due at once, for the next claim (this
			// instance's, another's or the next config's).
			for _, r := range ds[i:] {
				n.reschedule(sendCtx, r, n.now(), "")
			}
			return
		}
		n.deliver(sendCtx, d)
	}
}

func (n *Notifier) target(u string) *Target {
	for i := range n.o.Targets {
		if n.o.Targets[i].URL == u {
			return &n.o.Targets[i]
		}
	}
	return nil
}

func (n *Notifier) deliver(ctx context.Context, d keystore.Delivery) {
	t := n.target(d.Target)
	err := n.post(ctx, t, d)
	if err == nil {
		if merr := n.o.Store.MarkDelivered(ctx, d.ID, n.now()); merr != nil {
			// Sent but not recorded: it is sent again when the lease ends.
			n.o.Logger.Error("webhook delivered but not recorded; it will be sent again", zap.String("delivery_id", d.ID), zap.Error(merr))
		}
		n.result("delivered")
		n.o.Logger.Debug("webhook delivered", zap.String("delivery_id", d.ID), zap.String("type", d.Type), zap.String("target", RedactURL(d.Target)))
		return
	}
	n.result("failed")
	wait := Backoff(d.Attempts+1, n.o.MinBackoff, n.o.MaxBackoff)
	n.o.Logger.Warn("webhook delivery failed; retrying", zap.String("delivery_id", d.ID), zap.String("type", d.Type),
		zap.String("target", RedactURL(d.Target)), zap.Int("attempt", d.Attempts+1), zap.Duration("retry_in", wait), zap.Error(err))
	n.reschedule(ctx, d, n.now().Add(wait), err.Error())
}

func (n *Notifier) reschedule(ctx context.Context, d keystore.Delivery, next time.Time, msg string) {
	if err := n.o.Store.RescheduleDelivery(ctx, d.ID, next, msg); err != nil {
		n.o.Logger.Error("recording a webhook retry failed; it is retried when the lease ends", zap.String("delivery_id", d.ID), zap.Error(err))
	}
}

func (n *Notifier) result(r string) {
	if n.o.OnResult != nil {
		n.o.OnResult(r)
	}
}

// post sends d to t, signed at the current time. Errors never hold the
// URL's query or user info.
func (n *Notifier) post(ctx context.Context, t *Target, d keystore.Delivery) error {
	ctx, cancel := context.WithTimeout(ctx, n.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.Target, bytes.NewReader(d.Body))
	if err != nil {
		return errors.New("the URL cannot be requested")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "keygate-webhook")
	req.Header.Set(SignatureHeader, Sign(t.Secret, n.now(), d.Body))
	resp, err := n.o.Client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return errors.New("HTTP " + strconv.Itoa(resp.StatusCode))
	}
	return nil
}

// Purge removes events delivered longer than Retention ago from the outbox.
func (n *Notifier) Purge(ctx context.Context) (int, error) {
	return n.o.Store.PurgeDeliveries(ctx, n.now().Add(-n.o.Retention))
}
