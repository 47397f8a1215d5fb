// Package storetest is the conformance suite every keystore.Store runs
// (one suite for every store, like river's driver tests). A store's own test calls Run with a constructor:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) keystore.Store {
//			s, err := bolt.Open(filepath.Join(t.TempDir(), "keys.db"), bolt.Options{})
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// newStore must return an empty store that shares no state with any other
// store it returns, and must arrange its own cleanup (t.Cleanup): the suite
// runs its subtests in parallel and never calls Close. Every subtest gets a
// fresh store; table rows that only read share their parent's store.
//
// When the semantics of Store change, extend this suite rather than one
// store's own tests.
//
// Contract details the suite pins down beyond the interface comments:
//
//   - times round-trip to the microsecond (Postgres precision) as the same
//     instant; the zone is not compared;
//   - a key's digest and previous digest are unique across all current and
//     previous digests of all keys;
//   - a digest that is no longer a key's current or previous digest is free
//     again: LookupDigest misses it and a new key may take it;
//   - ListKeys and ListAudit never return an empty page with a non-empty
//     cursor, and return "" as the cursor of the last page; an unparseable
//     cursor is an error;
//   - ListAudit orders by append order, Limit 0 meaning 100 as in ListKeys;
//   - LastUsedAt after AddUsage is within a minute of the newest LastUsed
//     seen and never moves backwards.
package storetest

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// Run runs the conformance suite against the stores newStore returns.
func Run(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, newStore func(t *testing.T) keystore.Store)
	}{
		// keys.go
		{"CreateGetRoundTrip", testCreateGetRoundTrip},
		{"CreateConflict", testCreateConflict},
		{"NotFound", testNotFound},
		{"StoreKeepsCopies", testStoreKeepsCopies},
		{"RotateWithGrace", testRotateWithGrace},
		{"UpdateKeyFields", testUpdateKeyFields},
		{"UpdateKeyDigestConflict", testUpdateKeyDigestConflict},
		{"UpdateKeyFnError", testUpdateKeyFnError},
		{"UpdateKeyConcurrent", testUpdateKeyConcurrent},
		{"RevokedKeyStays", testRevokedKeyStays},
		// list.go
		{"ListKeysPagination", testListKeysPagination},
		{"ListKeysDefaultLimit", testListKeysDefaultLimit},
		{"ListKeysStableCursor", testListKeysStableCursor},
		{"ListKeysFilters", testListKeysFilters},
		{"ListKeysEmpty", testListKeysEmpty},
		{"ListKeysBadCursor", testListKeysBadCursor},
		// license.go
		{"CountActive", testCountActive},
		{"CreateKeyLicense", testCreateKeyLicense},
		{"CreateKeyLicenseConcurrent", testCreateKeyLicenseConcurrent},
		{"CreateKeyPerUserCap", testCreateKeyPerUserCap},
		{"CreateKeyPerUserCapConcurrent", testCreateKeyPerUserCapConcurrent},
		{"RevokeUser", testRevokeUser},
		// users.go
		{"UserLimits", testUserLimits},
		{"LookupWithUserLimits", testLookupWithUserLimits},
		// audit.go
		{"AuditRoundTrip", testAuditRoundTrip},
		{"AuditFilterAndPagination", testAuditFilterAndPagination},
		{"AuditEmptyAndBadCursor", testAuditEmptyAndBadCursor},
		// usage.go
		{"UsageSums", testUsageSums},
		{"UsageIdempotent", testUsageIdempotent},
		{"UsageLastUsedAt", testUsageLastUsedAt},
		{"UsageConcurrent", testUsageConcurrent},
		{"UsageParts", testUsageParts},
		// outbox.go
		{"OutboxRoundTrip", testOutboxRoundTrip},
		{"OutboxClaimLease", testOutboxClaimLease},
		{"OutboxReschedule", testOutboxReschedule},
		{"OutboxDedupe", testOutboxDedupe},
		{"OutboxClaimConcurrent", testOutboxClaimConcurrent},
		{"OutboxPurge", testOutboxPurge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newStore)
		})
	}
}

// base is the suite's "now": a fixed instant with microseconds, in UTC.
var base = time.Date(2026, 11, 23, 10, 0, 0, 123456000, time.UTC)

func at(d time.Duration) time.Time { return base.Add(d) }

func ptr[T any](v T) *T { return &v }

// newDigest returns the digest of a fresh random key.
func newDigest(t *testing.T) keystore.Digest {
	t.Helper()
	secret, err := keystore.GenerateKey(keystore.DefaultPrefix)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	return keystore.DigestOf(secret)
}

// newKey returns an active key of user, created at created, with a fresh id
// and digest and every optional field unset.
func newKey(t *testing.T, user, name string, created time.Time) *keystore.Key {
	t.Helper()
	id, err := keystore.NewID()
	if err != nil {
		t.Fatalf("NewID: %v", err)
	}
	secret, err := keystore.GenerateKey(keystore.DefaultPrefix)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	return &keystore.Key{
		ID:        id,
		Name:      name,
		User:      user,
		Rights:    []string{"assets:read"},
		Start:     keystore.DisplayStart(secret),
		Digest:    keystore.DigestOf(secret),
		CreatedAt: created,
		CreatedBy: "local",
	}
}

// mustCreate creates k without a licence limit.
func mustCreate(t *testing.T, s keystore.Store, k *keystore.Key) {
	t.Helper()
	if err := s.CreateKey(t.Context(), k, keystore.CreateLimits{}, base); err != nil {
		t.Fatalf("CreateKey(%s): %v", k.ID, err)
	}
}

// createKeys creates n keys of user named name-0…, one second apart from
// start, and returns them in creation order.
func createKeys(t *testing.T, s keystore.Store, n int, user, name string, start time.Time) []*keystore.Key {
	t.Helper()
	keys := make([]*keystore.Key, n)
	for i := range keys {
		keys[i] = newKey(t, user, fmt.Sprintf("%s-%d", name, i), start.Add(time.Duration(i)*time.Second))
		mustCreate(t, s, keys[i])
	}
	return keys
}

func mustGet(t *testing.T, s keystore.Store, id string) *keystore.Key {
	t.Helper()
	k, err := s.GetKey(t.Context(), id)
	if err != nil {
		t.Fatalf("GetKey(%s): %v", id, err)
	}
	return k
}

// wantLookup checks that d finds the key with id.
func wantLookup(t *testing.T, s keystore.Store, d keystore.Digest, id string) *keystore.Key {
	t.Helper()
	k, err := s.LookupDigest(t.Context(), d)
	if err != nil {
		t.Fatalf("LookupDigest(%.8s…): got error %v, want key %s", d.Hex(), err, id)
	}
	if k.ID != id {
		t.Fatalf("LookupDigest(%.8s…): got key %s, want %s", d.Hex(), k.ID, id)
	}
	return k
}

// sameTime compares two instants at Postgres precision (microseconds).
func sameTime(a, b time.Time) bool {
	return a.Truncate(time.Microsecond).Equal(b.Truncate(time.Microsecond))
}

func sameTimePtr(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return sameTime(*a, *b)
}

func fmtTimePtr(p *time.Time) string {
	if p == nil {
		return "nil"
	}
	return p.UTC().Format(time.RFC3339Nano)
}

func fmtPtr[T any](p *T) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprintf("%+v", *p)
}

func eqPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// keyDiff lists the fields in which got differs from want.
func keyDiff(got, want *keystore.Key) []string {
	var d []string
	add := func(field string, g, w any) {
		d = append(d, fmt.Sprintf("%s: got %v, want %v", field, g, w))
	}
	if got.ID != want.ID {
		add("ID", got.ID, want.ID)
	}
	if got.Name != want.Name {
		add("Name", got.Name, want.Name)
	}
	if got.Description != want.Description {
		add("Description", got.Description, want.Description)
	}
	if got.User != want.User {
		add("User", got.User, want.User)
	}
	// nil and empty rights are the same list.
	if !slices.Equal(got.Rights, want.Rights) {
		add("Rights", got.Rights, want.Rights)
	}
	if got.Start != want.Start {
		add("Start", got.Start, want.Start)
	}
	if got.Digest != want.Digest {
		add("Digest", got.Digest.Hex(), want.Digest.Hex())
	}
	if got.Imported != want.Imported {
		add("Imported", got.Imported, want.Imported)
	}
	if !sameTime(got.CreatedAt, want.CreatedAt) {
		add("CreatedAt", got.CreatedAt.UTC().Format(time.RFC3339Nano), want.CreatedAt.UTC().Format(time.RFC3339Nano))
	}
	if got.CreatedBy != want.CreatedBy {
		add("CreatedBy", got.CreatedBy, want.CreatedBy)
	}
	if !sameTimePtr(got.ExpiresAt, want.ExpiresAt) {
		add("ExpiresAt", fmtTimePtr(got.ExpiresAt), fmtTimePtr(want.ExpiresAt))
	}
	if !sameTimePtr(got.RevokedAt, want.RevokedAt) {
		add("RevokedAt", fmtTimePtr(got.RevokedAt), fmtTimePtr(want.RevokedAt))
	}
	if !sameTimePtr(got.LastUsedAt, want.LastUsedAt) {
		add("LastUsedAt", fmtTimePtr(got.LastUsedAt), fmtTimePtr(want.LastUsedAt))
	}
	if !eqPtr(got.Rate, want.Rate) {
		add("Rate", fmtPtr(got.Rate), fmtPtr(want.Rate))
	}
	if !eqPtr(got.Quota, want.Quota) {
		add("Quota", fmtPtr(got.Quota), fmtPtr(want.Quota))
	}
	if got.PrevDigest != want.PrevDigest {
		add("PrevDigest", got.PrevDigest.Hex(), want.PrevDigest.Hex())
	}
	if !sameTimePtr(got.GraceUntil, want.GraceUntil) {
		add("GraceUntil", fmtTimePtr(got.GraceUntil), fmtTimePtr(want.GraceUntil))
	}
	// nil and empty lists are the same list, as for rights.
	if !slices.Equal(got.AllowedIPs, want.AllowedIPs) {
		add("AllowedIPs", got.AllowedIPs, want.AllowedIPs)
	}
	if !slices.Equal(got.Environments, want.Environments) {
		add("Environments", got.Environments, want.Environments)
	}
	return d
}

// wantKey reports every field in which got differs from want.
func wantKey(t *testing.T, what string, got, want *keystore.Key) {
	t.Helper()
	if got == nil {
		t.Errorf("%s: got nil key, want %s", what, want.ID)
		return
	}
	for _, d := range keyDiff(got, want) {
		t.Errorf("%s: %s", what, d)
	}
}

func ids(keys []*keystore.Key) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.ID
	}
	return out
}

// normJSON renders v as canonical JSON (sorted map keys, JSON numbers), so
// details can be compared whatever types a store decodes them into. An empty
// or nil map is "{}".
func normJSON(t *testing.T, m map[string]any) string {
	t.Helper()
	if len(m) == 0 {
		return "{}"
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("marshalling details: %v", err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("unmarshalling details: %v", err)
	}
	b, err = json.Marshal(v)
	if err != nil {
		t.Fatalf("marshalling details: %v", err)
	}
	return string(b)
}
