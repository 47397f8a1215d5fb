package postgres

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/keygate/keygate/keystore"
)

const dayFormat = "2006-01-02"

// AddUsage implements keystore.Store: one transaction per batch, recorded in
// usage_batches so a retried batch is skipped. Deltas of the same key and
// day are summed first; last_used_at moves forward only (and only by at
// least Options.LastUsedStep).
func (s *Store) AddUsage(ctx context.Context, batchID string, deltas []keystore.UsageDelta) error {
	type kd struct {
		id  string
		day string
	}
	sums := map[kd]int64{}
	var order []kd
	last := map[string]time.Time{}
	var lastOrder []string
	for _, d := range deltas {
		if d.KeyID == "" {
			continue
		}
		if d.Requests != 0 {
			k := kd{d.KeyID, d.Day.UTC().Format(dayFormat)}
			if _, ok := sums[k]; !ok {
				order = append(order, k)
			}
			sums[k] += d.Requests
		}
		if !d.LastUsed.IsZero() {
			t, ok := last[d.KeyID]
			if !ok {
				lastOrder = append(lastOrder, d.KeyID)
			}
			if !ok || d.LastUsed.After(t) {
				last[d.KeyID] = d.LastUsed
			}
		}
	}
	var (
		ids, days []string
		reqs      []int64
		luIDs     []string
		luAt      []time.Time
	)
	// Sorted input makes concurrent flushes of several instances lock rows
	// in the same order, so they queue instead of deadlocking.
	sort.Slice(order, func(i, j int) bool {
		if order[i].id != order[j].id {
			return order[i].id < order[j].id
		}
		return order[i].day < order[j].day
	})
	sort.Strings(lastOrder)
	for _, k := range order {
		ids, days, reqs = append(ids, k.id), append(days, k.day), append(reqs, sums[k])
	}
	for _, id := range lastOrder {
		luIDs, luAt = append(luIDs, id), append(luAt, last[id])
	}

	apply := func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO usage_batches (id) VALUES ($1) ON CONFLICT (id) DO NOTHING`, batchID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return nil // applied before
		}
		if len(ids) > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO key_usage (key_id, day, requests)
				SELECT * FROM unnest($1::text[], $2::date[], $3::bigint[])
				ON CONFLICT (key_id, day) DO UPDATE SET requests = key_usage.requests + excluded.requests`,
				ids, days, reqs); err != nil {
				return err
			}
		}
		if len(luIDs) > 0 {
			if _, err := tx.Exec(ctx, `UPDATE keys k SET last_used_at = u.at
				FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at)
				WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at <= u.at - $3::interval)
				  AND (k.last_used_at IS NULL OR k.last_used_at < u.at)`,
				luIDs, luAt, s.opts.LastUsedStep); err != nil {
				return err
			}
		}
		return nil
	}
	var err error
	for attempt := 1; ; attempt++ {
		err = pgx.BeginFunc(ctx, s.pool, apply)
		if attempt == 3 || !retryable(err) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("adding usage batch %s: %w", batchID, translate(err))
	}
	s.maybePrune(ctx)
	return nil
}

// retryable reports a deadlock or serialisation failure: the transaction
// was rolled back and may simply be run again.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// Usage implements keystore.Store.
func (s *Store) Usage(ctx context.Context, id string, from, to time.Time) ([]keystore.DayUsage, error) {
	rows, err := s.pool.Query(ctx, `SELECT day, requests FROM key_usage
		WHERE key_id = $1 AND day BETWEEN $2::date AND $3::date AND requests <> 0 ORDER BY day`,
		id, from.UTC().Format(dayFormat), to.UTC().Format(dayFormat))
	if err != nil {
		return nil, fmt.Errorf("reading usage of key %s: %w", id, translate(err))
	}
	defer rows.Close()
	var out []keystore.DayUsage
	for rows.Next() {
		var u keystore.DayUsage
		if err := rows.Scan(&u.Day, &u.Requests); err != nil {
			return nil, fmt.Errorf("reading usage of key %s: %w", id, translate(err))
		}
		u.Day = time.Date(u.Day.Year(), u.Day.Month(), u.Day.Day(), 0, 0, 0, 0, time.UTC)
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading usage of key %s: %w", id, translate(err))
	}
	return out, nil
}

// maybePrune removes applied usage batches older than a day and change log
// rows older than Options.ChangeRetention, at most every few minutes per
// store. Failures are logged; the next call tries again.
func (s *Store) maybePrune(ctx context.Context) {
	now := time.Now().UnixNano()
	last := s.lastPrune.Load()
	if now-last < int64(pruneEvery) || !s.lastPrune.CompareAndSwap(last, now) {
		return
	}
	if err := s.Prune(ctx); err != nil {
		s.log.Warn("pruning usage batches and change log", zap.Error(err))
	}
}

// Prune removes applied usage batches older than a day and change log rows
// older than Options.ChangeRetention (always keeping the newest change, so
// sequences are never reused). It runs on its own from AddUsage and
// listeners; it is exported for maintenance jobs and tests.
func (s *Store) Prune(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM usage_batches WHERE applied_at < now() - $1::interval`, batchRetention); err != nil {
		return fmt.Errorf("pruning usage batches: %w", translate(err))
	}
	if _, err := s.pool.Exec(ctx, `WITH d AS (
			DELETE FROM key_changes
			WHERE at < now() - $1::interval AND seq < (SELECT max(seq) FROM key_changes)
			RETURNING seq)
		UPDATE key_changes_state SET pruned_through = greatest(pruned_through, (SELECT max(seq) FROM d))
		WHERE EXISTS (SELECT 1 FROM d)`, s.opts.ChangeRetention); err != nil {
		return fmt.Errorf("pruning change log: %w", translate(err))
	}
	return nil
}

// UsagePrefixed implements keystore.Store. The bounds compare bytes
// (~>=~, ~<~), whatever the database's collation, and use the
// text_pattern_ops index of migration 004.
func (s *Store) UsagePrefixed(ctx context.Context, prefix string, from, to time.Time) (map[string][]keystore.DayUsage, error) {
	out := map[string][]keystore.DayUsage{}
	if prefix == "" {
		return nil, fmt.Errorf("reading usage with prefix: the prefix is empty")
	}
	rows, err := s.pool.Query(ctx, `SELECT key_id, day, requests FROM key_usage
		WHERE key_id ~>=~ $1 AND key_id ~<~ $2 AND day BETWEEN $3::date AND $4::date AND requests <> 0
		ORDER BY key_id, day`,
		prefix, prefixEnd(prefix), from.UTC().Format(dayFormat), to.UTC().Format(dayFormat))
	if err != nil {
		return nil, fmt.Errorf("reading usage with prefix %q: %w", prefix, translate(err))
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id string
			u  keystore.DayUsage
		)
		if err := rows.Scan(&id, &u.Day, &u.Requests); err != nil {
			return nil, fmt.Errorf("reading usage with prefix %q: %w", prefix, translate(err))
		}
		u.Day = time.Date(u.Day.Year(), u.Day.Month(), u.Day.Day(), 0, 0, 0, 0, time.UTC)
		out[id] = append(out[id], u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading usage with prefix %q: %w", prefix, translate(err))
	}
	return out, nil
}

// prefixEnd is the least string greater than every string starting with
// prefix, for a byte-wise range: prefix with its last byte below 0xff raised
// by one (the ids are UTF-8 text, so a NUL or 0xff never occurs).
func prefixEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return prefix + "\uffff"
}

// UsageTotals implements keystore.Store.
func (s *Store) UsageTotals(ctx context.Context, from, to time.Time) (map[string]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT key_id, sum(requests)::bigint FROM key_usage
		WHERE day BETWEEN $1::date AND $2::date AND requests <> 0 GROUP BY key_id`,
		from.UTC().Format(dayFormat), to.UTC().Format(dayFormat))
	if err != nil {
		return nil, fmt.Errorf("reading usage totals: %w", translate(err))
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var (
			id string
			n  int64
		)
		if err := rows.Scan(&id, &n); err != nil {
			return nil, fmt.Errorf("reading usage totals: %w", translate(err))
		}
		out[id] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading usage totals: %w", translate(err))
	}
	return out, nil
}
