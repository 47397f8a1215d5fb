package keystore

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// BenchmarkCacheMemoryPerKey fills the key cache with 50,000 keys and reports the heap bytes each cached key costs
// (Principal, Key, entry and ristretto's bookkeeping), for sizing
// `cache { size }`. Run: go test ./keystore -run '^$' -bench CacheMemory
func BenchmarkCacheMemoryPerKey(b *testing.B) {
	const n = 50_000
	for range b.N {
		store := &lookupStore{keys: map[Digest]*Key{}}
		digests := make([]Digest, n)
		for i := range digests {
			key, _ := GenerateKey("kg")
			d := DigestOf(key)
			digests[i] = d
			exp := time.Now().Add(time.Hour)
			store.keys[d] = &Key{ID: fmt.Sprintf("key_%020d", i), Name: "mx-integration", User: "MXINTADM",
				Rights: []string{"assets:read", "workorders:write"}, Start: key[:7], Digest: d, ExpiresAt: &exp,
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
		// The store's copies are Clone()d per lookup and now held only by
		// the cache, so the difference is the cache's cost.
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/cached-key")
		a.Close()
	}
}
