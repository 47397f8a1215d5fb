package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"runtime/debug"
	"strings"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/keystore"
)

// restoreHint ends every corruption error: keygate never replaces a damaged
// file by a new empty store on its own, since that would drop every key.
const restoreHint = "restore it from a backup (see docs/operations-hardening.md); if you really want a new empty store, move the file away"

// corrupt wraps a corruption finding in keystore.ErrCorrupt (and
// ErrUnavailable, so requests get 503).
func corrupt(path, format string, args ...any) error {
	return fmt.Errorf("key store %s: %w: %w: %s; %s", path, keystore.ErrUnavailable, keystore.ErrCorrupt, fmt.Sprintf(format, args...), restoreHint)
}

// bbolt's on-disk meta page: a 16-byte page header, then the meta fields.
const (
	pageHeaderSize = 16
	metaSize       = 64 // magic … checksum
	metaChecksumAt = 56 // the checksum covers the bytes before it
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
)

type metaPage struct {
	pageSize uint32
	pgid     uint64 // high water mark: pages below it are in use
	txid     uint64
}

// parseMeta decodes and validates the meta at the start of page buf.
func parseMeta(buf []byte) (metaPage, bool) {
	if len(buf) < pageHeaderSize+metaSize {
		return metaPage{}, false
	}
	m := buf[pageHeaderSize : pageHeaderSize+metaSize]
	le := binary.LittleEndian
	if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != boltVersion {
		return metaPage{}, false
	}
	h := fnv.New64a()
	h.Write(m[:metaChecksumAt])
	if h.Sum64() != le.Uint64(m[metaChecksumAt:]) {
		return metaPage{}, false
	}
	mp := metaPage{pageSize: le.Uint32(m[8:]), pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}
	if mp.pageSize < 512 || mp.pageSize > 1<<20 || mp.pageSize&(mp.pageSize-1) != 0 {
		return metaPage{}, false
	}
	return mp, true
}

// preflight checks an existing file before bbolt maps it: readable, not
// empty, a valid meta page, and as long as that meta says. bbolt would
// silently initialise an empty file as a new store, and reading pages past
// the end of a truncated file kills the process (SIGBUS) rather than
// panicking. A missing file is fine: Open creates it.
func preflight(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("key store %s exists but cannot be read: %w; fix its ownership or permissions, or %s", path, err, restoreHint)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("key store %s: %w", path, err)
	}
	if st.IsDir() {
		return fmt.Errorf("key store %s is a directory, not a key store file", path)
	}
	size := st.Size()
	if size == 0 {
		return corrupt(path, "the file is empty (0 bytes; a full disk or an interrupted copy?)")
	}
	// meta0 is page 0; meta1 is page 1, at meta0's page size or, when
	// meta0 is damaged, at one of the usual ones.
	buf := make([]byte, 64<<10)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("key store %s exists but cannot be read: %w; %s", path, err, restoreHint)
	}
	buf = buf[:n]
	var best metaPage
	found := false
	consider := func(m metaPage, ok bool) {
		if ok && (!found || m.txid > best.txid) {
			best, found = m, true
		}
	}
	m0, ok0 := parseMeta(buf)
	consider(m0, ok0)
	for _, ps := range []int{int(m0.pageSize), os.Getpagesize(), 4096, 16384, 65536} {
		if ps > 0 && ps < len(buf) {
			m1, ok1 := parseMeta(buf[ps:])
			if ok1 && int(m1.pageSize) == ps {
				consider(m1, ok1)
				if ok0 {
					break
				}
			}
		}
	}
	if !found {
		return corrupt(path, "no valid meta page (not a key store file, or its header was overwritten)")
	}
	if want := int64(best.pgid) * int64(best.pageSize); size < want {
		return corrupt(path, "the file is truncated: %d bytes, its header says %d", size, want)
	}
	return nil
}

// check runs bbolt's consistency check over the whole file (every page
// reachable exactly once, keys ordered, no page both used and free).
func (s *Store) check() (err error) {
	start := time.Now()
	defer s.recoverCorrupt(&err)
	var problems []string
	err = s.db.View(func(tx *bbolt.Tx) error {
		for e := range tx.Check() {
			if len(problems) < 5 {
				problems = append(problems, e.Error())
			}
		}
		return nil
	})
	s.checkTook = time.Since(start)
	if err != nil {
		return corrupt(s.path, "consistency check: %v", err)
	}
	if len(problems) > 0 {
		return corrupt(s.path, "consistency check: %s", strings.Join(problems, "; "))
	}
	return nil
}

// CheckDuration is how long the consistency check at Open took.
func (s *Store) CheckDuration() time.Duration { return s.checkTook }

// recoverCorrupt turns a panic inside bbolt (its reaction to pages that
// are not what they should be) into an ErrCorrupt error of the operation,
// so one bad page fails requests with 503 instead of ending the process.
// Use as `defer s.recoverCorrupt(&err)` with faults made panics.
func (s *Store) recoverCorrupt(err *error) {
	if p := recover(); p != nil {
		*err = corrupt(s.path, "storage engine failure: %v", p)
	}
}

// guard runs fn with memory faults turned into panics (a damaged page can
// point bbolt outside the mapped file) and recovered into ErrCorrupt.
func (s *Store) guard(fn func() error) (err error) {
	defer s.recoverCorrupt(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return fn()
}
