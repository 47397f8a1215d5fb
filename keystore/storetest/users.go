package storetest

import (
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
