package notify

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/keygate/keygate/keystore"
)

// Quota thresholds, in percent of the limit.
var quotaThresholds = []int64{80, 100}

// licenseThreshold is the share of the licence in use, in percent, that
// sends license.threshold.
const licenseThreshold = 90

// Scan enqueues the events of conditions true now: keys about to expire or
// expired, quotas at a threshold, the licence nearly used up. Each is
// enqueued once across instances (the outbox's dedupe values), so every
// instance may scan.
func (n *Notifier) Scan(ctx context.Context) error {
	if len(n.o.Targets) == 0 {
		return nil
	}
	now := n.now()
	var errs []error
	users := map[string]bool{}
	for cursor := ""; ; {
		keys, next, err := n.o.Store.ListKeys(ctx, keystore.ListFilter{Limit: 1000, Cursor: cursor, Now: now})
		if err != nil {
			return fmt.Errorf("listing keys: %w", err)
		}
		for _, k := range keys {
			if k.RevokedAt != nil && !now.Before(*k.RevokedAt) {
				continue
			}
			if err := n.scanExpiry(ctx, k, now); err != nil {
				errs = append(errs, err)
			}
			if k.Status(now) != keystore.StatusActive {
				continue
			}
			users[k.User] = true
			q := k.Quota
			if q == nil {
				q = n.o.DefaultQuota
			}
			if q != nil {
				if err := n.scanQuota(ctx, k.ID, refOf(k), "", q, now); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	for u := range users {
		l, err := n.o.Store.UserLimits(ctx, u)
		if err != nil {
			errs = append(errs, fmt.Errorf("reading the limits of user %s: %w", u, err))
			continue
		}
		if l.Quota != nil {
			if err := n.scanQuota(ctx, "user:"+u, nil, u, l.Quota, now); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := n.scanLicense(ctx, now); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (n *Notifier) scanExpiry(ctx context.Context, k *keystore.Key, now time.Time) error {
	if k.ExpiresAt == nil {
		return nil
	}
	exp := k.ExpiresAt.UTC()
	at := strconv.FormatInt(exp.Unix(), 10)
	fields := map[string]any{"expires_at": exp.Format(time.RFC3339)}
	if now.Before(exp) {
		return n.enqueue(ctx, event{typ: EventKeyExpiring, at: now, key: refOf(k), fields: fields,
			dedupe: EventKeyExpiring + "|" + k.ID + "|" + at},
			func(t *Target) bool { return !now.Before(exp.Add(-t.expiringWithin())) })
	}
	if now.Sub(exp) > expiredLookback {
		return nil
	}
	return n.enqueue(ctx, event{typ: EventKeyExpired, at: now, key: refOf(k), fields: fields,
		dedupe: EventKeyExpired + "|" + k.ID + "|" + at}, nil)
}

// quotaPeriodStart is the first instant of the quota period holding now.
func quotaPeriodStart(period string, now time.Time) time.Time {
	y, m, d := now.UTC().Date()
	if period == keystore.PeriodMonth {
		return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// scanQuota checks the quota of a key (key set) or of a user's keys
// together (user set), counted under id.
func (n *Notifier) scanQuota(ctx context.Context, id string, key *keyRef, user string, q *keystore.Quota, now time.Time) error {
	if q.Limit <= 0 {
		return nil
	}
	start := quotaPeriodStart(q.Period, now)
	days, err := n.o.Store.Usage(ctx, id, start, now)
	if err != nil {
		return fmt.Errorf("reading the usage of %s: %w", id, err)
	}
	var used int64
	for _, d := range days {
		used += d.Requests
	}
	if n.o.Local != nil {
		used += n.o.Local.LocalCount(id, start)
	}
	for _, pct := range quotaThresholds {
		if used*100 < q.Limit*pct {
			break
		}
		fields := map[string]any{
			"percent":      pct,
			"used":         used,
			"quota":        map[string]any{"limit": q.Limit, "period": q.Period},
			"period_start": start.Format(time.RFC3339),
		}
		if user != "" {
			fields["user"] = user
		}
		e := event{typ: EventQuotaThreshold, at: now, key: key, fields: fields,
			dedupe: EventQuotaThreshold + "|" + id + "|" + start.Format("2006-01-02") + "|" + strconv.FormatInt(pct, 10)}
		if err := n.enqueue(ctx, e, nil); err != nil {
			return err
		}
	}
	return nil
}

// scanLicense sends license.threshold once when the keys in use reach 90 %
// of the licence, and again only after they fell below it.
func (n *Notifier) scanLicense(ctx context.Context, now time.Time) error {
	if n.o.License <= 0 {
		return nil
	}
	inUse, err := n.o.Store.CountActive(ctx, now)
	if err != nil {
		return fmt.Errorf("counting active keys: %w", err)
	}
	high := inUse*100 >= n.o.License*licenseThreshold
	const dedupe = EventLicenseThreshold + "|" + "90"
	n.mu.Lock()
	was := n.licenseHigh
	n.licenseHigh = &high
	n.mu.Unlock()
	if high {
		return n.enqueue(ctx, event{typ: EventLicenseThreshold, at: now, dedupe: dedupe, fields: map[string]any{
			"percent": licenseThreshold,
			"license": map[string]any{"limit": n.o.License, "in_use": inUse},
		}}, nil)
	}
	if was != nil && !*was {
		return nil // already released
	}
	// Below: release the value, so the next rise sends the event again.
	for _, t := range n.o.Targets {
		d := dedupe + "|" + t.URL
		if err := n.o.Store.ReleaseDedupe(ctx, d); err != nil {
			return fmt.Errorf("re-arming license.threshold: %w", err)
		}
		n.mu.Lock()
		delete(n.enqueued, d)
		n.mu.Unlock()
	}
	return nil
}
