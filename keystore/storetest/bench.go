package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// BenchmarkColdKey measures what a key costs the first time it is seen
// (not in the cache) against a cached one, over store s: "cached" is a hit,
// "cold" the Authenticator's miss path (its flight, lookup slot, the
// store's key and user-limits reads, building the entry, caching it), and
// "store" the store's two reads alone, so cold − store is the
// Authenticator's own share. Each store package runs it on its own store.
func BenchmarkColdKey(b *testing.B, s keystore.Store) {
	const n = 4096
	ctx := b.Context()
	now := time.Now().UTC().Truncate(time.Second)
	secrets := make([]string, n)
	for i := range secrets {
		secret, err := keystore.GenerateKey("kg")
		if err != nil {
			b.Fatal(err)
		}
		secrets[i] = secret
		k := &keystore.Key{ID: fmt.Sprintf("key_cold%016d", i), Name: "mx-integration", User: fmt.Sprintf("MXINT%02d", i%20),
			Rights: []string{"assets:read", "workorders:write"}, Start: secret[:7], Digest: keystore.DigestOf(secret),
			CreatedAt: now, CreatedBy: "local", Rate: &keystore.Rate{Limit: 100, Per: time.Minute}}
		if err := s.CreateKey(ctx, k, keystore.CreateLimits{}, now); err != nil {
			b.Fatal(err)
		}
	}
	newAuth := func(b *testing.B) *keystore.Authenticator {
		a, err := keystore.NewAuthenticator(s, keystore.AuthOptions{CacheSize: 2 * n, Users: s})
		if err != nil {
			b.Fatal(err)
		}
		return a
	}
	b.Run("cached", func(b *testing.B) {
		a := newAuth(b)
		defer a.Close()
		if _, err := a.Authenticate(ctx, secrets[0]); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := a.Authenticate(ctx, secrets[0]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cold", func(b *testing.B) {
		// A fresh Authenticator for every n keys, outside the timer, so
		// every timed Authenticate is a key the cache has not seen.
		var a *keystore.Authenticator
		i := 0
		for b.Loop() {
			if i%n == 0 {
				b.StopTimer()
				if a != nil {
					a.Close()
				}
				a = newAuth(b)
				b.StartTimer()
			}
			if _, err := a.Authenticate(ctx, secrets[i%n]); err != nil {
				b.Fatal(err)
			}
			i++
		}
		a.Close()
	})
	b.Run("store", func(b *testing.B) {
		i := 0
		for b.Loop() {
			k, err := s.LookupDigest(ctx, keystore.DigestOf(secrets[i%n]))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.UserLimits(ctx, k.User); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
