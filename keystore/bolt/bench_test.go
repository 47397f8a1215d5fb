package bolt

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/storetest"
)

// benchDigest is the digest of the i-th benchmark key.
func benchDigest(i int) keystore.Digest { return keystore.DigestOf("bench-key-" + strconv.Itoa(i)) }

// fillStore inserts n keys shaped like real ones, 10,000 per transaction.
func fillStore(b *testing.B, s *Store, n int) {
	b.Helper()
	s.db.NoSync = true
	defer func() { s.db.NoSync = false }()
	created := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	const batch = 10000
	for start := 0; start < n; start += batch {
		err := s.db.Update(func(tx *bbolt.Tx) error {
			for i := start; i < min(start+batch, n); i++ {
				k := &keystore.Key{
					ID:        fmt.Sprintf("key_bench%015d", i),
					Name:      "integration-" + strconv.Itoa(i%100),
					User:      "USER" + strconv.Itoa(i%1000),
					Rights:    []string{"assets:read", "workorders:write"},
					Start:     "kg_abcd",
					Digest:    benchDigest(i),
					CreatedAt: created,
					CreatedBy: "local",
					Rate:      &keystore.Rate{Limit: 100, Per: time.Minute},
				}
				if err := insertKey(tx, k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatalf("filling the store: %v", err)
		}
	}
	if err := s.db.Sync(); err != nil {
		b.Fatalf("syncing: %v", err)
	}
}

func BenchmarkLookupDigest(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			if n > 100_000 && testing.Short() {
				b.Skip("skipping the 1M-key store in -short mode")
			}
			s, err := Open(filepath.Join(b.TempDir(), "keys.db"), Options{})
			if err != nil {
				b.Fatalf("Open: %v", err)
			}
			defer s.Close()
			fillStore(b, s, n)
			// Spread lookups over the whole key space, not one hot page.
			digests := make([]keystore.Digest, min(n, 65536))
			for i := range digests {
				digests[i] = benchDigest(i * 7919 % n)
			}
			ctx := b.Context()
			// Warm up: touch every page the lookups will read, so the timed
			// loop measures steady-state lookups, not first-touch page faults
			// of the mmap.
			for _, d := range digests {
				if _, err := s.LookupDigest(ctx, d); err != nil {
					b.Fatalf("LookupDigest: %v", err)
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := s.LookupDigest(ctx, digests[i%len(digests)]); err != nil {
					b.Fatalf("LookupDigest: %v", err)
				}
				i++
			}
		})
	}
}

// BenchmarkColdKey: the first request of a key not in the cache against a
// cached one (storetest.BenchmarkColdKey).
func BenchmarkColdKey(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "keys.db"), Options{})
	if err != nil {
		b.Fatalf("Open: %v", err)
	}
	defer s.Close()
	storetest.BenchmarkColdKey(b, s)
}
