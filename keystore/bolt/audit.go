package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/keystore"
)

// auditRecord is the stored form of an audit event.
type auditRecord struct {
	At      time.Time      `json:"at"`
	Actor   string         `json:"actor"`
	Action  string         `json:"action"`
	KeyID   string         `json:"key_id,omitempty"`
	Details map[string]any `json:"details,omitempty"`
}

// AppendAudit implements keystore.Store.
func (s *Store) AppendAudit(ctx context.Context, e keystore.AuditEvent) error {
	v, err := json.Marshal(auditRecord{At: e.At.UTC(), Actor: e.Actor, Action: e.Action, KeyID: e.KeyID, Details: e.Details})
	if err != nil {
		return fmt.Errorf("encoding audit event %s: %w", e.Action, err)
	}
	err = s.update(func(tx *bbolt.Tx) error {
		audit := tx.Bucket(bucketAudit)
		seq, err := audit.NextSequence()
		if err != nil {
			return err
		}
		if err := audit.Put(u64(seq), v); err != nil {
			return err
		}
		if e.KeyID != "" {
			return tx.Bucket(bucketAuditKeys).Put(compositeKey(e.KeyID, u64(seq)), nil)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("appending audit event %s: %w", e.Action, err)
	}
	return nil
}

// ListAudit implements keystore.Store. Events come newest first; the cursor
// is the sequence number of the last event returned. A key filter walks
// that key's index only.
func (s *Store) ListAudit(ctx context.Context, f keystore.AuditFilter) ([]keystore.AuditEvent, string, error) {
	before, err := parseCursor(f.Cursor)
	if err != nil {
		return nil, "", fmt.Errorf("listing audit events: %w", err)
	}
	limit := keystore.PageSize(f.Limit)
	events := []keystore.AuditEvent{}
	var next string
	err = s.view(func(tx *bbolt.Tx) error {
		audit := tx.Bucket(bucketAudit)
		var (
			c      = audit.Cursor()
			prefix []byte
		)
		if f.KeyID != "" {
			c = tx.Bucket(bucketAuditKeys).Cursor()
			prefix = compositeKey(f.KeyID, nil)
		}
		// Position on the last entry before the cursor (or the end).
		var kk []byte
		if before == 0 {
			kk = seekLast(c, prefix)
		} else {
			kk, _ = c.Seek(append(bytes.Clone(prefix), u64(before)...))
			if kk == nil {
				kk, _ = c.Last()
			} else {
				kk, _ = c.Prev()
			}
		}
		for ; kk != nil && bytes.HasPrefix(kk, prefix); kk, _ = c.Prev() {
			if len(kk) != len(prefix)+8 {
				continue // a key id extending f.KeyID past a NUL byte
			}
			seq := binary.BigEndian.Uint64(kk[len(prefix):])
			if before != 0 && seq >= before {
				continue
			}
			if len(events) == limit {
				next = formatCursor(uint64(events[len(events)-1].Seq))
				return nil
			}
			v := audit.Get(u64(seq))
			if v == nil {
				return fmt.Errorf("audit index names missing event %d", seq)
			}
			var r auditRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decoding audit event %d: %w", seq, err)
			}
			if f.KeyID != "" && r.KeyID != f.KeyID {
				continue
			}
			events = append(events, keystore.AuditEvent{Seq: int64(seq), At: r.At, Actor: r.Actor, Action: r.Action, KeyID: r.KeyID, Details: r.Details})
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("listing audit events: %w", err)
	}
	return events, next, nil
}

// seekLast positions c on the last entry with prefix (the last entry of
// the bucket when prefix is empty) and returns its key.
func seekLast(c *bbolt.Cursor, prefix []byte) []byte {
	if len(prefix) == 0 {
		k, _ := c.Last()
		return k
	}
	// Every entry of prefix sorts before prefix with its NUL raised to 0x01.
	end := bytes.Clone(prefix)
	end[len(end)-1] = 1
	k, _ := c.Seek(end)
	if k == nil {
		k, _ = c.Last()
		return k
	}
	k, _ = c.Prev()
	return k
}
