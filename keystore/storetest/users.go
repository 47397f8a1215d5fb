package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// testUserLimits checks the round trip of per-user limits: none at first,
// set, replace, users kept apart (case-sensitive), delete (twice).
func testUserLimits(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	ctx := t.Context()
	want := func(user string, w keystore.UserLimits) {
		t.Helper()
		got, err := s.UserLimits(ctx, user)
		if err != nil {
			t.Fatalf("UserLimits(%s): %v", user, err)
		}
		if !eqPtr(got.Rate, w.Rate) || !eqPtr(got.Quota, w.Quota) {
			t.Fatalf("UserLimits(%s): got rate %s quota %s, want rate %s quota %s", user, fmtPtr(got.Rate), fmtPtr(got.Quota), fmtPtr(w.Rate), fmtPtr(w.Quota))
		}
	}
	want("ALICE", keystore.UserLimits{})

	both := keystore.UserLimits{Rate: &keystore.Rate{Limit: 50, Per: 1500 * time.Millisecond}, Quota: &keystore.Quota{Limit: 10000, Period: "month"}}
	if err := s.SetUserLimits(ctx, "ALICE", both); err != nil {
		t.Fatalf("SetUserLimits: %v", err)
	}
	want("ALICE", both)
	want("alice", keystore.UserLimits{})
	want("BOB", keystore.UserLimits{})

	quotaOnly := keystore.UserLimits{Quota: &keystore.Quota{Limit: 7, Period: "day"}}
	if err := s.SetUserLimits(ctx, "ALICE", quotaOnly); err != nil {
		t.Fatalf("SetUserLimits (replace): %v", err)
	}
	want("ALICE", quotaOnly)
	rateOnly := keystore.UserLimits{Rate: &keystore.Rate{Limit: 1, Per: time.Hour}}
	if err := s.SetUserLimits(ctx, "BOB", rateOnly); err != nil {
		t.Fatalf("SetUserLimits(BOB): %v", err)
	}
	want("BOB", rateOnly)
	want("ALICE", quotaOnly)

	if err := s.SetUserLimits(ctx, "CAROL", keystore.UserLimits{}); err == nil {
		t.Error("SetUserLimits with zero limits: got nil error, want one (use DeleteUserLimits)")
	}
	want("CAROL", keystore.UserLimits{})

	for range 2 {
		if err := s.DeleteUserLimits(ctx, "ALICE"); err != nil {
			t.Fatalf("DeleteUserLimits: %v", err)
		}
		want("ALICE", keystore.UserLimits{})
	}
	want("BOB", rateOnly)
}

// testLookupWithUserLimits checks, on stores that read a key and its
// user's limits together, that the pair is what LookupDigest and
// UserLimits give apart: with and without limits, by the previous digest
// of a rotated key, and ErrNotFound for an unknown digest.
func testLookupWithUserLimits(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	both, ok := s.(keystore.KeyWithUserLimitsLookup)
	if !ok {
		t.Skip("the store reads a key and its user's limits apart")
	}
	ctx := t.Context()
	limited := newKey(t, "ALICE", "limited", base)
	plain := newKey(t, "BOB", "plain", base)
	mustCreate(t, s, limited)
	mustCreate(t, s, plain)
	aliceLimits := keystore.UserLimits{Rate: &keystore.Rate{Limit: 50, Per: time.Minute}, Quota: &keystore.Quota{Limit: 9, Period: "day"}}
	if err := s.SetUserLimits(ctx, "ALICE", aliceLimits); err != nil {
		t.Fatal(err)
	}
	prev := limited.Digest
	rotated, err := s.UpdateKey(ctx, limited.ID, func(k *keystore.Key) error {
		grace := base.Add(time.Hour)
		k.PrevDigest, k.GraceUntil, k.Digest = k.Digest, &grace, newDigest(t)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		d    keystore.Digest
		id   string
		want keystore.UserLimits
	}{
		{"current digest, user with limits", rotated.Digest, limited.ID, aliceLimits},
		{"previous digest", prev, limited.ID, aliceLimits},
		{"user without limits", plain.Digest, plain.ID, keystore.UserLimits{}},
	} {
		k, ul, err := both.LookupDigestWithUserLimits(ctx, c.d)
		if err != nil || k.ID != c.id {
			t.Fatalf("%s: got %v, %v; want key %s", c.name, k, err, c.id)
		}
		apart, err := s.LookupDigest(ctx, c.d)
		if err != nil {
			t.Fatal(err)
		}
		wantKey(t, c.name, k, apart)
		if !eqPtr(ul.Rate, c.want.Rate) || !eqPtr(ul.Quota, c.want.Quota) {
			t.Fatalf("%s: limits rate %s quota %s, want rate %s quota %s", c.name, fmtPtr(ul.Rate), fmtPtr(ul.Quota), fmtPtr(c.want.Rate), fmtPtr(c.want.Quota))
		}
	}
	if _, _, err := both.LookupDigestWithUserLimits(ctx, newDigest(t)); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("unknown digest: got %v, want ErrNotFound", err)
	}
}
