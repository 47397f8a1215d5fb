package keystore

import "context"

// Deliveries lists undelivered webhook deliveries of the outbox (keys:admin
// only): status pending (all undelivered) or failed (at least one attempt
// failed), oldest first, up to limit, and how many there are in all.
func (s *Service) Deliveries(ctx context.Context, a Actor, status DeliveryStatus, limit int) ([]Delivery, int, error) {
	if err := requireAdmin(a, "list webhook deliveries"); err != nil {
		return nil, 0, err
	}
	if limit < 0 || limit > MaxPageSize {
		return nil, 0, invalidf("limit %d must be between 1 and %d", limit, MaxPageSize)
	}
	ds, total, err := s.Store.ListDeliveries(ctx, status, limit)
	if err != nil {
		return nil, 0, serviceStoreErr(err, "webhook deliveries")
	}
	return ds, total, nil
}
