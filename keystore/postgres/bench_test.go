package postgres_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"testing"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/postgres"
	"github.com/keygate/keygate/keystore/storetest"
)

// BenchmarkLookupDigest measures the cache-miss path of a request: one
// LookupDigest against a table of n keys, every key having a previous
// digest too. Keys are inserted in bulk by SQL; key i has the digest
// SHA-256("bench-<i>").
func BenchmarkLookupDigest(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			s := newStore(b, postgres.Options{MaxConns: 8})
			if _, err := s.Pool().Exec(b.Context(), `INSERT INTO keys
				(id, name, user_name, rights, start, digest, prev_digest, created_at)
				SELECT 'key_bench' || i, 'bench', 'BENCH', '{assets:read}', 'kg_bnch',
				       sha256(convert_to('bench-' || i, 'UTF8')), sha256(convert_to('prev-' || i, 'UTF8')), now()
				FROM generate_series(0, $1 - 1) AS i`, n); err != nil {
				b.Fatalf("inserting %d keys: %v", n, err)
			}
			if _, err := s.Pool().Exec(b.Context(), `ANALYZE keys`); err != nil {
				b.Fatal(err)
			}
			digests := make([]keystore.Digest, 1024)
			for i := range digests {
				digests[i] = sha256.Sum256([]byte("bench-" + strconv.Itoa(i*7919%n)))
			}
			b.Run("hit", func(b *testing.B) {
				i := 0
				for b.Loop() {
					if _, err := s.LookupDigest(b.Context(), digests[i%len(digests)]); err != nil {
						b.Fatalf("LookupDigest: %v", err)
					}
					i++
				}
			})
			b.Run("hit-parallel", func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					i := 0
					for pb.Next() {
						if _, err := s.LookupDigest(b.Context(), digests[i%len(digests)]); err != nil {
							b.Errorf("LookupDigest: %v", err)
							return
						}
						i++
					}
				})
			})
			b.Run("miss", func(b *testing.B) {
				d := sha256.Sum256([]byte("no such key"))
				for b.Loop() {
					if _, err := s.LookupDigest(b.Context(), d); !errors.Is(err, keystore.ErrNotFound) {
						b.Fatalf("LookupDigest: got %v, want ErrNotFound", err)
					}
				}
			})
		})
	}
}

// BenchmarkColdKey: the first request of a key not in the cache against a
// cached one (storetest.BenchmarkColdKey).
func BenchmarkColdKey(b *testing.B) {
	storetest.BenchmarkColdKey(b, newStore(b, postgres.Options{MaxConns: 8}))
}
