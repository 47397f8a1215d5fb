package postgres

import (
	"context"
	"fmt"
	"math"
	"strconv"

	"github.com/keygate/keygate/keystore"
)

// AppendAudit implements keystore.Store. A zero At is set to now.
func (s *Store) AppendAudit(ctx context.Context, e keystore.AuditEvent) error {
	if e.At.IsZero() {
		e.At = s.now()
	}
	var details any
	if e.Details != nil {
		details = e.Details
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO audit (at, actor, action, key_id, details) VALUES ($1, $2, $3, $4, $5)`,
		e.At, e.Actor, e.Action, e.KeyID, details)
	if err != nil {
		return fmt.Errorf("appending audit event %s: %w", e.Action, translate(err))
	}
	return nil
}

// ListAudit implements keystore.Store. The cursor is the sequence number of
// the last event returned.
func (s *Store) ListAudit(ctx context.Context, f keystore.AuditFilter) ([]keystore.AuditEvent, string, error) {
	limit := keystore.PageSize(f.Limit)
	before := int64(math.MaxInt64)
	if f.Cursor != "" {
		n, err := strconv.ParseInt(f.Cursor, 10, 64)
		if err != nil || n <= 0 {
			return nil, "", fmt.Errorf("listing audit events: %w %q", keystore.ErrInvalidCursor, f.Cursor)
		}
		before = n
	}
	rows, err := s.pool.Query(ctx, `SELECT seq, at, actor, action, key_id, details FROM audit
		WHERE seq < $1 AND ($2 = '' OR key_id = $2) ORDER BY seq DESC LIMIT $3`, before, f.KeyID, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("listing audit events: %w", translate(err))
	}
	defer rows.Close()
	var events []keystore.AuditEvent
	more := false
	for rows.Next() {
		if len(events) == limit {
			more = true
			break
		}
		var e keystore.AuditEvent
		if err := rows.Scan(&e.Seq, &e.At, &e.Actor, &e.Action, &e.KeyID, &e.Details); err != nil {
			return nil, "", fmt.Errorf("listing audit events: %w", translate(err))
		}
		e.At = e.At.UTC()
		events = append(events, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("listing audit events: %w", translate(err))
	}
	next := ""
	if more {
		next = strconv.FormatInt(events[len(events)-1].Seq, 10)
	}
	return events, next, nil
}
