package postgres

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/keystore"
)

const keyColumns = `pos, id, name, description, user_name, rights, start, digest, imported,
	created_at, created_by, expires_at, revoked_at, last_used_at,
	rate_limit, rate_per, quota_limit, quota_period, prev_digest, grace_until,
	allowed_ips, environments`

// Status conditions on keys at $1 (a timestamptz), mirroring Key.Status.
const (
	condActive  = `(revoked_at IS NULL OR revoked_at > $1) AND (expires_at IS NULL OR expires_at > $1)`
	condRevoked = `revoked_at <= $1`
	condExpired = `(revoked_at IS NULL OR revoked_at > $1) AND expires_at <= $1`
)

// scanKey reads a row of keyColumns, then into extra the columns after them.
func scanKey(row pgx.Row, extra ...any) (*keystore.Key, int64, error) {
	var (
		k           keystore.Key
		pos         int64
		digest      []byte
		prev        []byte
		rateLimit   *int64
		ratePer     *time.Duration
		quotaLimit  *int64
		quotaPeriod *string
	)
	err := row.Scan(append([]any{&pos, &k.ID, &k.Name, &k.Description, &k.User, &k.Rights, &k.Start, &digest, &k.Imported,
		&k.CreatedAt, &k.CreatedBy, &k.ExpiresAt, &k.RevokedAt, &k.LastUsedAt,
		&rateLimit, &ratePer, &quotaLimit, &quotaPeriod, &prev, &k.GraceUntil,
		&k.AllowedIPs, &k.Environments}, extra...)...)
	if err != nil {
		return nil, 0, err
	}
	if len(digest) != len(k.Digest) {
		return nil, 0, fmt.Errorf("key %s: stored digest has %d bytes", k.ID, len(digest))
	}
	copy(k.Digest[:], digest)
	if prev != nil {
		if len(prev) != len(k.PrevDigest) {
			return nil, 0, fmt.Errorf("key %s: stored previous digest has %d bytes", k.ID, len(prev))
		}
		copy(k.PrevDigest[:], prev)
	}
	if rateLimit != nil {
		k.Rate = &keystore.Rate{Limit: *rateLimit}
		if ratePer != nil {
			k.Rate.Per = *ratePer
		}
	}
	if quotaLimit != nil {
		k.Quota = &keystore.Quota{Limit: *quotaLimit}
		if quotaPeriod != nil {
			k.Quota.Period = *quotaPeriod
		}
	}
	if len(k.Rights) == 0 {
		k.Rights = nil
	}
	if len(k.AllowedIPs) == 0 {
		k.AllowedIPs = nil
	}
	if len(k.Environments) == 0 {
		k.Environments = nil
	}
	k.CreatedAt = k.CreatedAt.UTC()
	for _, t := range []**time.Time{&k.ExpiresAt, &k.RevokedAt, &k.LastUsedAt, &k.GraceUntil} {
		if *t != nil {
			u := (*t).UTC()
			*t = &u
		}
	}
	return &k, pos, nil
}

// keyArgs returns the column values of k for INSERT and UPDATE, in the order
// of keyColumns without pos.
func keyArgs(k *keystore.Key) []any {
	var (
		rateLimit, quotaLimit *int64
		ratePer               *time.Duration
		quotaPeriod           *string
		prev                  []byte
	)
	if k.Rate != nil {
		rateLimit, ratePer = &k.Rate.Limit, &k.Rate.Per
	}
	if k.Quota != nil {
		quotaLimit, quotaPeriod = &k.Quota.Limit, &k.Quota.Period
	}
	if !k.PrevDigest.IsZero() {
		prev = k.PrevDigest[:]
	}
	return []any{k.ID, k.Name, k.Description, k.User, nonNil(k.Rights), k.Start, k.Digest[:], k.Imported,
		k.CreatedAt, k.CreatedBy, k.ExpiresAt, k.RevokedAt, k.LastUsedAt,
		rateLimit, ratePer, quotaLimit, quotaPeriod, prev, k.GraceUntil,
		nonNil(k.AllowedIPs), nonNil(k.Environments)}
}

// nonNil gives the NOT NULL text[] columns '{}' for an empty list.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// lockKeys serialises key mutations across instances for the rest of the
// transaction: the licence count and the insert are atomic, digest
// uniqueness across current and previous digests holds, and change log
// sequences become visible in commit order (a listener never skips one).
func (s *Store) lockKeyWrites(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, s.lockKeys)
	return err
}

// digestTaken reports whether any key other than id holds one of ds as its
// current or previous digest.
func digestTaken(ctx context.Context, tx pgx.Tx, id string, ds ...keystore.Digest) (bool, error) {
	var bs [][]byte
	for _, d := range ds {
		if !d.IsZero() {
			bs = append(bs, d[:])
		}
	}
	if len(bs) == 0 {
		return false, nil
	}
	var taken bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM keys
		WHERE (digest = ANY($1) OR prev_digest = ANY($1)) AND id <> $2)`, bs, id).Scan(&taken)
	return taken, err
}

// recordChange appends to the change log and notifies listeners, inside tx.
func recordChange(ctx context.Context, tx pgx.Tx, keyID string, ds ...keystore.Digest) error {
	var bs [][]byte
	seen := map[keystore.Digest]bool{}
	for _, d := range ds {
		if !d.IsZero() && !seen[d] {
			seen[d] = true
			bs = append(bs, d[:])
		}
	}
	hexes := make([]string, len(bs))
	for i, b := range bs {
		hexes[i] = hex.EncodeToString(b)
	}
	_, err := tx.Exec(ctx, `WITH c AS (INSERT INTO key_changes (key_id, digests) VALUES ($1, $2) RETURNING seq)
		SELECT pg_notify('`+Channel+`', seq::text || ' ' || $3::text) FROM c`, keyID, bs, strings.Join(hexes, ","))
	return err
}

// CreateKey implements keystore.Store.
func (s *Store) CreateKey(ctx context.Context, k *keystore.Key, lim keystore.CreateLimits, now time.Time) error {
	if k.Digest.IsZero() {
		return fmt.Errorf("creating key %s: no digest", k.ID)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.lockKeyWrites(ctx, tx); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM keys WHERE id = $1)`, k.ID).Scan(&exists); err != nil {
			return err
		}
		if exists {
			return fmt.Errorf("%w: id exists", keystore.ErrConflict)
		}
		taken, err := digestTaken(ctx, tx, k.ID, k.Digest, k.PrevDigest)
		if err != nil {
			return err
		}
		if taken {
			return fmt.Errorf("%w: digest belongs to another key", keystore.ErrConflict)
		}
		if lim.MaxActive > 0 {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM keys WHERE `+condActive, now).Scan(&n); err != nil {
				return err
			}
			if n >= lim.MaxActive {
				return keystore.ErrLicenseExhausted
			}
		}
		if lim.MaxActivePerUser > 0 {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM keys WHERE user_name = $2 AND `+condActive, now, k.User).Scan(&n); err != nil {
				return err
			}
			if n >= lim.MaxActivePerUser {
				return keystore.ErrUserKeysExhausted
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO keys (id, name, description, user_name, rights, start, digest, imported,
			created_at, created_by, expires_at, revoked_at, last_used_at,
			rate_limit, rate_per, quota_limit, quota_period, prev_digest, grace_until,
			allowed_ips, environments)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)`,
			keyArgs(k)...); err != nil {
			return err
		}
		// Instances may hold a negative cache entry for the new digest.
		return recordChange(ctx, tx, k.ID, k.Digest, k.PrevDigest)
	})
	if err != nil {
		return fmt.Errorf("creating key %s: %w", k.ID, translate(err))
	}
	return nil
}

// GetKey implements keystore.Store.
func (s *Store) GetKey(ctx context.Context, id string) (*keystore.Key, error) {
	k, _, err := scanKey(s.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM keys WHERE id = $1`, id))
	if err != nil {
		return nil, fmt.Errorf("getting key %s: %w", id, translate(err))
	}
	return k, nil
}

// LookupDigest implements keystore.Store. A current digest wins over a
// previous one (they never collide; CreateKey and UpdateKey refuse it).
func (s *Store) LookupDigest(ctx context.Context, d keystore.Digest) (*keystore.Key, error) {
	k, _, err := scanKey(s.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM keys
		WHERE digest = $1 OR prev_digest = $1 ORDER BY digest = $1 DESC LIMIT 1`, d[:]))
	if err != nil {
		// No digest in the message: it is a secret's hash.
		return nil, fmt.Errorf("looking up key: %w", translate(err))
	}
	return k, nil
}

// LookupDigestWithUserLimits implements keystore.KeyWithUserLimitsLookup:
// the key and its user's limits in one query, so a key not in the cache
// costs one round trip to the database, not two.
func (s *Store) LookupDigestWithUserLimits(ctx context.Context, d keystore.Digest) (*keystore.Key, keystore.UserLimits, error) {
	var lim limitColumns
	k, _, err := scanKey(s.pool.QueryRow(ctx, `SELECT k.*, ul.rate_limit, ul.rate_per, ul.quota_limit, ul.quota_period
		FROM (SELECT `+keyColumns+` FROM keys WHERE digest = $1 OR prev_digest = $1 ORDER BY digest = $1 DESC LIMIT 1) k
		LEFT JOIN user_limits ul ON ul.user_name = k.user_name`, d[:]), lim.dest()...)
	if err != nil {
		// No digest in the message: it is a secret's hash.
		return nil, keystore.UserLimits{}, fmt.Errorf("looking up key: %w", translate(err))
	}
	return k, lim.limits(), nil
}

// ListKeys implements keystore.Store. Keys come in creation order; the
// cursor is the position of the last key returned.
func (s *Store) ListKeys(ctx context.Context, f keystore.ListFilter) ([]*keystore.Key, string, error) {
	limit := keystore.PageSize(f.Limit)
	var after int64
	if f.Cursor != "" {
		n, err := strconv.ParseInt(f.Cursor, 10, 64)
		if err != nil || n < 0 {
			return nil, "", fmt.Errorf("listing keys: %w %q", keystore.ErrInvalidCursor, f.Cursor)
		}
		after = n
	}
	now := f.Now
	if now.IsZero() {
		now = s.now()
	}
	q := `SELECT ` + keyColumns + ` FROM keys WHERE pos > $2`
	args := []any{now, after}
	if f.User != "" {
		args = append(args, f.User)
		q += ` AND user_name = $` + strconv.Itoa(len(args))
	}
	if f.Name != "" {
		args = append(args, f.Name)
		q += ` AND name = $` + strconv.Itoa(len(args))
	}
	if f.CreatedBy != "" {
		args = append(args, f.CreatedBy)
		q += ` AND created_by = $` + strconv.Itoa(len(args))
	}
	switch f.Status {
	case "":
		q += ` AND $1::timestamptz IS NOT NULL` // keeps $1 typed
	case keystore.StatusActive:
		q += ` AND ` + condActive
	case keystore.StatusRevoked:
		q += ` AND ` + condRevoked
	case keystore.StatusExpired:
		q += ` AND ` + condExpired
	default:
		return nil, "", fmt.Errorf("listing keys: status %q must be active, expired or revoked", f.Status)
	}
	args = append(args, limit+1)
	q += ` ORDER BY pos LIMIT $` + strconv.Itoa(len(args))

	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("listing keys: %w", translate(err))
	}
	defer rows.Close()
	var (
		keys []*keystore.Key
		last int64
		more bool
	)
	for rows.Next() {
		if len(keys) == limit {
			more = true
			break
		}
		k, pos, err := scanKey(rows)
		if err != nil {
			return nil, "", fmt.Errorf("listing keys: %w", translate(err))
		}
		keys = append(keys, k)
		last = pos
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("listing keys: %w", translate(err))
	}
	next := ""
	if more {
		next = strconv.FormatInt(last, 10)
	}
	return keys, next, nil
}

// UpdateKey implements keystore.Store. fn runs inside the transaction with
// the row locked; it must be quick and must not call the store.
func (s *Store) UpdateKey(ctx context.Context, id string, fn func(*keystore.Key) error) (*keystore.Key, error) {
	var saved *keystore.Key
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.lockKeyWrites(ctx, tx); err != nil {
			return err
		}
		old, _, err := scanKey(tx.QueryRow(ctx, `SELECT `+keyColumns+` FROM keys WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return err
		}
		k := old.Clone()
		if err := fn(k); err != nil {
			return errFn{err}
		}
		if k.ID != id {
			return fmt.Errorf("the id of a key cannot change (to %q)", k.ID)
		}
		if k.Digest.IsZero() {
			return errors.New("a key needs a digest")
		}
		if k.Digest != old.Digest || k.PrevDigest != old.PrevDigest {
			taken, err := digestTaken(ctx, tx, id, k.Digest, k.PrevDigest)
			if err != nil {
				return err
			}
			if taken {
				return fmt.Errorf("%w: digest belongs to another key", keystore.ErrConflict)
			}
		}
		saved, _, err = scanKey(tx.QueryRow(ctx, `UPDATE keys SET name = $2, description = $3, user_name = $4,
			rights = $5, start = $6, digest = $7, imported = $8, created_at = $9, created_by = $10,
			expires_at = $11, revoked_at = $12, last_used_at = $13, rate_limit = $14, rate_per = $15,
			quota_limit = $16, quota_period = $17, prev_digest = $18, grace_until = $19,
			allowed_ips = $20, environments = $21
			WHERE id = $1 RETURNING `+keyColumns, keyArgs(k)...))
		if err != nil {
			return err
		}
		return recordChange(ctx, tx, id, old.Digest, old.PrevDigest, k.Digest, k.PrevDigest)
	})
	if err != nil {
		var fe errFn
		if errors.As(err, &fe) {
			return nil, fe.err
		}
		return nil, fmt.Errorf("updating key %s: %w", id, translate(err))
	}
	return saved, nil
}

// errFn carries the error of UpdateKey's fn through the transaction
// unchanged.
type errFn struct{ err error }

func (e errFn) Error() string { return e.err.Error() }
func (e errFn) Unwrap() error { return e.err }

// RevokeUser implements keystore.Store. Keys come back in creation order.
func (s *Store) RevokeUser(ctx context.Context, user string, at time.Time) ([]*keystore.Key, error) {
	var keys []*keystore.Key
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		keys = nil
		if err := s.lockKeyWrites(ctx, tx); err != nil {
			return err
		}
		// Lock in id order, as AddUsage does, so the two cannot deadlock.
		if _, err := tx.Exec(ctx, `SELECT 1 FROM keys
			WHERE user_name = $1 AND (revoked_at IS NULL OR revoked_at > $2)
			ORDER BY id FOR UPDATE`, user, at); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `UPDATE keys SET revoked_at = $2
			WHERE user_name = $1 AND (revoked_at IS NULL OR revoked_at > $2)
			RETURNING `+keyColumns, user, at)
		if err != nil {
			return err
		}
		type posKey struct {
			pos int64
			k   *keystore.Key
		}
		var pks []posKey
		for rows.Next() {
			k, pos, err := scanKey(rows)
			if err != nil {
				rows.Close()
				return err
			}
			pks = append(pks, posKey{pos, k})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		sort.Slice(pks, func(i, j int) bool { return pks[i].pos < pks[j].pos })
		for _, pk := range pks {
			if err := recordChange(ctx, tx, pk.k.ID, pk.k.Digest, pk.k.PrevDigest); err != nil {
				return err
			}
			keys = append(keys, pk.k)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("revoking keys of user %s: %w", user, translate(err))
	}
	return keys, nil
}

// CountActive implements keystore.Store.
func (s *Store) CountActive(ctx context.Context, now time.Time) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM keys WHERE `+condActive, now).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting active keys: %w", translate(err))
	}
	return n, nil
}
