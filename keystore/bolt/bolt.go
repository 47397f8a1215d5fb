// Package bolt is the embedded single-file keystore.Store on bbolt: one
// file, no server, right for a single instance (docs/design.md §3).
//
// Layout (all buckets at the top level):
//
//	keys             id → JSON key record (digests as hex, never a secret)
//	digests          SHA-256 digest (32 bytes) → id, current and previous digests
//	order            creation sequence (8 bytes, big endian) → id
//	users            user 0x00 sequence → id
//	audit            sequence (big endian) → JSON event
//	audit_keys       key id 0x00 audit sequence → ""
//	usage            key id 0x00 YYYYMMDD → request count (8 bytes, big endian)
//	batches          usage batch id → applied at (Unix ns, big endian)
//	batches_by_time  applied at 0x00 batch id → ""
//	outbox           sequence (big endian) → JSON webhook delivery, undelivered
//	outbox_done      sequence (big endian) → JSON webhook delivery, delivered
//	outbox_ids       delivery id → sequence
//	outbox_dedupe    dedupe value → delivery id
//	meta             "version" → schema version
//
// bbolt serialises writers, so every check-then-write (licence count and
// insert, digest uniqueness, batch idempotence) is atomic.
package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	bbolt "go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"

	"github.com/keygate/keygate/keystore"
)

// Defaults of Options.
const (
	DefaultTimeout        = 5 * time.Second
	DefaultBatchRetention = 7 * 24 * time.Hour
)

// schemaVersion is the layout version written to the meta bucket.
const schemaVersion = 1

var (
	bucketKeys          = []byte("keys")
	bucketDigests       = []byte("digests")
	bucketOrder         = []byte("order")
	bucketUsers         = []byte("users")
	bucketAudit         = []byte("audit")
	bucketAuditKeys     = []byte("audit_keys")
	bucketUsage         = []byte("usage")
	bucketBatches       = []byte("batches")
	bucketBatchesByTime = []byte("batches_by_time")
	bucketMeta          = []byte("meta")
	bucketUserLimits    = []byte("user_limits")
	bucketOutbox        = []byte("outbox")
	bucketOutboxDone    = []byte("outbox_done")
	bucketOutboxIDs     = []byte("outbox_ids")
	bucketOutboxDedupe  = []byte("outbox_dedupe")
	metaVersion         = []byte("version")
	allBuckets          = [][]byte{bucketKeys, bucketDigests, bucketOrder, bucketUsers, bucketAudit, bucketAuditKeys, bucketUsage, bucketBatches, bucketBatchesByTime, bucketMeta, bucketUserLimits, bucketOutbox, bucketOutboxDone, bucketOutboxIDs, bucketOutboxDedupe}
)

// Options configure Open. The zero value is ready to use.
type Options struct {
	// Timeout is how long Open waits for the file lock when another
	// process holds the file. Default 5s; it is never infinite, so a
	// locked file is a clear error rather than a hang.
	Timeout time.Duration
	// BatchRetention is how long applied usage batch ids are remembered
	// for AddUsage's idempotence. Default 7 days.
	BatchRetention time.Duration
	// Now is the clock used to age out applied batch ids. Default time.Now.
	Now func() time.Time
}

// Store is a keystore.Store in a single bbolt file.
type Store struct {
	db        *bbolt.DB
	path      string
	retention time.Duration
	now       func() time.Time
	checkTook time.Duration
}

// Open opens or creates the store at path. A missing directory is created
// with mode 0700 and a new file with mode 0600. An existing file that is
// empty, unreadable, truncated or fails the consistency check is an error
// wrapping keystore.ErrCorrupt, never a fresh empty store.
func Open(path string, opts Options) (*Store, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.BatchRetention <= 0 {
		opts.BatchRetention = DefaultBatchRetention
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating the directory of key store %s: %w", path, err)
	}
	if err := preflight(path); err != nil {
		return nil, err
	}
	var db *bbolt.DB
	s := &Store{path: path, retention: opts.BatchRetention, now: opts.Now}
	err := s.guard(func() error {
		var err error
		db, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: opts.Timeout})
		return err
	})
	if errors.Is(err, keystore.ErrCorrupt) {
		return nil, err
	}
	if errors.Is(err, bberrors.ErrInvalid) || errors.Is(err, bberrors.ErrChecksum) || errors.Is(err, bberrors.ErrVersionMismatch) {
		return nil, corrupt(path, "%v", err)
	}
	if errors.Is(err, bberrors.ErrTimeout) {
		return nil, fmt.Errorf("opening key store %s: another process holds it (file still locked after %s): %w", path, opts.Timeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("opening key store %s: %w", path, err)
	}
	s.db = db
	if err := s.check(); err != nil {
		db.Close()
		return nil, err
	}
	err = s.update(func(tx *bbolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("creating bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(metaVersion); v != nil {
			n, err := strconv.Atoi(string(v))
			if err != nil {
				return fmt.Errorf("reading schema version %q: %w", v, err)
			}
			if n > schemaVersion {
				return fmt.Errorf("schema version %d is newer than this keygate supports (%d)", n, schemaVersion)
			}
			return nil
		}
		return meta.Put(metaVersion, []byte(strconv.Itoa(schemaVersion)))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialising key store %s: %w", path, err)
	}
	return s, nil
}

// Path returns the file the store lives in.
func (s *Store) Path() string { return s.path }

// Close releases the file and its lock.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing key store %s: %w", s.path, err)
	}
	return nil
}

// view and update run fn in a transaction, translate bbolt's "closed"
// into keystore.ErrUnavailable and its panics on damaged pages into
// keystore.ErrCorrupt. Every bbolt transaction goes through them.
func (s *Store) view(fn func(*bbolt.Tx) error) error {
	return s.guard(func() error { return storeErr(s.db.View(fn)) })
}

func (s *Store) update(fn func(*bbolt.Tx) error) error {
	return s.guard(func() error { return storeErr(s.db.Update(fn)) })
}

func storeErr(err error) error {
	if errors.Is(err, bberrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("%w: %w", keystore.ErrUnavailable, err)
	}
	return err
}

// u64 encodes v big endian, so byte order is numeric order.
func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// compositeKey returns prefix 0x00 suffix.
func compositeKey(prefix string, suffix []byte) []byte {
	b := make([]byte, 0, len(prefix)+1+len(suffix))
	b = append(b, prefix...)
	b = append(b, 0)
	return append(b, suffix...)
}

// formatCursor and parseCursor encode a position: the sequence number of
// the last item returned.
func formatCursor(seq uint64) string { return strconv.FormatUint(seq, 10) }

func parseCursor(c string) (uint64, error) {
	if c == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(c, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%w %q", keystore.ErrInvalidCursor, c)
	}
	return n, nil
}

var _ keystore.Store = (*Store)(nil)
