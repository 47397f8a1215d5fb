package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/keystore"
)

const dayLayout = "20060102"

// dayOf returns the UTC day of t.
func dayOf(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func usageKey(id string, day time.Time) []byte {
	return compositeKey(id, []byte(day.UTC().Format(dayLayout)))
}

// AddUsage implements keystore.Store. Deltas of keys that do not exist are
// counted all the same (the key may be gone; the counts are facts).
func (s *Store) AddUsage(ctx context.Context, batchID string, deltas []keystore.UsageDelta) error {
	now := s.now()
	err := s.update(func(tx *bbolt.Tx) error {
		if batchID != "" {
			batches := tx.Bucket(bucketBatches)
			if batches.Get([]byte(batchID)) != nil {
				return nil // applied before
			}
			stamp := u64(uint64(now.UnixNano()))
			if err := batches.Put([]byte(batchID), stamp); err != nil {
				return err
			}
			if err := tx.Bucket(bucketBatchesByTime).Put(compositeKey(string(stamp), []byte(batchID)), nil); err != nil {
				return err
			}
			if err := pruneBatches(tx, now.Add(-s.retention)); err != nil {
				return err
			}
		}

		usage := tx.Bucket(bucketUsage)
		lastUsed := map[string]time.Time{}
		for _, d := range deltas {
			if d.Requests > 0 {
				k := usageKey(d.KeyID, dayOf(d.Day))
				var n uint64
				if v := usage.Get(k); len(v) == 8 {
					n = binary.BigEndian.Uint64(v)
				}
				if err := usage.Put(k, u64(n+uint64(d.Requests))); err != nil {
					return err
				}
			}
			if d.LastUsed.After(lastUsed[d.KeyID]) {
				lastUsed[d.KeyID] = d.LastUsed
			}
		}
		for id, t := range lastUsed {
			r, err := getRecord(tx, id)
			if errors.Is(err, keystore.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if r.LastUsedAt != nil && !t.After(*r.LastUsedAt) {
				continue
			}
			r.LastUsedAt = utc(&t)
			if err := putRecord(tx, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("adding usage batch %s: %w", batchID, err)
	}
	return nil
}

// pruneBatches forgets the batch ids applied before cutoff.
func pruneBatches(tx *bbolt.Tx, cutoff time.Time) error {
	batches := tx.Bucket(bucketBatches)
	c := tx.Bucket(bucketBatchesByTime).Cursor()
	limit := u64(uint64(max(cutoff.UnixNano(), 0)))
	for k, _ := c.First(); k != nil && bytes.Compare(k[:8], limit) < 0; k, _ = c.First() {
		if err := batches.Delete(k[9:]); err != nil {
			return err
		}
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// Usage implements keystore.Store.
func (s *Store) Usage(ctx context.Context, id string, from, to time.Time) ([]keystore.DayUsage, error) {
	out := []keystore.DayUsage{}
	err := s.view(func(tx *bbolt.Tx) error {
		first, last := usageKey(id, dayOf(from)), usageKey(id, dayOf(to))
		c := tx.Bucket(bucketUsage).Cursor()
		for k, v := c.Seek(first); k != nil && bytes.Compare(k, last) <= 0; k, v = c.Next() {
			if len(k) != len(first) || len(v) != 8 {
				continue // another key id that extends id past a NUL byte
			}
			day, err := time.Parse(dayLayout, string(k[len(k)-len(dayLayout):]))
			if err != nil {
				return fmt.Errorf("decoding usage day %q: %w", k, err)
			}
			if n := binary.BigEndian.Uint64(v); n > 0 {
				out = append(out, keystore.DayUsage{Day: day, Requests: int64(n)})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading usage of key %s: %w", id, err)
	}
	return out, nil
}

// UsagePrefixed implements keystore.Store: one seek to prefix, then the
// ids that extend it, in order.
func (s *Store) UsagePrefixed(ctx context.Context, prefix string, from, to time.Time) (map[string][]keystore.DayUsage, error) {
	first, last := dayOf(from).Format(dayLayout), dayOf(to).Format(dayLayout)
	out := map[string][]keystore.DayUsage{}
	err := s.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketUsage).Cursor()
		for k, v := c.Seek([]byte(prefix)); k != nil && bytes.HasPrefix(k, []byte(prefix)); k, v = c.Next() {
			i := bytes.LastIndexByte(k, 0)
			if i < 0 || len(v) != 8 {
				continue
			}
			ds := string(k[i+1:])
			if ds < first || ds > last {
				continue
			}
			day, err := time.Parse(dayLayout, ds)
			if err != nil {
				return fmt.Errorf("decoding usage day %q: %w", k, err)
			}
			if n := binary.BigEndian.Uint64(v); n > 0 {
				id := string(k[:i])
				out[id] = append(out[id], keystore.DayUsage{Day: day, Requests: int64(n)})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading usage with prefix %q: %w", prefix, err)
	}
	return out, nil
}

// UsageTotals implements keystore.Store. It walks the usage bucket: the
// file store serves one instance, and reports are rare.
func (s *Store) UsageTotals(ctx context.Context, from, to time.Time) (map[string]int64, error) {
	first, last := dayOf(from).Format(dayLayout), dayOf(to).Format(dayLayout)
	out := map[string]int64{}
	err := s.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketUsage).ForEach(func(k, v []byte) error {
			i := bytes.LastIndexByte(k, 0)
			if i < 0 || len(v) != 8 {
				return nil
			}
			if day := string(k[i+1:]); day < first || day > last {
				return nil
			}
			if n := binary.BigEndian.Uint64(v); n > 0 {
				out[string(k[:i])] += int64(n)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("reading usage totals: %w", err)
	}
	return out, nil
}
