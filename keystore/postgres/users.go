package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/keystore"
)

// SetUserLimits implements keystore.Store. The change is logged once per
// key of the user, so every instance evicts the user's cached keys and
// loads them again with the new limits.
func (s *Store) SetUserLimits(ctx context.Context, user string, l keystore.UserLimits) error {
	if user == "" || l.IsZero() {
		return errors.New("setting user limits: a user and a rate or quota are required")
	}
	var (
		rateLimit, quotaLimit *int64
		ratePer               *time.Duration
		quotaPeriod           *string
	)
	if l.Rate != nil {
		rateLimit, ratePer = &l.Rate.Limit, &l.Rate.Per
	}
	if l.Quota != nil {
		quotaLimit, quotaPeriod = &l.Quota.Limit, &l.Quota.Period
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.lockKeyWrites(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO user_limits (user_name, rate_limit, rate_per, quota_limit, quota_period, updated_at)
			VALUES ($1, $2, $3, $4, $5, now())
			ON CONFLICT (user_name) DO UPDATE SET rate_limit = $2, rate_per = $3, quota_limit = $4, quota_period = $5, updated_at = now()`,
			user, rateLimit, ratePer, quotaLimit, quotaPeriod); err != nil {
			return err
		}
		return recordUserChange(ctx, tx, user)
	})
	if err != nil {
		return fmt.Errorf("setting the limits of user %s: %w", user, translate(err))
	}
	return nil
}

// DeleteUserLimits implements keystore.Store.
func (s *Store) DeleteUserLimits(ctx context.Context, user string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.lockKeyWrites(ctx, tx); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM user_limits WHERE user_name = $1`, user)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		return recordUserChange(ctx, tx, user)
	})
	if err != nil {
		return fmt.Errorf("deleting the limits of user %s: %w", user, translate(err))
	}
	return nil
}

// recordUserChange logs a change of every key of user, inside tx.
func recordUserChange(ctx context.Context, tx pgx.Tx, user string) error {
	rows, err := tx.Query(ctx, `SELECT id, digest, prev_digest FROM keys WHERE user_name = $1 ORDER BY pos`, user)
	if err != nil {
		return err
	}
	type change struct {
		id string
		ds []keystore.Digest
	}
	var changes []change
	for rows.Next() {
		var (
			id           string
			digest, prev []byte
		)
		if err := rows.Scan(&id, &digest, &prev); err != nil {
			rows.Close()
			return err
		}
		var d, p keystore.Digest
		copy(d[:], digest)
		copy(p[:], prev)
		changes = append(changes, change{id, []keystore.Digest{d, p}})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, c := range changes {
		if err := recordChange(ctx, tx, c.id, c.ds...); err != nil {
			return err
		}
	}
	return nil
}

// UserLimits implements keystore.Store.
func (s *Store) UserLimits(ctx context.Context, user string) (keystore.UserLimits, error) {
	var lim limitColumns
	err := s.pool.QueryRow(ctx, `SELECT rate_limit, rate_per, quota_limit, quota_period FROM user_limits WHERE user_name = $1`, user).
		Scan(lim.dest()...)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return keystore.UserLimits{}, nil
	case err != nil:
		return keystore.UserLimits{}, fmt.Errorf("reading the limits of user %s: %w", user, translate(err))
	}
	return lim.limits(), nil
}

// limitColumns scans rate_limit, rate_per, quota_limit, quota_period of
// user_limits (all NULL: no limits).
type limitColumns struct {
	rateLimit, quotaLimit *int64
	ratePer               *time.Duration
	quotaPeriod           *string
}

func (c *limitColumns) dest() []any {
	return []any{&c.rateLimit, &c.ratePer, &c.quotaLimit, &c.quotaPeriod}
}

func (c *limitColumns) limits() keystore.UserLimits {
	var l keystore.UserLimits
	if c.rateLimit != nil && c.ratePer != nil {
		l.Rate = &keystore.Rate{Limit: *c.rateLimit, Per: *c.ratePer}
	}
	if c.quotaLimit != nil && c.quotaPeriod != nil {
		l.Quota = &keystore.Quota{Limit: *c.quotaLimit, Period: *c.quotaPeriod}
	}
	return l
}
