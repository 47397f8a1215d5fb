package storetest

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/keygate/keygate/keystore"
)

// outbox is Memory's webhook outbox: deliveries in enqueue order and the
// Dedupe values held.
type outbox struct {
	deliveries []*keystore.Delivery
	dedupe     map[string]bool
}

func cloneDelivery(d *keystore.Delivery) keystore.Delivery {
	c := *d
	c.Body = append([]byte(nil), d.Body...)
	if d.DeliveredAt != nil {
		t := *d.DeliveredAt
		c.DeliveredAt = &t
	}
	return c
}

func (m *Memory) findDelivery(id string) *keystore.Delivery {
	for _, d := range m.out.deliveries {
		if d.ID == id {
			return d
		}
	}
	return nil
}

func (m *Memory) EnqueueDeliveries(_ context.Context, ds []keystore.Delivery) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return 0, m.fail
	}
	if m.out.dedupe == nil {
		m.out.dedupe = map[string]bool{}
	}
	for i, d := range ds {
		if m.findDelivery(d.ID) != nil || slices.ContainsFunc(ds[:i], func(o keystore.Delivery) bool { return o.ID == d.ID }) {
			return 0, fmt.Errorf("enqueueing delivery %s: %w", d.ID, keystore.ErrConflict)
		}
	}
	n := 0
	for _, d := range ds {
		if d.Dedupe != "" {
			if m.out.dedupe[d.Dedupe] {
				continue
			}
			m.out.dedupe[d.Dedupe] = true
		}
		c := cloneDelivery(&d)
		c.CreatedAt, c.NextAt = c.CreatedAt.UTC(), c.NextAt.UTC()
		m.out.deliveries = append(m.out.deliveries, &c)
		n++
	}
	return n, nil
}

func (m *Memory) ClaimDeliveries(_ context.Context, targets []string, now time.Time, lease time.Duration, limit int) ([]keystore.Delivery, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	var due []*keystore.Delivery
	for _, d := range m.out.deliveries {
		if d.DeliveredAt == nil && !d.NextAt.After(now) && slices.Contains(targets, d.Target) {
			due = append(due, d)
		}
	}
	slices.SortStableFunc(due, func(a, b *keystore.Delivery) int { return a.NextAt.Compare(b.NextAt) })
	if len(due) > limit {
		due = due[:limit]
	}
	out := make([]keystore.Delivery, 0, len(due))
	for _, d := range due {
		d.NextAt = now.Add(lease).UTC()
		out = append(out, cloneDelivery(d))
	}
	return out, nil
}

func (m *Memory) MarkDelivered(_ context.Context, id string, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	d := m.findDelivery(id)
	if d == nil {
		return fmt.Errorf("delivery %s: %w", id, keystore.ErrNotFound)
	}
	if d.DeliveredAt == nil {
		t := at.UTC()
		d.DeliveredAt = &t
	}
	return nil
}

func (m *Memory) RescheduleDelivery(_ context.Context, id string, next time.Time, lastErr string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	d := m.findDelivery(id)
	if d == nil {
		return fmt.Errorf("delivery %s: %w", id, keystore.ErrNotFound)
	}
	if d.DeliveredAt == nil {
		d.NextAt = next.UTC()
		if lastErr != "" {
			d.Attempts++
			d.LastError = lastErr
		}
	}
	return nil
}

func (m *Memory) ReleaseDedupe(_ context.Context, dedupe string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	delete(m.out.dedupe, dedupe)
	return nil
}

func (m *Memory) ListDeliveries(_ context.Context, status keystore.DeliveryStatus, limit int) ([]keystore.Delivery, int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, 0, m.fail
	}
	limit = deliveryLimit(limit)
	out := []keystore.Delivery{}
	total := 0
	for _, d := range m.out.deliveries {
		if d.DeliveredAt != nil || (status == keystore.DeliveryFailed && d.Attempts == 0) {
			continue
		}
		total++
		if len(out) < limit {
			out = append(out, cloneDelivery(d))
		}
	}
	return out, total, nil
}

func deliveryLimit(limit int) int {
	switch {
	case limit <= 0:
		return 100
	case limit > 1000:
		return 1000
	}
	return limit
}

func (m *Memory) PurgeDeliveries(_ context.Context, before time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return 0, m.fail
	}
	n := len(m.out.deliveries)
	m.out.deliveries = slices.DeleteFunc(m.out.deliveries, func(d *keystore.Delivery) bool {
		return d.DeliveredAt != nil && d.DeliveredAt.Before(before) && d.Dedupe == ""
	})
	return n - len(m.out.deliveries), nil
}
