package bolt

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/keystore"
)

// deliveryRecord is the stored form of a webhook delivery.
type deliveryRecord struct {
	ID          string     `json:"id"`
	Dedupe      string     `json:"dedupe,omitempty"`
	Target      string     `json:"target"`
	Type        string     `json:"type"`
	Body        []byte     `json:"body"`
	CreatedAt   time.Time  `json:"created_at"`
	NextAt      time.Time  `json:"next_at"`
	Attempts    int        `json:"attempts,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	DeliveredAt *time.Time `json:"delivered_at,omitempty"`
}

func (r *deliveryRecord) delivery() keystore.Delivery {
	return keystore.Delivery{ID: r.ID, Dedupe: r.Dedupe, Target: r.Target, Type: r.Type, Body: r.Body,
		CreatedAt: r.CreatedAt, NextAt: r.NextAt, Attempts: r.Attempts, LastError: r.LastError, DeliveredAt: r.DeliveredAt}
}

// EnqueueDeliveries implements keystore.Store.
func (s *Store) EnqueueDeliveries(ctx context.Context, ds []keystore.Delivery) (int, error) {
	n := 0
	err := s.update(func(tx *bbolt.Tx) error {
		n = 0
		out, ids, dedupe := tx.Bucket(bucketOutbox), tx.Bucket(bucketOutboxIDs), tx.Bucket(bucketOutboxDedupe)
		for _, d := range ds {
			if ids.Get([]byte(d.ID)) != nil {
				return fmt.Errorf("delivery %s: %w", d.ID, keystore.ErrConflict)
			}
			if d.Dedupe != "" {
				if dedupe.Get([]byte(d.Dedupe)) != nil {
					continue
				}
				if err := dedupe.Put([]byte(d.Dedupe), []byte(d.ID)); err != nil {
					return err
				}
			}
			seq, err := out.NextSequence()
			if err != nil {
				return err
			}
			v, err := json.Marshal(deliveryRecord{ID: d.ID, Dedupe: d.Dedupe, Target: d.Target, Type: d.Type, Body: d.Body,
				CreatedAt: d.CreatedAt.UTC(), NextAt: d.NextAt.UTC()})
			if err != nil {
				return fmt.Errorf("encoding delivery %s: %w", d.ID, err)
			}
			if err := out.Put(u64(seq), v); err != nil {
				return err
			}
			if err := ids.Put([]byte(d.ID), u64(seq)); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("enqueueing deliveries: %w", err)
	}
	return n, nil
}

// pendingRecords calls fn with every undelivered delivery, in enqueue order.
func pendingRecords(tx *bbolt.Tx, fn func(seq []byte, r *deliveryRecord) error) error {
	return tx.Bucket(bucketOutbox).ForEach(func(k, v []byte) error {
		var r deliveryRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decoding delivery %d: %w", binary.BigEndian.Uint64(k), err)
		}
		return fn(k, &r)
	})
}

func putDelivery(b *bbolt.Bucket, seq []byte, r *deliveryRecord) error {
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding delivery %s: %w", r.ID, err)
	}
	return b.Put(seq, v)
}

// ClaimDeliveries implements keystore.Store. bbolt serialises writers, so
// one transaction claims atomically.
func (s *Store) ClaimDeliveries(ctx context.Context, targets []string, now time.Time, lease time.Duration, limit int) ([]keystore.Delivery, error) {
	var out []keystore.Delivery
	err := s.update(func(tx *bbolt.Tx) error {
		out = nil
		type due struct {
			seq []byte
			r   *deliveryRecord
		}
		var all []due
		err := pendingRecords(tx, func(seq []byte, r *deliveryRecord) error {
			if !r.NextAt.After(now) && slices.Contains(targets, r.Target) {
				all = append(all, due{slices.Clone(seq), r})
			}
			return nil
		})
		if err != nil {
			return err
		}
		slices.SortStableFunc(all, func(a, b due) int { return a.r.NextAt.Compare(b.r.NextAt) })
		if len(all) > limit {
			all = all[:limit]
		}
		b := tx.Bucket(bucketOutbox)
		for _, d := range all {
			d.r.NextAt = now.Add(lease).UTC()
			if err := putDelivery(b, d.seq, d.r); err != nil {
				return err
			}
			out = append(out, d.r.delivery())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claiming deliveries: %w", err)
	}
	return out, nil
}

// changeDelivery applies fn to the undelivered delivery id. A delivered one
// is left as it is; an unknown id is ErrNotFound.
func (s *Store) changeDelivery(id string, fn func(tx *bbolt.Tx, seq []byte, r *deliveryRecord) error) error {
	return s.update(func(tx *bbolt.Tx) error {
		seq := tx.Bucket(bucketOutboxIDs).Get([]byte(id))
		if seq == nil {
			return keystore.ErrNotFound
		}
		v := tx.Bucket(bucketOutbox).Get(seq)
		if v == nil {
			return nil // delivered
		}
		var r deliveryRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decoding delivery %s: %w", id, err)
		}
		return fn(tx, slices.Clone(seq), &r)
	})
}

// MarkDelivered implements keystore.Store: the delivery moves to the
// outbox_done bucket, so claims and lists walk pending deliveries only.
func (s *Store) MarkDelivered(ctx context.Context, id string, at time.Time) error {
	err := s.changeDelivery(id, func(tx *bbolt.Tx, seq []byte, r *deliveryRecord) error {
		t := at.UTC()
		r.DeliveredAt = &t
		if err := tx.Bucket(bucketOutbox).Delete(seq); err != nil {
			return err
		}
		return putDelivery(tx.Bucket(bucketOutboxDone), seq, r)
	})
	if err != nil {
		return fmt.Errorf("marking delivery %s delivered: %w", id, err)
	}
	return nil
}

// RescheduleDelivery implements keystore.Store.
func (s *Store) RescheduleDelivery(ctx context.Context, id string, next time.Time, lastErr string) error {
	err := s.changeDelivery(id, func(tx *bbolt.Tx, seq []byte, r *deliveryRecord) error {
		r.NextAt = next.UTC()
		if lastErr != "" {
			r.Attempts++
			r.LastError = lastErr
		}
		return putDelivery(tx.Bucket(bucketOutbox), seq, r)
	})
	if err != nil {
		return fmt.Errorf("rescheduling delivery %s: %w", id, err)
	}
	return nil
}

// ReleaseDedupe implements keystore.Store.
func (s *Store) ReleaseDedupe(ctx context.Context, dedupe string) error {
	err := s.update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketOutboxDedupe).Delete([]byte(dedupe))
	})
	if err != nil {
		return fmt.Errorf("releasing dedupe value %s: %w", dedupe, err)
	}
	return nil
}

// ListDeliveries implements keystore.Store.
func (s *Store) ListDeliveries(ctx context.Context, status keystore.DeliveryStatus, limit int) ([]keystore.Delivery, int, error) {
	limit = keystore.PageSize(limit)
	out := []keystore.Delivery{}
	total := 0
	err := s.view(func(tx *bbolt.Tx) error {
		return pendingRecords(tx, func(_ []byte, r *deliveryRecord) error {
			if status == keystore.DeliveryFailed && r.Attempts == 0 {
				return nil
			}
			total++
			if len(out) < limit {
				out = append(out, r.delivery())
			}
			return nil
		})
	})
	if err != nil {
		return nil, 0, fmt.Errorf("listing deliveries: %w", err)
	}
	return out, total, nil
}

// PurgeDeliveries implements keystore.Store.
func (s *Store) PurgeDeliveries(ctx context.Context, before time.Time) (int, error) {
	n := 0
	err := s.update(func(tx *bbolt.Tx) error {
		n = 0
		done, ids := tx.Bucket(bucketOutboxDone), tx.Bucket(bucketOutboxIDs)
		var drop [][]byte
		var dropIDs []string
		err := done.ForEach(func(k, v []byte) error {
			var r deliveryRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decoding delivery %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if r.Dedupe == "" && r.DeliveredAt != nil && r.DeliveredAt.Before(before) {
				drop = append(drop, slices.Clone(k))
				dropIDs = append(dropIDs, r.ID)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for i, k := range drop {
			if err := done.Delete(k); err != nil {
				return err
			}
			if err := ids.Delete([]byte(dropIDs[i])); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("purging deliveries: %w", err)
	}
	return n, nil
}
