package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

func testCreateGetRoundTrip(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	cet := time.FixedZone("CET", 3600)
	tests := []struct {
		name string
		key  func(t *testing.T) *keystore.Key
	}{
		{"minimal", func(t *testing.T) *keystore.Key {
			return newKey(t, "MXINTADM", "minimal", base)
		}},
		{"every field", func(t *testing.T) *keystore.Key {
			k := newKey(t, "MXINTADM", "mx-integration", at(-48*time.Hour))
			k.Description = "Maximo integration, \"quoted\" & ünïcode"
			k.Rights = []string{"assets:read", "workorders:write", "keys:self"}
			k.CreatedBy = "key_root0000000000000000"
			k.ExpiresAt = ptr(at(720*time.Hour + 987*time.Microsecond))
			k.RevokedAt = ptr(at(1000 * time.Hour))
			k.LastUsedAt = ptr(at(-time.Hour + 42*time.Microsecond))
			k.Rate = &keystore.Rate{Limit: 100, Per: time.Minute}
			k.Quota = &keystore.Quota{Limit: 10000, Period: "month"}
			k.PrevDigest = newDigest(t)
			k.GraceUntil = ptr(at(24 * time.Hour))
			k.AllowedIPs = []string{"192.0.2.0/24", "198.51.100.7/32", "2001:db8::/48"}
			k.Environments = []string{"prod", "test"}
			return k
		}},
		{"imported", func(t *testing.T) *keystore.Key {
			k := newKey(t, "EXTSYS", "imported", base)
			k.Imported = true
			k.Start = "Abc!"
			k.Rate = &keystore.Rate{Limit: 5, Per: 1500 * time.Millisecond}
			k.Quota = &keystore.Quota{Limit: 1, Period: "day"}
			return k
		}},
		{"no rights and zero limits", func(t *testing.T) *keystore.Key {
			k := newKey(t, "u", "zero", base)
			k.Rights = nil
			k.Rate = &keystore.Rate{}
			k.Quota = &keystore.Quota{}
			return k
		}},
		{"times in another zone", func(t *testing.T) *keystore.Key {
			k := newKey(t, "u", "cet", base.In(cet))
			k.ExpiresAt = ptr(at(time.Hour).In(cet))
			return k
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			want := tt.key(t)
			mustCreate(t, s, want.Clone())

			wantKey(t, "GetKey", mustGet(t, s, want.ID), want)
			wantKey(t, "LookupDigest(Digest)", wantLookup(t, s, want.Digest, want.ID), want)
			if !want.PrevDigest.IsZero() {
				wantKey(t, "LookupDigest(PrevDigest)", wantLookup(t, s, want.PrevDigest, want.ID), want)
			}
			keys, _, err := s.ListKeys(t.Context(), keystore.ListFilter{})
			if err != nil {
				t.Fatalf("ListKeys: %v", err)
			}
			if len(keys) != 1 {
				t.Fatalf("ListKeys: got %d keys, want 1", len(keys))
			}
			wantKey(t, "ListKeys", keys[0], want)
		})
	}
}

func testCreateConflict(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	tests := []struct {
		name string
		// second builds the conflicting key from the first one.
		second func(t *testing.T, first *keystore.Key) *keystore.Key
	}{
		{"same id", func(t *testing.T, first *keystore.Key) *keystore.Key {
			k := newKey(t, "other", "other", at(time.Second))
			k.ID = first.ID
			return k
		}},
		{"same digest", func(t *testing.T, first *keystore.Key) *keystore.Key {
			k := newKey(t, "other", "other", at(time.Second))
			k.Digest = first.Digest
			return k
		}},
		{"digest is another key's previous digest in grace", func(t *testing.T, first *keystore.Key) *keystore.Key {
			k := newKey(t, "other", "other", at(time.Second))
			k.Digest = first.PrevDigest
			return k
		}},
		{"previous digest is another key's digest", func(t *testing.T, first *keystore.Key) *keystore.Key {
			k := newKey(t, "other", "other", at(time.Second))
			k.PrevDigest = first.Digest
			k.GraceUntil = ptr(at(time.Hour))
			return k
		}},
		{"previous digests equal", func(t *testing.T, first *keystore.Key) *keystore.Key {
			k := newKey(t, "other", "other", at(time.Second))
			k.PrevDigest = first.PrevDigest
			k.GraceUntil = ptr(at(time.Hour))
			return k
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			first := newKey(t, "MXINTADM", "first", base)
			first.PrevDigest = newDigest(t)
			first.GraceUntil = ptr(at(24 * time.Hour))
			mustCreate(t, s, first.Clone())
			second := tt.second(t, first)

			err := s.CreateKey(t.Context(), second.Clone(), keystore.CreateLimits{}, base)
			if !errors.Is(err, keystore.ErrConflict) {
				t.Fatalf("CreateKey: got error %v, want ErrConflict", err)
			}
			wantKey(t, "first key after conflict", mustGet(t, s, first.ID), first)
			wantLookup(t, s, first.Digest, first.ID)
			wantLookup(t, s, first.PrevDigest, first.ID)
			if second.ID != first.ID {
				if _, err := s.GetKey(t.Context(), second.ID); !errors.Is(err, keystore.ErrNotFound) {
					t.Errorf("GetKey(rejected key): got error %v, want ErrNotFound", err)
				}
			}
			if second.Digest != first.Digest && second.Digest != first.PrevDigest {
				if _, err := s.LookupDigest(t.Context(), second.Digest); !errors.Is(err, keystore.ErrNotFound) {
					t.Errorf("LookupDigest(rejected key's digest): got error %v, want ErrNotFound", err)
				}
			}
			if n, err := s.CountActive(t.Context(), base); err != nil || n != 1 {
				t.Errorf("CountActive: got %d, %v, want 1, nil", n, err)
			}
		})
	}
}

func testNotFound(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	mustCreate(t, s, newKey(t, "u", "present", base))
	missing := "key_doesnotexist000000"
	tests := []struct {
		name string
		call func(t *testing.T) error
	}{
		{"GetKey", func(t *testing.T) error {
			_, err := s.GetKey(t.Context(), missing)
			return err
		}},
		{"LookupDigest", func(t *testing.T) error {
			_, err := s.LookupDigest(t.Context(), newDigest(t))
			return err
		}},
		{"LookupDigest zero", func(t *testing.T) error {
			_, err := s.LookupDigest(t.Context(), keystore.Digest{})
			return err
		}},
		{"UpdateKey", func(t *testing.T) error {
			_, err := s.UpdateKey(t.Context(), missing, func(k *keystore.Key) error {
				t.Errorf("UpdateKey called fn for a missing key")
				return nil
			})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.call(t); !errors.Is(err, keystore.ErrNotFound) {
				t.Errorf("got error %v, want ErrNotFound", err)
			}
		})
	}
}

// testStoreKeepsCopies checks that a store never shares memory with its
// callers: changing a key passed in or handed out changes nothing stored.
func testStoreKeepsCopies(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	want := newKey(t, "u", "copies", base)
	want.Rights = []string{"assets:read", "workorders:read"}
	want.Rate = &keystore.Rate{Limit: 10, Per: time.Second}
	want.ExpiresAt = ptr(at(time.Hour))

	in := want.Clone()
	mustCreate(t, s, in)
	scribble := func(k *keystore.Key) {
		k.Name = "scribbled"
		k.Rights[0] = "scribbled:write"
		k.Rate.Limit = 999
		*k.ExpiresAt = at(-time.Hour)
	}
	scribble(in)
	wantKey(t, "after changing the created key", mustGet(t, s, want.ID), want)

	scribble(mustGet(t, s, want.ID))
	wantKey(t, "after changing a fetched key", mustGet(t, s, want.ID), want)

	scribble(wantLookup(t, s, want.Digest, want.ID))
	wantKey(t, "after changing a looked-up key", mustGet(t, s, want.ID), want)

	want.Description = "updated"
	got, err := s.UpdateKey(t.Context(), want.ID, func(k *keystore.Key) error {
		k.Description = "updated"
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateKey: %v", err)
	}
	scribble(got)
	wantKey(t, "after changing an updated key", mustGet(t, s, want.ID), want)
}

func testRotateWithGrace(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	k := newKey(t, "u", "rotating", base)
	d1 := k.Digest
	mustCreate(t, s, k.Clone())
	other := newKey(t, "u", "bystander", at(time.Second))
	mustCreate(t, s, other.Clone())

	// First rotation, with a 24h grace.
	d2 := newDigest(t)
	grace := at(25 * time.Hour)
	want := k.Clone()
	want.Digest, want.PrevDigest, want.GraceUntil, want.Start = d2, d1, ptr(grace), "kg_NEW1"
	got, err := s.UpdateKey(t.Context(), k.ID, func(k *keystore.Key) error {
		if k.Digest != d1 {
			t.Errorf("fn got Digest %.8s…, want %.8s…", k.Digest.Hex(), d1.Hex())
		}
		k.PrevDigest, k.Digest = k.Digest, d2
		k.GraceUntil = ptr(grace)
		k.Start = "kg_NEW1"
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateKey(rotate): %v", err)
	}
	wantKey(t, "UpdateKey result", got, want)
	wantKey(t, "GetKey", mustGet(t, s, k.ID), want)
	byNew := wantLookup(t, s, d2, k.ID)
	byOld := wantLookup(t, s, d1, k.ID)
	wantKey(t, "LookupDigest(new)", byNew, want)
	wantKey(t, "LookupDigest(old)", byOld, want)

	accepts := []struct {
		name string
		d    keystore.Digest
		now  time.Time
		want bool
	}{
		{"new digest during grace", d2, at(time.Hour), true},
		{"old digest during grace", d1, at(time.Hour), true},
		{"old digest just before grace ends", d1, grace.Add(-time.Microsecond), true},
		{"old digest when grace ends", d1, grace, false},
		{"old digest after grace", d1, grace.Add(time.Hour), false},
		{"new digest after grace", d2, grace.Add(time.Hour), true},
		{"unrelated digest", other.Digest, at(time.Hour), false},
	}
	for _, a := range accepts {
		if got := byOld.Accepts(a.d, a.now); got != a.want {
			t.Errorf("Accepts(%s): got %v, want %v", a.name, got, a.want)
		}
	}

	// Second rotation with a grace: d1 is nobody's digest any more.
	d3 := newDigest(t)
	grace2 := at(50 * time.Hour)
	if _, err := s.UpdateKey(t.Context(), k.ID, func(k *keystore.Key) error {
		k.PrevDigest, k.Digest, k.GraceUntil = k.Digest, d3, ptr(grace2)
		return nil
	}); err != nil {
		t.Fatalf("UpdateKey(second rotation): %v", err)
	}
	if _, err := s.LookupDigest(t.Context(), d1); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("LookupDigest(first digest) after second rotation: got error %v, want ErrNotFound", err)
	}
	wantLookup(t, s, d2, k.ID)
	wantLookup(t, s, d3, k.ID)

	// Third rotation without grace: only the newest digest is left.
	d4 := newDigest(t)
	if _, err := s.UpdateKey(t.Context(), k.ID, func(k *keystore.Key) error {
		k.Digest, k.PrevDigest, k.GraceUntil = d4, keystore.Digest{}, nil
		return nil
	}); err != nil {
		t.Fatalf("UpdateKey(rotation without grace): %v", err)
	}
	for _, d := range []keystore.Digest{d2, d3} {
		if _, err := s.LookupDigest(t.Context(), d); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("LookupDigest(%.8s…) after rotation without grace: got error %v, want ErrNotFound", d.Hex(), err)
		}
	}
	final := wantLookup(t, s, d4, k.ID)
	if !final.PrevDigest.IsZero() || final.GraceUntil != nil {
		t.Errorf("after rotation without grace: got PrevDigest %.8s…, GraceUntil %s, want zero, nil",
			final.PrevDigest.Hex(), fmtTimePtr(final.GraceUntil))
	}
	wantLookup(t, s, other.Digest, other.ID)

	// A digest no key holds any more is free for a new key.
	reuse := newKey(t, "u", "reuse", at(2*time.Second))
	reuse.Digest = d1
	mustCreate(t, s, reuse)
	wantLookup(t, s, d1, reuse.ID)
}

func testUpdateKeyFields(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	tests := []struct {
		name   string
		before func(k *keystore.Key)
		change func(k *keystore.Key)
	}{
		{"name and description", nil, func(k *keystore.Key) {
			k.Name, k.Description = "renamed", "now described"
		}},
		{"rights", nil, func(k *keystore.Key) {
			k.Rights = []string{"workorders:write", "assets:read"}
		}},
		{"set limits", nil, func(k *keystore.Key) {
			k.Rate = &keystore.Rate{Limit: 7, Per: 90 * time.Second}
			k.Quota = &keystore.Quota{Limit: 500, Period: "day"}
		}},
		{"clear limits", func(k *keystore.Key) {
			k.Rate = &keystore.Rate{Limit: 7, Per: time.Second}
			k.Quota = &keystore.Quota{Limit: 500, Period: "month"}
		}, func(k *keystore.Key) {
			k.Rate, k.Quota = nil, nil
		}},
		{"set times", nil, func(k *keystore.Key) {
			k.ExpiresAt = ptr(at(72*time.Hour + 5*time.Microsecond))
			k.LastUsedAt = ptr(at(time.Minute))
		}},
		{"clear times", func(k *keystore.Key) {
			k.ExpiresAt = ptr(at(time.Hour))
			k.RevokedAt = ptr(at(2 * time.Hour))
			k.LastUsedAt = ptr(at(-time.Hour))
		}, func(k *keystore.Key) {
			k.ExpiresAt, k.RevokedAt, k.LastUsedAt = nil, nil, nil
		}},
		{"set policy", nil, func(k *keystore.Key) {
			k.AllowedIPs = []string{"10.0.0.0/8", "2001:db8::1/128"}
			k.Environments = []string{"dev"}
		}},
		{"clear policy", func(k *keystore.Key) {
			k.AllowedIPs = []string{"10.0.0.0/8"}
			k.Environments = []string{"dev", "prod"}
		}, func(k *keystore.Key) {
			k.AllowedIPs, k.Environments = nil, nil
		}},
		{"user, start and creator", nil, func(k *keystore.Key) {
			k.User, k.Start, k.CreatedBy, k.Imported = "NEWUSER", "kg_zzzz", "key_admin", true
		}},
		{"nothing", nil, func(k *keystore.Key) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			k := newKey(t, "MXINTADM", "orig", base)
			if tt.before != nil {
				tt.before(k)
			}
			mustCreate(t, s, k.Clone())
			want := k.Clone()
			tt.change(want)

			got, err := s.UpdateKey(t.Context(), k.ID, func(cur *keystore.Key) error {
				for _, d := range keyDiff(cur, k) {
					t.Errorf("fn got the stored key with %s", d)
				}
				tt.change(cur)
				return nil
			})
			if err != nil {
				t.Fatalf("UpdateKey: %v", err)
			}
			wantKey(t, "UpdateKey result", got, want)
			wantKey(t, "GetKey", mustGet(t, s, k.ID), want)
			wantKey(t, "LookupDigest", wantLookup(t, s, k.Digest, k.ID), want)
		})
	}
}

func testUpdateKeyDigestConflict(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	tests := []struct {
		name   string
		change func(k, other *keystore.Key)
	}{
		{"digest is another key's digest", func(k, other *keystore.Key) {
			k.PrevDigest, k.Digest = k.Digest, other.Digest
		}},
		{"digest is another key's previous digest", func(k, other *keystore.Key) {
			k.PrevDigest, k.Digest = k.Digest, other.PrevDigest
		}},
		{"previous digest is another key's digest", func(k, other *keystore.Key) {
			k.PrevDigest = other.Digest
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			k := newKey(t, "u", "k", base)
			other := newKey(t, "u", "other", at(time.Second))
			other.PrevDigest = newDigest(t)
			other.GraceUntil = ptr(at(time.Hour))
			mustCreate(t, s, k.Clone())
			mustCreate(t, s, other.Clone())

			_, err := s.UpdateKey(t.Context(), k.ID, func(cur *keystore.Key) error {
				tt.change(cur, other)
				cur.GraceUntil = ptr(at(time.Hour))
				cur.Name = "changed"
				return nil
			})
			if !errors.Is(err, keystore.ErrConflict) {
				t.Fatalf("UpdateKey: got error %v, want ErrConflict", err)
			}
			wantKey(t, "GetKey(updated)", mustGet(t, s, k.ID), k)
			wantKey(t, "GetKey(other)", mustGet(t, s, other.ID), other)
			wantLookup(t, s, k.Digest, k.ID)
			wantLookup(t, s, other.Digest, other.ID)
			wantLookup(t, s, other.PrevDigest, other.ID)
		})
	}
}

func testUpdateKeyFnError(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	k := newKey(t, "u", "k", base)
	mustCreate(t, s, k.Clone())
	errRefused := errors.New("refused by fn")
	d := newDigest(t)

	got, err := s.UpdateKey(t.Context(), k.ID, func(cur *keystore.Key) error {
		cur.Name = "changed"
		cur.PrevDigest, cur.Digest = cur.Digest, d
		cur.RevokedAt = ptr(base)
		return fmt.Errorf("validating: %w", errRefused)
	})
	if !errors.Is(err, errRefused) {
		t.Fatalf("UpdateKey: got error %v, want %v", err, errRefused)
	}
	if got != nil {
		t.Errorf("UpdateKey: got key %v with an error, want nil", got.ID)
	}
	wantKey(t, "GetKey", mustGet(t, s, k.ID), k)
	wantLookup(t, s, k.Digest, k.ID)
	if _, err := s.LookupDigest(t.Context(), d); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("LookupDigest(digest set by failed fn): got error %v, want ErrNotFound", err)
	}
}

// testUpdateKeyConcurrent checks that UpdateKey is a read-modify-write
// without lost updates.
func testUpdateKeyConcurrent(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	k := newKey(t, "u", "k", base)
	k.Rights = nil
	mustCreate(t, s, k.Clone())
	const n = 10
	var want []string
	var wg sync.WaitGroup
	for i := range n {
		right := fmt.Sprintf("area%02d:read", i)
		want = append(want, right)
		wg.Go(func() {
			_, err := s.UpdateKey(t.Context(), k.ID, func(cur *keystore.Key) error {
				cur.Rights = append(cur.Rights, right)
				return nil
			})
			if err != nil {
				t.Errorf("UpdateKey(add %s): %v", right, err)
			}
		})
	}
	wg.Wait()
	got := mustGet(t, s, k.ID).Rights
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("Rights after %d concurrent updates: got %v, want %v", n, got, want)
	}
}

func testRevokedKeyStays(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	k := newKey(t, "u", "k", base)
	mustCreate(t, s, k.Clone())
	revokedAt := at(time.Hour)
	want := k.Clone()
	want.RevokedAt = ptr(revokedAt)
	if _, err := s.UpdateKey(t.Context(), k.ID, func(cur *keystore.Key) error {
		cur.RevokedAt = ptr(revokedAt)
		return nil
	}); err != nil {
		t.Fatalf("UpdateKey(revoke): %v", err)
	}

	got := mustGet(t, s, k.ID)
	wantKey(t, "GetKey", got, want)
	if st := got.Status(revokedAt); st != keystore.StatusRevoked {
		t.Errorf("Status: got %v, want %v", st, keystore.StatusRevoked)
	}
	looked := wantLookup(t, s, k.Digest, k.ID)
	if looked.Accepts(k.Digest, revokedAt) {
		t.Errorf("Accepts after revocation: got true, want false")
	}
	for _, f := range []keystore.ListFilter{
		{},
		{Status: keystore.StatusRevoked, Now: revokedAt},
		{User: "u"},
	} {
		keys, _, err := s.ListKeys(t.Context(), f)
		if err != nil {
			t.Fatalf("ListKeys(%+v): %v", f, err)
		}
		if !slices.Equal(ids(keys), []string{k.ID}) {
			t.Errorf("ListKeys(%+v): got %v, want [%s]", f, ids(keys), k.ID)
		}
	}
}
