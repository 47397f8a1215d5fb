package keystore

import (
	"context"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestPrincipalSharesProfiles: keys of one user with the same rights,
// limits and policy share one profile; any difference gives its own, and
// the principal answers with each key's own values.
func TestPrincipalSharesProfiles(t *testing.T) {
	t.Parallel()
	store := &lookupStore{keys: map[Digest]*Key{}}
	a, err := NewAuthenticator(store, AuthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	base := Key{User: "MXINTADM", Rights: []string{"workorders:write", "assets:read"}, Rate: &Rate{Limit: 10, Per: time.Minute},
		AllowedIPs: []string{"10.0.0.0/8"}, Environments: []string{"prod"}}
	variants := map[string]func(k *Key){
		"same":           func(k *Key) {},
		"rights reorder": func(k *Key) { k.Rights = []string{"assets:read", "workorders:write"} },
		"other user":     func(k *Key) { k.User = "MAXADMIN" },
		"other rights":   func(k *Key) { k.Rights = []string{"assets:read"} },
		"other rate":     func(k *Key) { k.Rate = &Rate{Limit: 11, Per: time.Minute} },
		"a quota":        func(k *Key) { k.Quota = &Quota{Limit: 5, Period: PeriodDay} },
		"other ips":      func(k *Key) { k.AllowedIPs = []string{"192.0.2.0/24"} },
		"other env":      func(k *Key) { k.Environments = []string{"test"} },
	}
	principals := map[string]*Principal{}
	for name, mod := range variants {
		secret, _ := GenerateKey("kg")
		k := base
		k.ID, k.Name, k.Digest = "key_"+name, "name "+name, DigestOf(secret)
		mod(&k)
		store.set(k.Digest, &k)
		p, err := a.Authenticate(t.Context(), secret)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p.ID() != k.ID || p.Name() != k.Name || p.User() != k.User || p.UserUsageID() != UserUsageID(k.User) {
			t.Fatalf("%s: principal says %q %q %q %q", name, p.ID(), p.Name(), p.User(), p.UserUsageID())
		}
		if p.IDValue() != any(k.ID) || p.NameValue() != any(k.Name) || p.UserValue() != any(k.User) {
			t.Fatalf("%s: boxed values differ from the key's", name)
		}
		if p.profile.rate.Limit != k.Rate.Limit || (k.Quota == nil) != (p.profile.quota == nil) {
			t.Fatalf("%s: limits %+v %+v", name, p.profile.rate, p.profile.quota)
		}
		if !p.AcceptedIn(k.Environments[0]) || p.AcceptedIn("") || !p.AllowsClient(addrOf(k.AllowedIPs[0])) {
			t.Fatalf("%s: policy of the key not applied", name)
		}
		principals[name] = p
	}
	same := principals["same"].profile
	if principals["rights reorder"].profile != same {
		t.Error("the same rights in another order got a profile of their own")
	}
	for name, p := range principals {
		if name != "same" && name != "rights reorder" && p.profile == same {
			t.Errorf("%s shares the profile of a different key", name)
		}
	}
	if got, rights := a.profiles.len(); got != len(variants)-1 || rights != 2 {
		t.Errorf("%d profiles and %d sets of rights interned, want %d and 2", got, rights, len(variants)-1)
	}
	if principals["other user"].profile.rights != same.rights || principals["other rights"].profile.rights == same.rights {
		t.Error("keys with the same rights do not share their parsed rights, or keys with others do")
	}
	if l := principals["other rights"].Rights().Level("workorders"); l != LevelNone {
		t.Errorf("a key with assets:read only has workorders level %v", l)
	}
}

func addrOf(prefix string) string { a, _, _ := strings.Cut(prefix, "/"); return a }

// TestProfilesCollected: a profile no principal uses any more leaves the
// table, so a cache that turned over does not keep every profile it saw.
func TestProfilesCollected(t *testing.T) {
	var tbl profiles
	for i := range 100 {
		k := &Key{User: "U", Rights: []string{"assets:read"}, Quota: &Quota{Limit: int64(i + 1), Period: PeriodDay}}
		tbl.of(k, UserLimits{})
	}
	if n, r := tbl.len(); n == 0 || n > 100 || r != 1 {
		t.Fatalf("%d profiles and %d sets of rights after interning 100 distinct profiles with one set of rights", n, r)
	}
	// Cleanups run after a collection, on their own goroutine: collect
	// until they have, within a bound.
	empty := func() bool { n, r := tbl.len(); return n == 0 && r == 0 }
	for i := 0; i < 1000 && !empty(); i++ {
		runtime.GC()
		runtime.Gosched()
	}
	if n, r := tbl.len(); n != 0 || r != 0 {
		t.Fatalf("%d unused profiles and %d unused sets of rights still in the table", n, r)
	}
}

// TestPrincipalValidity: expiry, revocation and the rotation grace, by the
// digest the key was looked up with, including instants outside the range
// of Unix nanoseconds.
func TestPrincipalValidity(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	year := func(y int) *time.Time { t := time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC); return &t }
	cur, prev, other := DigestOf("kg_current"), DigestOf("kg_previous"), DigestOf("kg_other")
	var tbl profiles
	tests := []struct {
		name  string
		by    Digest
		key   Key
		valid map[time.Duration]bool // offsets from now → accepted
	}{
		{"no expiry", cur, Key{}, map[time.Duration]bool{0: true, 1000 * time.Hour: true}},
		{"expires in an hour", cur, Key{ExpiresAt: at(time.Hour)}, map[time.Duration]bool{0: true, time.Hour - 1: true, time.Hour: false}},
		{"expires in 9999", cur, Key{ExpiresAt: year(9999)}, map[time.Duration]bool{0: true}},
		{"expired in 1000", cur, Key{ExpiresAt: year(1000)}, map[time.Duration]bool{0: false}},
		{"revoked at noon", cur, Key{RevokedAt: at(0)}, map[time.Duration]bool{-1: true, 0: false}},
		{"revoked before expiry", cur, Key{RevokedAt: at(time.Minute), ExpiresAt: at(time.Hour)}, map[time.Duration]bool{time.Minute - 1: true, time.Minute: false}},
		{"previous digest in grace", prev, Key{PrevDigest: prev, GraceUntil: at(time.Minute)}, map[time.Duration]bool{0: true, time.Minute: false}},
		{"previous digest, grace past expiry", prev, Key{PrevDigest: prev, GraceUntil: at(time.Hour), ExpiresAt: at(time.Minute)}, map[time.Duration]bool{0: true, time.Minute: false}},
		{"current digest after the grace", cur, Key{PrevDigest: prev, GraceUntil: at(time.Minute)}, map[time.Duration]bool{time.Hour: true}},
		{"previous digest without grace", prev, Key{PrevDigest: prev}, map[time.Duration]bool{0: false}},
		{"a digest the key does not have", other, Key{PrevDigest: prev, GraceUntil: at(time.Hour)}, map[time.Duration]bool{0: false}},
	}
	for _, tt := range tests {
		k := tt.key
		k.ID, k.User, k.Rights, k.Digest = "key_1", "U", []string{"assets:read"}, cur
		p := newPrincipal(&tt.by, &k, UserLimits{}, &tbl, now)
		if !p.matches(&tt.by) {
			t.Errorf("%s: the entry does not match the digest it was looked up by", tt.name)
		}
		for off, want := range tt.valid {
			if got := p.accepts(now.Add(off)); got != want {
				t.Errorf("%s at now%+v: accepted %v, want %v", tt.name, off, got, want)
			}
		}
	}
	if p := newPrincipal(&cur, nil, UserLimits{}, &tbl, now); p.accepts(now) || !p.matches(&cur) {
		t.Error("a negative entry accepts or does not match its digest")
	}
}

// TestAuthenticatorGraceDigestCached: the previous digest of a rotated key
// in its grace period is served from the cache like the current one.
func TestAuthenticatorGraceDigestCached(t *testing.T) {
	t.Parallel()
	a, store, clock, key := newAuthFixture(t)
	old, _ := GenerateKey("kg")
	grace := clock.Now().Add(time.Hour)
	k := &Key{ID: "key_1", User: "MXINTADM", Rights: []string{"assets:read"}, Digest: DigestOf(key), PrevDigest: DigestOf(old), GraceUntil: &grace}
	store.set(DigestOf(key), k)
	store.set(DigestOf(old), k)
	ctx := context.Background()
	for range 3 {
		if p, err := a.Authenticate(ctx, old); err != nil || p.ID() != "key_1" {
			t.Fatalf("previous key in grace: %v", err)
		}
	}
	if n := store.lookups.Load(); n != 1 {
		t.Fatalf("%d store lookups for one key used three times, want 1", n)
	}
}

// pairedStore reads a key and its user's limits together, and counts which
// way it was asked.
type pairedStore struct {
	*lookupStore
	limits        UserLimits
	apart, paired atomic.Int64
}

func (s *pairedStore) UserLimits(context.Context, string) (UserLimits, error) {
	s.apart.Add(1)
	return s.limits, nil
}

func (s *pairedStore) LookupDigestWithUserLimits(ctx context.Context, d Digest) (*Key, UserLimits, error) {
	s.paired.Add(1)
	k, err := s.lookupStore.LookupDigest(ctx, d)
	return k, s.limits, err
}

// TestAuthenticatorReadsKeyAndLimitsTogether: with a store that can, a
// cold key costs one store call, and its user's limits come with it; an
// Authenticator given another UserLimitsReader keeps asking that one.
func TestAuthenticatorReadsKeyAndLimitsTogether(t *testing.T) {
	t.Parallel()
	for _, sameReader := range []bool{true, false} {
		store := &pairedStore{lookupStore: &lookupStore{keys: map[Digest]*Key{}}, limits: UserLimits{Quota: &Quota{Limit: 9, Period: PeriodDay}}}
		secret, _ := GenerateKey("kg")
		store.set(DigestOf(secret), &Key{ID: "key_1", User: "U", Rights: []string{"assets:read"}, Digest: DigestOf(secret)})
		var users UserLimitsReader = store
		if !sameReader {
			users = &pairedStore{lookupStore: store.lookupStore, limits: store.limits}
		}
		a, err := NewAuthenticator(store, AuthOptions{Users: users})
		if err != nil {
			t.Fatal(err)
		}
		p, err := a.Authenticate(t.Context(), secret)
		a.Close()
		if err != nil || p.UserLimits().Quota == nil || p.UserLimits().Quota.Limit != 9 {
			t.Fatalf("same reader %v: got %v, %v; want the user's quota", sameReader, p, err)
		}
		if sameReader && (store.paired.Load() != 1 || store.apart.Load() != 0) {
			t.Errorf("one store: %d paired and %d separate limit reads, want 1 and 0", store.paired.Load(), store.apart.Load())
		}
		if !sameReader && (store.paired.Load() != 0 || users.(*pairedStore).apart.Load() != 1) {
			t.Errorf("separate reader: %d paired reads on the key store, %d limit reads on the reader; want 0 and 1", store.paired.Load(), users.(*pairedStore).apart.Load())
		}
	}
}
