package keystore

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// BenchmarkCacheMemoryPerKey fills the key cache with 100,000 keys and
// reports the heap bytes each cached key costs (its Principal, boxed id and
// name, and ristretto's bookkeeping), for sizing `cache { size }`.
// "shared" is a realistic estate: 20 run-as users, 5 sets of rights, so
// keys share profiles; "distinct" gives every key a user of its own, the
// worst case. Run: go test ./keystore -run '^$' -bench CacheMemory
func BenchmarkCacheMemoryPerKey(b *testing.B) {
	rights := [][]string{{"assets:read"}, {"assets:read", "workorders:write"}, {"workorders:write"}, {"*:read"}, {"locations:read", "assets:read"}}
	for _, c := range []struct {
		name  string
		users int
	}{{"shared", 20}, {"distinct", 100_000}} {
		b.Run(c.name, func(b *testing.B) {
			const n = 100_000
			for range b.N {
				store := &lookupStore{keys: map[Digest]*Key{}}
				digests := make([]Digest, n)
				for i := range digests {
					key, _ := GenerateKey("kg")
					d := DigestOf(key)
					digests[i] = d
					exp := time.Now().Add(time.Hour)
					store.keys[d] = &Key{ID: fmt.Sprintf("key_%020d", i), Name: "mx-integration", User: fmt.Sprintf("MXINT%03d", i%c.users),
						Rights: rights[i%len(rights)], Start: key[:7], Digest: d, ExpiresAt: &exp,
						Rate: &Rate{Limit: 100, Per: time.Minute}}
				}
				a, err := NewAuthenticator(store, AuthOptions{CacheSize: n})
				if err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				ctx := context.Background()
				for i := range digests {
					if _, err := a.AuthenticateDigest(ctx, &digests[i]); err != nil {
						b.Fatal(err)
					}
				}
				a.Wait()
				runtime.GC()
				runtime.ReadMemStats(&after)
				// The store's copies are Clone()d per lookup and held by
				// nothing after it, so the difference is the cache's cost.
				cached := 0
				for i := range digests {
					if e, ok := a.cache.Get(cacheKey(&digests[i])); ok && e.profile != nil {
						cached++
					}
				}
				if cached < n*9/10 {
					b.Fatalf("only %d of %d keys cached", cached, n)
				}
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(cached), "bytes/cached-key")
				profiles, _ := a.profiles.len()
				b.ReportMetric(float64(profiles), "profiles")
				a.Close()
			}
		})
	}
}
