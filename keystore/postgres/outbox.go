package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/keystore"
)

const deliveryColumns = `id, COALESCE(dedupe, ''), target, type, body, created_at, next_at, attempts, last_error, delivered_at`

func scanDeliveries(rows pgx.Rows) ([]keystore.Delivery, error) {
	defer rows.Close()
	out := []keystore.Delivery{}
	for rows.Next() {
		var d keystore.Delivery
		if err := rows.Scan(&d.ID, &d.Dedupe, &d.Target, &d.Type, &d.Body, &d.CreatedAt, &d.NextAt, &d.Attempts, &d.LastError, &d.DeliveredAt); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// EnqueueDeliveries implements keystore.Store, in one transaction.
func (s *Store) EnqueueDeliveries(ctx context.Context, ds []keystore.Delivery) (int, error) {
	n := 0
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, d := range ds {
			var dedupe *string
			if d.Dedupe != "" {
				dedupe = &d.Dedupe
			}
			tag, err := tx.Exec(ctx, `INSERT INTO webhook_outbox (id, dedupe, target, type, body, created_at, next_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (dedupe) DO NOTHING`,
				d.ID, dedupe, d.Target, d.Type, d.Body, d.CreatedAt, d.NextAt)
			if err != nil {
				return err
			}
			n += int(tag.RowsAffected())
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("enqueueing deliveries: %w", translate(err))
	}
	return n, nil
}

// ClaimDeliveries implements keystore.Store. FOR UPDATE SKIP LOCKED lets
// instances claim at once without waiting for or getting each other's rows.
func (s *Store) ClaimDeliveries(ctx context.Context, targets []string, now time.Time, lease time.Duration, limit int) ([]keystore.Delivery, error) {
	rows, err := s.pool.Query(ctx, `UPDATE webhook_outbox o SET next_at = $3
		FROM (SELECT seq, next_at FROM webhook_outbox
			WHERE delivered_at IS NULL AND next_at <= $1 AND target = ANY($2)
			ORDER BY next_at, seq LIMIT $4 FOR UPDATE SKIP LOCKED) due
		WHERE o.seq = due.seq
		RETURNING due.next_at, o.seq, `+prefixed("o."), now, targets, now.Add(lease), limit)
	if err != nil {
		return nil, fmt.Errorf("claiming deliveries: %w", translate(err))
	}
	defer rows.Close()
	type claimed struct {
		due time.Time
		seq int64
		d   keystore.Delivery
	}
	var all []claimed
	for rows.Next() {
		var c claimed
		d := &c.d
		if err := rows.Scan(&c.due, &c.seq, &d.ID, &d.Dedupe, &d.Target, &d.Type, &d.Body, &d.CreatedAt, &d.NextAt, &d.Attempts, &d.LastError, &d.DeliveredAt); err != nil {
			return nil, fmt.Errorf("claiming deliveries: %w", translate(err))
		}
		all = append(all, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("claiming deliveries: %w", translate(err))
	}
	// RETURNING has no order: sort by the due time before the claim.
	slices.SortFunc(all, func(a, b claimed) int {
		if c := a.due.Compare(b.due); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	out := make([]keystore.Delivery, 0, len(all))
	for _, c := range all {
		out = append(out, c.d)
	}
	return out, nil
}

// prefixed is deliveryColumns with each column qualified by p.
func prefixed(p string) string {
	return p + `id, COALESCE(` + p + `dedupe, ''), ` + p + `target, ` + p + `type, ` + p + `body, ` + p + `created_at, ` +
		p + `next_at, ` + p + `attempts, ` + p + `last_error, ` + p + `delivered_at`
}

// changeDelivery runs an update of one undelivered delivery; an unknown id
// is ErrNotFound, a delivered one is left as it is.
func (s *Store) changeDelivery(ctx context.Context, id, sql string, args ...any) error {
	tag, err := s.pool.Exec(ctx, sql, append([]any{id}, args...)...)
	if err != nil {
		return translate(err)
	}
	if tag.RowsAffected() > 0 {
		return nil
	}
	var one int
	err = s.pool.QueryRow(ctx, `SELECT 1 FROM webhook_outbox WHERE id = $1`, id).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return keystore.ErrNotFound
	}
	return translate(err)
}

// MarkDelivered implements keystore.Store.
func (s *Store) MarkDelivered(ctx context.Context, id string, at time.Time) error {
	if err := s.changeDelivery(ctx, id, `UPDATE webhook_outbox SET delivered_at = $2 WHERE id = $1 AND delivered_at IS NULL`, at); err != nil {
		return fmt.Errorf("marking delivery %s delivered: %w", id, err)
	}
	return nil
}

// RescheduleDelivery implements keystore.Store.
func (s *Store) RescheduleDelivery(ctx context.Context, id string, next time.Time, lastErr string) error {
	err := s.changeDelivery(ctx, id, `UPDATE webhook_outbox SET next_at = $2,
		attempts = attempts + CASE WHEN $3 = '' THEN 0 ELSE 1 END,
		last_error = CASE WHEN $3 = '' THEN last_error ELSE $3 END
		WHERE id = $1 AND delivered_at IS NULL`, next, lastErr)
	if err != nil {
		return fmt.Errorf("rescheduling delivery %s: %w", id, err)
	}
	return nil
}

// ReleaseDedupe implements keystore.Store.
func (s *Store) ReleaseDedupe(ctx context.Context, dedupe string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE webhook_outbox SET dedupe = NULL WHERE dedupe = $1`, dedupe); err != nil {
		return fmt.Errorf("releasing dedupe value %s: %w", dedupe, translate(err))
	}
	return nil
}

// ListDeliveries implements keystore.Store.
func (s *Store) ListDeliveries(ctx context.Context, status keystore.DeliveryStatus, limit int) ([]keystore.Delivery, int, error) {
	switch {
	case limit <= 0:
		limit = 100
	case limit > 1000:
		limit = 1000
	}
	failed := status == keystore.DeliveryFailed
	rows, err := s.pool.Query(ctx, `SELECT `+deliveryColumns+` FROM webhook_outbox
		WHERE delivered_at IS NULL AND (NOT $1 OR attempts > 0) ORDER BY seq LIMIT $2`, failed, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("listing deliveries: %w", translate(err))
	}
	out, err := scanDeliveries(rows)
	if err != nil {
		return nil, 0, fmt.Errorf("listing deliveries: %w", translate(err))
	}
	var total int
	err = s.pool.QueryRow(ctx, `SELECT count(*) FROM webhook_outbox WHERE delivered_at IS NULL AND (NOT $1 OR attempts > 0)`, failed).Scan(&total)
	if err != nil {
		return nil, 0, fmt.Errorf("counting deliveries: %w", translate(err))
	}
	return out, total, nil
}

// PurgeDeliveries implements keystore.Store.
func (s *Store) PurgeDeliveries(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM webhook_outbox WHERE delivered_at < $1 AND dedupe IS NULL`, before)
	if err != nil {
		return 0, fmt.Errorf("purging deliveries: %w", translate(err))
	}
	return int(tag.RowsAffected()), nil
}
