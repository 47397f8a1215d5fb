package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/keystore"
)

// keyRecord is the stored form of a key. Its JSON names are the file
// format: change them only with a schema version bump.
type keyRecord struct {
	Seq          uint64       `json:"seq"`
	ID           string       `json:"id"`
	Name         string       `json:"name"`
	Description  string       `json:"description,omitempty"`
	User         string       `json:"user"`
	Rights       []string     `json:"rights"`
	Start        string       `json:"start"`
	Digest       string       `json:"digest"`
	Imported     bool         `json:"imported,omitempty"`
	CreatedAt    time.Time    `json:"created_at"`
	CreatedBy    string       `json:"created_by"`
	ExpiresAt    *time.Time   `json:"expires_at,omitempty"`
	RevokedAt    *time.Time   `json:"revoked_at,omitempty"`
	LastUsedAt   *time.Time   `json:"last_used_at,omitempty"`
	Rate         *rateRecord  `json:"rate,omitempty"`
	Quota        *quotaRecord `json:"quota,omitempty"`
	AllowedIPs   []string     `json:"allowed_ips,omitempty"`
	Environments []string     `json:"environments,omitempty"`
	PrevDigest   string       `json:"prev_digest,omitempty"`
	GraceUntil   *time.Time   `json:"grace_until,omitempty"`
}

type rateRecord struct {
	Limit int64  `json:"limit"`
	Per   string `json:"per"` // time.Duration.String, exact
}

type quotaRecord struct {
	Limit  int64  `json:"limit"`
	Period string `json:"period"`
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func toRecord(k *keystore.Key, seq uint64) *keyRecord {
	r := &keyRecord{
		Seq:          seq,
		ID:           k.ID,
		Name:         k.Name,
		Description:  k.Description,
		User:         k.User,
		Rights:       k.Rights,
		Start:        k.Start,
		Digest:       k.Digest.Hex(),
		Imported:     k.Imported,
		CreatedAt:    k.CreatedAt.UTC(),
		CreatedBy:    k.CreatedBy,
		ExpiresAt:    utc(k.ExpiresAt),
		RevokedAt:    utc(k.RevokedAt),
		LastUsedAt:   utc(k.LastUsedAt),
		GraceUntil:   utc(k.GraceUntil),
		AllowedIPs:   k.AllowedIPs,
		Environments: k.Environments,
	}
	if k.Rate != nil {
		r.Rate = &rateRecord{Limit: k.Rate.Limit, Per: k.Rate.Per.String()}
	}
	if k.Quota != nil {
		r.Quota = &quotaRecord{Limit: k.Quota.Limit, Period: k.Quota.Period}
	}
	if !k.PrevDigest.IsZero() {
		r.PrevDigest = k.PrevDigest.Hex()
	}
	return r
}

func (r *keyRecord) key() (*keystore.Key, error) {
	k := &keystore.Key{
		ID:           r.ID,
		Name:         r.Name,
		Description:  r.Description,
		User:         r.User,
		Rights:       r.Rights,
		Start:        r.Start,
		Imported:     r.Imported,
		CreatedAt:    r.CreatedAt,
		CreatedBy:    r.CreatedBy,
		ExpiresAt:    r.ExpiresAt,
		RevokedAt:    r.RevokedAt,
		LastUsedAt:   r.LastUsedAt,
		GraceUntil:   r.GraceUntil,
		AllowedIPs:   r.AllowedIPs,
		Environments: r.Environments,
	}
	var err error
	if k.Digest, err = keystore.ParseDigestHex(r.Digest); err != nil {
		return nil, fmt.Errorf("decoding key %s: digest: %w", r.ID, err)
	}
	if r.PrevDigest != "" {
		if k.PrevDigest, err = keystore.ParseDigestHex(r.PrevDigest); err != nil {
			return nil, fmt.Errorf("decoding key %s: previous digest: %w", r.ID, err)
		}
	}
	if r.Rate != nil {
		per, err := time.ParseDuration(r.Rate.Per)
		if err != nil {
			return nil, fmt.Errorf("decoding key %s: rate: %w", r.ID, err)
		}
		k.Rate = &keystore.Rate{Limit: r.Rate.Limit, Per: per}
	}
	if r.Quota != nil {
		k.Quota = &keystore.Quota{Limit: r.Quota.Limit, Period: r.Quota.Period}
	}
	return k, nil
}

// getRecord reads the record of id, or ErrNotFound.
func getRecord(tx *bbolt.Tx, id string) (*keyRecord, error) {
	v := tx.Bucket(bucketKeys).Get([]byte(id))
	if v == nil {
		return nil, keystore.ErrNotFound
	}
	return decodeRecord(id, v)
}

func decodeRecord(id string, v []byte) (*keyRecord, error) {
	var r keyRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decoding key %s: %w", id, err)
	}
	return &r, nil
}

func putRecord(tx *bbolt.Tx, r *keyRecord) error {
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding key %s: %w", r.ID, err)
	}
	return tx.Bucket(bucketKeys).Put([]byte(r.ID), v)
}

// digestsOf returns the non-zero digests a key is found by.
func digestsOf(k *keystore.Key) []keystore.Digest {
	ds := make([]keystore.Digest, 0, 2)
	if !k.Digest.IsZero() {
		ds = append(ds, k.Digest)
	}
	if !k.PrevDigest.IsZero() && k.PrevDigest != k.Digest {
		ds = append(ds, k.PrevDigest)
	}
	return ds
}

// claimDigests indexes the digests of k, failing with ErrConflict if one
// belongs to another key.
func claimDigests(tx *bbolt.Tx, k *keystore.Key) error {
	b := tx.Bucket(bucketDigests)
	for _, d := range digestsOf(k) {
		if owner := b.Get(d[:]); owner != nil && string(owner) != k.ID {
			return keystore.ErrConflict
		}
		if err := b.Put(d[:], []byte(k.ID)); err != nil {
			return err
		}
	}
	return nil
}

// releaseDigests removes the index entries of k's digests that point to k.
func releaseDigests(tx *bbolt.Tx, k *keystore.Key) error {
	b := tx.Bucket(bucketDigests)
	for _, d := range digestsOf(k) {
		if string(b.Get(d[:])) == k.ID {
			if err := b.Delete(d[:]); err != nil {
				return err
			}
		}
	}
	return nil
}

func userIndexKey(user string, seq uint64) []byte { return compositeKey(user, u64(seq)) }

// CreateKey implements keystore.Store.
func (s *Store) CreateKey(ctx context.Context, k *keystore.Key, lim keystore.CreateLimits, now time.Time) error {
	if k.ID == "" {
		return errors.New("creating key: empty id")
	}
	if k.Digest.IsZero() {
		return fmt.Errorf("creating key %s: empty digest", k.ID)
	}
	err := s.update(func(tx *bbolt.Tx) error {
		keys := tx.Bucket(bucketKeys)
		if keys.Get([]byte(k.ID)) != nil {
			return keystore.ErrConflict
		}
		if lim.MaxActive > 0 {
			n, err := countActive(tx, now, lim.MaxActive)
			if err != nil {
				return err
			}
			if n >= lim.MaxActive {
				return keystore.ErrLicenseExhausted
			}
		}
		if lim.MaxActivePerUser > 0 {
			n, err := countActiveOfUser(tx, k.User, now, lim.MaxActivePerUser)
			if err != nil {
				return err
			}
			if n >= lim.MaxActivePerUser {
				return keystore.ErrUserKeysExhausted
			}
		}
		return insertKey(tx, k)
	})
	if err != nil {
		return fmt.Errorf("creating key %s: %w", k.ID, err)
	}
	return nil
}

// insertKey indexes and stores a new key.
func insertKey(tx *bbolt.Tx, k *keystore.Key) error {
	if err := claimDigests(tx, k); err != nil {
		return err
	}
	order := tx.Bucket(bucketOrder)
	seq, err := order.NextSequence()
	if err != nil {
		return err
	}
	if err := order.Put(u64(seq), []byte(k.ID)); err != nil {
		return err
	}
	if err := tx.Bucket(bucketUsers).Put(userIndexKey(k.User, seq), []byte(k.ID)); err != nil {
		return err
	}
	return putRecord(tx, toRecord(k, seq))
}

// GetKey implements keystore.Store.
func (s *Store) GetKey(ctx context.Context, id string) (*keystore.Key, error) {
	var k *keystore.Key
	err := s.view(func(tx *bbolt.Tx) error {
		r, err := getRecord(tx, id)
		if err != nil {
			return err
		}
		k, err = r.key()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("getting key %s: %w", id, err)
	}
	return k, nil
}

// LookupDigest implements keystore.Store. The error never names the digest.
func (s *Store) LookupDigest(ctx context.Context, d keystore.Digest) (*keystore.Key, error) {
	var k *keystore.Key
	err := s.view(func(tx *bbolt.Tx) error {
		if d.IsZero() {
			return keystore.ErrNotFound
		}
		id := tx.Bucket(bucketDigests).Get(d[:])
		if id == nil {
			return keystore.ErrNotFound
		}
		r, err := getRecord(tx, string(id))
		if err != nil {
			return err
		}
		k, err = r.key()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("looking up key by digest: %w", err)
	}
	return k, nil
}

// ListKeys implements keystore.Store. Keys come in creation order; the
// cursor is the creation sequence of the last key returned. A user filter
// walks that user's index only.
func (s *Store) ListKeys(ctx context.Context, f keystore.ListFilter) ([]*keystore.Key, string, error) {
	after, err := parseCursor(f.Cursor)
	if err != nil {
		return nil, "", fmt.Errorf("listing keys: %w", err)
	}
	limit := keystore.PageSize(f.Limit)
	keys := []*keystore.Key{}
	var next string
	err = s.view(func(tx *bbolt.Tx) error {
		var (
			c      = tx.Bucket(bucketOrder).Cursor()
			prefix []byte
		)
		if f.User != "" {
			c = tx.Bucket(bucketUsers).Cursor()
			prefix = compositeKey(f.User, nil)
		}
		var lastSeq uint64
		for kk, id := c.Seek(append(bytes.Clone(prefix), u64(after+1)...)); kk != nil && bytes.HasPrefix(kk, prefix); kk, id = c.Next() {
			if len(kk) != len(prefix)+8 {
				continue // a user whose name extends f.User past a NUL byte
			}
			seq := binary.BigEndian.Uint64(kk[len(prefix):])
			r, err := getRecord(tx, string(id))
			if err != nil {
				return err
			}
			k, err := r.key()
			if err != nil {
				return err
			}
			if !matches(k, f) {
				continue
			}
			if len(keys) == limit {
				next = formatCursor(lastSeq)
				return nil
			}
			keys = append(keys, k)
			lastSeq = seq
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("listing keys: %w", err)
	}
	return keys, next, nil
}

func matches(k *keystore.Key, f keystore.ListFilter) bool {
	return (f.User == "" || k.User == f.User) &&
		(f.CreatedBy == "" || k.CreatedBy == f.CreatedBy) &&
		(f.Name == "" || k.Name == f.Name) &&
		(f.Status == "" || k.Status(f.Now) == f.Status)
}

// UpdateKey implements keystore.Store.
func (s *Store) UpdateKey(ctx context.Context, id string, fn func(*keystore.Key) error) (*keystore.Key, error) {
	var saved *keystore.Key
	var fnErr error
	err := s.update(func(tx *bbolt.Tx) error {
		r, err := getRecord(tx, id)
		if err != nil {
			return err
		}
		old, err := r.key()
		if err != nil {
			return err
		}
		k := old.Clone()
		if err := fn(k); err != nil {
			fnErr = err
			return err
		}
		k.ID = id // fn may change anything but the id
		if err := releaseDigests(tx, old); err != nil {
			return err
		}
		if err := claimDigests(tx, k); err != nil {
			return err
		}
		if k.User != old.User {
			users := tx.Bucket(bucketUsers)
			if err := users.Delete(userIndexKey(old.User, r.Seq)); err != nil {
				return err
			}
			if err := users.Put(userIndexKey(k.User, r.Seq), []byte(id)); err != nil {
				return err
			}
		}
		if err := putRecord(tx, toRecord(k, r.Seq)); err != nil {
			return err
		}
		saved = k.Clone()
		return nil
	})
	if fnErr != nil && errors.Is(err, fnErr) {
		return nil, fnErr // the caller's own error, as it is
	}
	if err != nil {
		return nil, fmt.Errorf("updating key %s: %w", id, err)
	}
	return saved, nil
}

// RevokeUser implements keystore.Store.
func (s *Store) RevokeUser(ctx context.Context, user string, at time.Time) ([]*keystore.Key, error) {
	revoked := []*keystore.Key{}
	err := s.update(func(tx *bbolt.Tx) error {
		prefix := compositeKey(user, nil)
		c := tx.Bucket(bucketUsers).Cursor()
		for kk, id := c.Seek(prefix); kk != nil && bytes.HasPrefix(kk, prefix); kk, id = c.Next() {
			r, err := getRecord(tx, string(id))
			if err != nil {
				return err
			}
			if r.User != user || r.RevokedAt != nil {
				continue
			}
			r.RevokedAt = utc(&at)
			if err := putRecord(tx, r); err != nil {
				return err
			}
			k, err := r.key()
			if err != nil {
				return err
			}
			revoked = append(revoked, k)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("revoking keys of user %q: %w", user, err)
	}
	return revoked, nil
}

// CountActive implements keystore.Store.
func (s *Store) CountActive(ctx context.Context, now time.Time) (int, error) {
	var n int
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		n, err = countActive(tx, now, 0)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("counting active keys: %w", err)
	}
	return n, nil
}

// statusRecord is the part of a key record that decides its status.
type statusRecord struct {
	ExpiresAt *time.Time `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at"`
}

// countActive counts the keys active at now, stopping at stop if > 0.
// countActiveOfUser counts the active keys of user through the user index,
// stopping at stop.
func countActiveOfUser(tx *bbolt.Tx, user string, now time.Time, stop int) (int, error) {
	n := 0
	prefix := compositeKey(user, nil)
	c := tx.Bucket(bucketUsers).Cursor()
	for kk, id := c.Seek(prefix); kk != nil && bytes.HasPrefix(kk, prefix); kk, id = c.Next() {
		if len(kk) != len(prefix)+8 {
			continue // a user whose name extends user past a NUL byte
		}
		r, err := getRecord(tx, string(id))
		if err != nil {
			return 0, err
		}
		if activeAt(r.ExpiresAt, r.RevokedAt, now) {
			if n++; n == stop {
				break
			}
		}
	}
	return n, nil
}

// activeAt reports whether a key with these times is active at now.
func activeAt(expires, revoked *time.Time, now time.Time) bool {
	return (&keystore.Key{ExpiresAt: expires, RevokedAt: revoked}).Status(now) == keystore.StatusActive
}

func countActive(tx *bbolt.Tx, now time.Time, stop int) (int, error) {
	n := 0
	c := tx.Bucket(bucketKeys).Cursor()
	for id, v := c.First(); id != nil; id, v = c.Next() {
		var r statusRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return 0, fmt.Errorf("decoding key %s: %w", id, err)
		}
		if activeAt(r.ExpiresAt, r.RevokedAt, now) {
			if n++; n == stop {
				break
			}
		}
	}
	return n, nil
}
