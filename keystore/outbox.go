package keystore

import (
	"context"
	"fmt"
	"time"
)

// Delivery is one webhook event for one destination, kept in the store's
// outbox from the moment the event happens until the destination accepts
// it, so nothing is lost across restarts and reloads. Its body never holds
// a secret; the signature is made when it is sent.
type Delivery struct {
	// ID identifies the delivery; unique.
	ID string
	// Dedupe, when not empty, is unique among the deliveries that hold it:
	// enqueueing a second delivery with the same Dedupe does nothing, so
	// instances that notice the same condition (a key about to expire)
	// enqueue it once between them.
	Dedupe string
	// Target is the destination URL.
	Target string
	// Type is the event type, such as "key.created".
	Type string
	// Body is the JSON body sent.
	Body []byte
	// CreatedAt is when the delivery was enqueued.
	CreatedAt time.Time
	// NextAt is when the delivery is due: first at once, after a failure
	// at the backoff, while claimed at the end of the lease.
	NextAt time.Time
	// Attempts counts failed attempts.
	Attempts int
	// LastError is the cause of the last failed attempt.
	LastError string
	// DeliveredAt is when the destination accepted it; nil until then.
	DeliveredAt *time.Time
}

// DeliveryStatus selects deliveries for Outbox.ListDeliveries.
type DeliveryStatus string

const (
	// DeliveryPending: not yet delivered (including failed ones).
	DeliveryPending DeliveryStatus = "pending"
	// DeliveryFailed: not yet delivered and at least one attempt failed.
	DeliveryFailed DeliveryStatus = "failed"
)

// ParseDeliveryStatus validates a delivery status filter value.
func ParseDeliveryStatus(s string) (DeliveryStatus, error) {
	switch DeliveryStatus(s) {
	case DeliveryPending, DeliveryFailed:
		return DeliveryStatus(s), nil
	}
	return "", fmt.Errorf("status %q must be pending or failed", s)
}

// Outbox is the part of a Store that keeps webhook deliveries until they
// are delivered. With several instances on one store, ClaimDeliveries hands
// each due delivery to one of them.
type Outbox interface {
	// EnqueueDeliveries stores ds, skipping any whose Dedupe is already
	// held, and returns how many it stored. A duplicate ID is ErrConflict.
	EnqueueDeliveries(ctx context.Context, ds []Delivery) (int, error)
	// ClaimDeliveries returns up to limit undelivered deliveries to one of
	// targets due at now, by due time and then enqueue order, and moves their NextAt to
	// now+lease, so no other caller gets them until the lease ends.
	ClaimDeliveries(ctx context.Context, targets []string, now time.Time, lease time.Duration, limit int) ([]Delivery, error)
	// MarkDelivered records that delivery id was accepted at at.
	MarkDelivered(ctx context.Context, id string, at time.Time) error
	// RescheduleDelivery records a failed attempt of delivery id: Attempts
	// grows by one, LastError is set and the delivery is due again at next.
	// An empty lastErr hands a claimed delivery back unsent: only NextAt
	// changes.
	RescheduleDelivery(ctx context.Context, id string, next time.Time, lastErr string) error
	// ReleaseDedupe frees a Dedupe value, so the next delivery enqueued
	// with it is stored (a condition that ended and may come back).
	ReleaseDedupe(ctx context.Context, dedupe string) error
	// PurgeDeliveries removes the deliveries delivered before before that
	// hold no Dedupe value (a held value must stay held: it is what makes
	// its event once-only), and returns how many it removed.
	PurgeDeliveries(ctx context.Context, before time.Time) (int, error)
	// ListDeliveries returns up to limit (1..1000; 0 means 100)
	// undelivered deliveries of that status, oldest first, and how many
	// there are in all.
	ListDeliveries(ctx context.Context, status DeliveryStatus, limit int) ([]Delivery, int, error)
}
