package keystore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/storetest"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type recInvalidator struct {
	mu      sync.Mutex
	digests []keystore.Digest
}

func (r *recInvalidator) Invalidate(ds ...keystore.Digest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.digests = append(r.digests, ds...)
}

func (r *recInvalidator) has(d keystore.Digest) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.digests {
		if x == d {
			return true
		}
	}
	return false
}

type pending map[string][]keystore.UsageDelta

func (p pending) PendingUsage(id string) []keystore.UsageDelta { return p[id] }

type fixture struct {
	svc   *keystore.Service
	store *storetest.Memory
	clock *clock
	inv   *recInvalidator
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	areas, err := keystore.NewAreas(map[string][]string{
		"assets":     {"/maximo/oslc/os/mxasset*"},
		"workorders": {"/maximo/oslc/os/mxwo*"},
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: storetest.NewMemory(), clock: &clock{now: t0}, inv: &recInvalidator{}}
	f.svc = &keystore.Service{Store: f.store, Areas: areas, Now: f.clock.Now, Invalidator: f.inv}
	return f
}

func actor(t *testing.T, id, user string, rights ...string) keystore.Actor {
	t.Helper()
	r, err := keystore.ParseRights(rights, nil)
	if err != nil {
		t.Fatal(err)
	}
	return keystore.Actor{ID: id, User: user, Rights: r, Key: &keystore.Key{ID: id, User: user, Rights: rights}}
}

func (f *fixture) create(t *testing.T, a keystore.Actor, user string, rights ...string) (*keystore.Key, string) {
	t.Helper()
	k, secret, err := f.svc.Create(context.Background(), a, keystore.KeySpec{Name: "k", User: user, Rights: rights})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return k, secret
}

func wantKind(t *testing.T, err error, want keystore.ErrorKind) {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want kind %v", want)
	}
	if got := keystore.KindOf(err); got != want {
		t.Fatalf("got kind %v (%v), want %v", got, err, want)
	}
	var se *keystore.ServiceError
	if !errors.As(err, &se) || se.Message == "" {
		t.Fatalf("got %T %v, want a *ServiceError with a message", err, err)
	}
}

func TestCreate(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	local := keystore.LocalActor()
	k, secret, err := f.svc.Create(context.Background(), local, keystore.KeySpec{
		Name: "mx", User: "MXINTADM", Rights: []string{"workorders:write", "assets:read", "assets:read"},
		ExpiresIn: "720h", Rate: &keystore.RateSpec{Limit: 100, Per: "1m"},
		Quota: &keystore.Quota{Limit: 10000, Period: "month"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !keystore.ChecksumValid(secret) || !strings.HasPrefix(secret, "kg_") {
		t.Fatalf("got secret %q, want a valid kg_ key", secret)
	}
	if k.Digest != keystore.DigestOf(secret) {
		t.Fatalf("got digest %x, want DigestOf(secret)", k.Digest)
	}
	if want := keystore.DisplayStart(secret); k.Start != want {
		t.Fatalf("got start %q, want %q", k.Start, want)
	}
	if want := []string{"assets:read", "workorders:write"}; !reflect.DeepEqual(k.Rights, want) {
		t.Fatalf("got rights %v, want %v", k.Rights, want)
	}
	if k.CreatedBy != "local" || !k.CreatedAt.Equal(t0) {
		t.Fatalf("got created %v by %q, want %v by local", k.CreatedAt, k.CreatedBy, t0)
	}
	if want := t0.Add(720 * time.Hour); k.ExpiresAt == nil || !k.ExpiresAt.Equal(want) {
		t.Fatalf("got expires_at %v, want %v", k.ExpiresAt, want)
	}
	if k.Rate == nil || k.Rate.Per != time.Minute || k.Rate.Limit != 100 {
		t.Fatalf("got rate %+v, want 100/1m", k.Rate)
	}
	stored, err := f.store.GetKey(context.Background(), k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Digest != k.Digest {
		t.Fatalf("got stored digest %x, want %x", stored.Digest, k.Digest)
	}
	if !f.inv.has(k.Digest) {
		t.Fatalf("got no invalidation of the new digest, want one (negative cache entries)")
	}
	events, _, _ := f.store.ListAudit(context.Background(), keystore.AuditFilter{})
	if len(events) != 1 || events[0].Action != "create" || events[0].KeyID != k.ID || events[0].Actor != "local" {
		t.Fatalf("got audit %+v, want one create by local", events)
	}
	assertNoSecret(t, events, secret, k)
}

func TestCreateValidation(t *testing.T) {
	t.Parallel()
	base := func() keystore.KeySpec {
		return keystore.KeySpec{Name: "n", User: "U", Rights: []string{"assets:read"}}
	}
	tests := []struct {
		name   string
		mutate func(*keystore.KeySpec)
		msg    string
	}{
		{"no name", func(s *keystore.KeySpec) { s.Name = " " }, "name is required"},
		{"no user", func(s *keystore.KeySpec) { s.User = "" }, "user is required"},
		{"control char", func(s *keystore.KeySpec) { s.User = "a\x00b" }, "control characters"},
		{"long name", func(s *keystore.KeySpec) { s.Name = strings.Repeat("x", 201) }, "at most 200"},
		{"no rights", func(s *keystore.KeySpec) { s.Rights = nil }, "rights must not be empty"},
		{"unknown area", func(s *keystore.KeySpec) { s.Rights = []string{"nope:read"} }, "unknown area"},
		{"bad level", func(s *keystore.KeySpec) { s.Rights = []string{"assets:admin"} }, "level"},
		{"both expiries", func(s *keystore.KeySpec) { s.ExpiresAt, s.ExpiresIn = "2030-01-01T00:00:00Z", "1h" }, "not both"},
		{"bad expires_at", func(s *keystore.KeySpec) { s.ExpiresAt = "tomorrow" }, "RFC 3339"},
		{"past expires_at", func(s *keystore.KeySpec) { s.ExpiresAt = "2020-01-01T00:00:00Z" }, "not in the future"},
		{"bad expires_in", func(s *keystore.KeySpec) { s.ExpiresIn = "1 day" }, "Go duration"},
		{"negative expires_in", func(s *keystore.KeySpec) { s.ExpiresIn = "-1h" }, "at least 1s"},
		{"rate limit 0", func(s *keystore.KeySpec) { s.Rate = &keystore.RateSpec{Limit: 0, Per: "1s"} }, "rate.limit"},
		{"rate per missing", func(s *keystore.KeySpec) { s.Rate = &keystore.RateSpec{Limit: 1} }, "rate.per is required"},
		{"rate per bad", func(s *keystore.KeySpec) { s.Rate = &keystore.RateSpec{Limit: 1, Per: "minute"} }, "rate.per"},
		{"rate per zero", func(s *keystore.KeySpec) { s.Rate = &keystore.RateSpec{Limit: 1, Per: "0s"} }, "positive"},
		{"quota limit", func(s *keystore.KeySpec) { s.Quota = &keystore.Quota{Limit: -1, Period: "day"} }, "quota.limit"},
		{"quota period", func(s *keystore.KeySpec) { s.Quota = &keystore.Quota{Limit: 1, Period: "week"} }, "quota.period"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			spec := base()
			tt.mutate(&spec)
			_, _, err := f.svc.Create(context.Background(), keystore.LocalActor(), spec)
			wantKind(t, err, keystore.KindInvalid)
			if !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %q, want it to contain %q", err, tt.msg)
			}
			if n, _ := f.store.CountActive(context.Background(), t0); n != 0 {
				t.Fatalf("got %d keys stored, want 0", n)
			}
		})
	}
}

func TestAuthorization(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		actor    func(t *testing.T) keystore.Actor
		selfOnly bool
		user     string
		rights   []string
		want     keystore.ErrorKind // KindInternal = allowed
	}{
		{"admin any user", func(t *testing.T) keystore.Actor { return actor(t, "key_a", "ADMIN", "keys:admin") }, false, "OTHER", []string{"*:write", "keys:admin"}, keystore.KindInternal},
		{"admin self-service only, other user", func(t *testing.T) keystore.Actor { return actor(t, "key_a", "ADMIN", "keys:admin") }, true, "OTHER", []string{"assets:read"}, keystore.KindForbidden},
		{"admin self-service only, own user", func(t *testing.T) keystore.Actor { return actor(t, "key_a", "ADMIN", "keys:admin") }, true, "ADMIN", []string{"assets:read"}, keystore.KindInternal},
		{"local exempt from self-service only", func(t *testing.T) keystore.Actor { return keystore.LocalActor() }, true, "OTHER", []string{"assets:read"}, keystore.KindInternal},
		{"self own user covered", func(t *testing.T) keystore.Actor { return actor(t, "key_s", "ME", "keys:self", "assets:write") }, false, "ME", []string{"assets:read", "keys:self"}, keystore.KindInternal},
		{"self other user", func(t *testing.T) keystore.Actor { return actor(t, "key_s", "ME", "keys:self", "assets:write") }, false, "OTHER", []string{"assets:read"}, keystore.KindForbidden},
		{"self grants keys:admin", func(t *testing.T) keystore.Actor { return actor(t, "key_s", "ME", "keys:self", "*:write") }, false, "ME", []string{"keys:admin"}, keystore.KindForbidden},
		{"self grants *:write holding assets:write", func(t *testing.T) keystore.Actor { return actor(t, "key_s", "ME", "keys:self", "assets:write") }, false, "ME", []string{"*:write"}, keystore.KindForbidden},
		{"self grants *:read holding assets:write", func(t *testing.T) keystore.Actor { return actor(t, "key_s", "ME", "keys:self", "assets:write") }, false, "ME", []string{"*:read"}, keystore.KindForbidden},
		{"self grants write holding read", func(t *testing.T) keystore.Actor { return actor(t, "key_s", "ME", "keys:self", "assets:read") }, false, "ME", []string{"assets:write"}, keystore.KindForbidden},
		{"self grants other area", func(t *testing.T) keystore.Actor { return actor(t, "key_s", "ME", "keys:self", "assets:write") }, false, "ME", []string{"workorders:read"}, keystore.KindForbidden},
		{"no admin right", func(t *testing.T) keystore.Actor { return actor(t, "key_x", "ME", "assets:write") }, false, "ME", []string{"assets:read"}, keystore.KindForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.svc.SelfServiceOnly = tt.selfOnly
			_, _, err := f.svc.Create(context.Background(), tt.actor(t), keystore.KeySpec{Name: "n", User: tt.user, Rights: tt.rights})
			if tt.want == keystore.KindInternal {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				return
			}
			wantKind(t, err, tt.want)
		})
	}
}

func TestSelfServiceScope(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t)
	local := keystore.LocalActor()
	self := actor(t, "key_self", "ME", "keys:self", "assets:write")
	mine, _ := f.create(t, local, "ME", "assets:read")
	wider, _ := f.create(t, local, "ME", "keys:admin")
	other, _ := f.create(t, local, "OTHER", "assets:read")

	if _, err := f.svc.Get(ctx, self, mine.ID); err != nil {
		t.Fatalf("get own: got %v, want nil", err)
	}
	if _, err := f.svc.Get(ctx, self, wider.ID); err != nil {
		t.Fatalf("get own wider key: got %v, want nil", err)
	}
	_, err := f.svc.Get(ctx, self, other.ID)
	wantKind(t, err, keystore.KindForbidden)
	_, _, err = f.svc.Rotate(ctx, self, other.ID, keystore.RotateSpec{})
	wantKind(t, err, keystore.KindForbidden)
	_, _, err = f.svc.Rotate(ctx, self, wider.ID, keystore.RotateSpec{})
	wantKind(t, err, keystore.KindForbidden)
	_, err = f.svc.Revoke(ctx, self, other.ID)
	wantKind(t, err, keystore.KindForbidden)
	_, err = f.svc.Update(ctx, self, mine.ID, keystore.KeyPatch{Name: keystore.Of("x")})
	wantKind(t, err, keystore.KindForbidden)
	_, err = f.svc.RevokeUser(ctx, self, "ME")
	wantKind(t, err, keystore.KindForbidden)
	_, err = f.svc.RevokeLeaked(ctx, self, []string{"x"})
	wantKind(t, err, keystore.KindForbidden)
	_, _, err = f.svc.Audit(ctx, self, keystore.AuditFilter{})
	wantKind(t, err, keystore.KindForbidden)
	_, _, err = f.svc.Audit(ctx, self, keystore.AuditFilter{KeyID: other.ID})
	wantKind(t, err, keystore.KindForbidden)
	if _, _, err := f.svc.Audit(ctx, self, keystore.AuditFilter{KeyID: mine.ID}); err != nil {
		t.Fatalf("audit of own key: got %v, want nil", err)
	}
	_, _, err = f.svc.List(ctx, self, keystore.ListFilter{User: "OTHER"})
	wantKind(t, err, keystore.KindForbidden)
	keys, _, err := f.svc.List(ctx, self, keystore.ListFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.User != "ME" {
			t.Fatalf("got key of user %q in self list, want only ME", k.User)
		}
	}
	if len(keys) != 2 {
		t.Fatalf("got %d keys, want 2", len(keys))
	}
	if _, secret, err := f.svc.Rotate(ctx, self, mine.ID, keystore.RotateSpec{}); err != nil || secret == "" {
		t.Fatalf("rotate own: got %v, want nil", err)
	}
	if _, err := f.svc.Revoke(ctx, self, mine.ID); err != nil {
		t.Fatalf("revoke own: got %v, want nil", err)
	}
}

func TestRotate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name      string
		grace     string
		oldWorks  bool
		wantKind  keystore.ErrorKind
		wantGrace time.Duration
	}{
		{"no grace", "", false, keystore.KindInternal, 0},
		{"zero grace", "0s", false, keystore.KindInternal, 0},
		{"grace", "24h", true, keystore.KindInternal, 24 * time.Hour},
		{"bad grace", "a day", false, keystore.KindInvalid, 0},
		{"negative grace", "-1h", false, keystore.KindInvalid, 0},
		{"grace too long", "1000h", false, keystore.KindInvalid, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			k, old := f.create(t, keystore.LocalActor(), "U", "assets:read")
			// An earlier rotation with grace leaves a previous digest behind.
			_, older := k, old
			k1, old, err := f.svc.Rotate(ctx, keystore.LocalActor(), k.ID, keystore.RotateSpec{Grace: "1h"})
			if err != nil {
				t.Fatal(err)
			}
			if k1.PrevDigest != keystore.DigestOf(older) {
				t.Fatalf("got prev digest %x, want the first secret's", k1.PrevDigest)
			}
			k2, secret, err := f.svc.Rotate(ctx, keystore.LocalActor(), k.ID, keystore.RotateSpec{Grace: tt.grace})
			if tt.wantKind != keystore.KindInternal {
				wantKind(t, err, tt.wantKind)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			now := f.clock.Now()
			if !k2.Accepts(keystore.DigestOf(secret), now) {
				t.Fatalf("new secret not accepted")
			}
			if got := k2.Accepts(keystore.DigestOf(old), now); got != tt.oldWorks {
				t.Fatalf("old secret accepted: got %v, want %v", got, tt.oldWorks)
			}
			if k2.Accepts(keystore.DigestOf(older), now) {
				t.Fatalf("the secret before the last rotation still works, want it dropped")
			}
			if tt.wantGrace > 0 && (k2.GraceUntil == nil || !k2.GraceUntil.Equal(now.Add(tt.wantGrace))) {
				t.Fatalf("got grace until %v, want %v", k2.GraceUntil, now.Add(tt.wantGrace))
			}
			if tt.oldWorks && k2.Accepts(keystore.DigestOf(old), now.Add(tt.wantGrace)) {
				t.Fatalf("old secret works after the grace")
			}
			for _, d := range []keystore.Digest{keystore.DigestOf(old), keystore.DigestOf(older), k2.Digest} {
				if !f.inv.has(d) {
					t.Fatalf("digest %x not invalidated", d[:4])
				}
			}
		})
	}
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t)
	k, secret := f.create(t, keystore.LocalActor(), "U", "assets:read")
	r1, err := f.svc.Revoke(ctx, keystore.LocalActor(), k.ID)
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Add(time.Hour)
	r2, err := f.svc.Revoke(ctx, keystore.LocalActor(), k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r1.RevokedAt == nil || r2.RevokedAt == nil || !r2.RevokedAt.Equal(*r1.RevokedAt) {
		t.Fatalf("got revoked_at %v then %v, want the first kept", r1.RevokedAt, r2.RevokedAt)
	}
	if r2.Status(f.clock.Now()) != keystore.StatusRevoked {
		t.Fatalf("got status %v, want revoked", r2.Status(f.clock.Now()))
	}
	if !f.inv.has(keystore.DigestOf(secret)) {
		t.Fatal("revoked digest not invalidated")
	}
	_, _, err = f.svc.Rotate(ctx, keystore.LocalActor(), k.ID, keystore.RotateSpec{})
	wantKind(t, err, keystore.KindConflict)
	_, err = f.svc.Update(ctx, keystore.LocalActor(), k.ID, keystore.KeyPatch{Name: keystore.Of("x")})
	wantKind(t, err, keystore.KindConflict)
	_, err = f.svc.Revoke(ctx, keystore.LocalActor(), "key_missing")
	wantKind(t, err, keystore.KindNotFound)
}

func TestRevokeUserAndLeaked(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t)
	local := keystore.LocalActor()
	a1, _ := f.create(t, local, "A", "assets:read")
	f.create(t, local, "A", "assets:read")
	_, bSecret := f.create(t, local, "B", "assets:read")
	c, cOld := f.create(t, local, "C", "assets:read")
	n, err := f.svc.RevokeUser(ctx, local, "A")
	if err != nil || n != 2 {
		t.Fatalf("got %d, %v, want 2, nil", n, err)
	}
	if n, _ := f.svc.RevokeUser(ctx, local, "A"); n != 0 {
		t.Fatalf("got %d on the second call, want 0", n)
	}
	got, _ := f.store.GetKey(ctx, a1.ID)
	if got.RevokedAt == nil {
		t.Fatal("key of A not revoked")
	}
	if _, _, err := f.svc.Rotate(ctx, local, c.ID, keystore.RotateSpec{Grace: "1h"}); err != nil {
		t.Fatal(err)
	}
	n, err = f.svc.RevokeLeaked(ctx, local, []string{bSecret, bSecret, "kg_unknown", cOld, ""})
	if err != nil || n != 2 {
		t.Fatalf("got %d, %v, want 2, nil", n, err)
	}
	b, _ := f.store.LookupDigest(ctx, keystore.DigestOf(bSecret))
	if b.RevokedAt == nil {
		t.Fatal("leaked key B not revoked")
	}
	cNow, _ := f.store.GetKey(ctx, c.ID)
	if cNow.RevokedAt != nil || !cNow.PrevDigest.IsZero() {
		t.Fatalf("got revoked %v prev %x, want the grace ended and the key kept", cNow.RevokedAt, cNow.PrevDigest[:4])
	}
	_, err = f.svc.RevokeLeaked(ctx, local, make([]string, keystore.MaxLeakedKeys+1))
	wantKind(t, err, keystore.KindInvalid)
}

func TestImport(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const strong = "Maximo-Integration-Key-2026-abcdefXYZ"
	hexd := keystore.DigestOf("Some-Other-Legacy-Key-With-Variety-123").Hex()
	tests := []struct {
		name      string
		spec      keystore.ImportSpec
		wantKind  keystore.ErrorKind
		wantStart string
	}{
		{"value", keystore.ImportSpec{APIKey: strong}, keystore.KindInternal, "Maxi"},
		{"sha256", keystore.ImportSpec{SHA256: strings.ToUpper(hexd)}, keystore.KindInternal, ""},
		{"both", keystore.ImportSpec{APIKey: strong, SHA256: hexd}, keystore.KindInvalid, ""},
		{"neither", keystore.ImportSpec{}, keystore.KindInvalid, ""},
		{"weak", keystore.ImportSpec{APIKey: strings.Repeat("a", 40)}, keystore.KindInvalid, ""},
		{"short", keystore.ImportSpec{APIKey: "Ab1!"}, keystore.KindInvalid, ""},
		{"bad hex", keystore.ImportSpec{SHA256: "zz"}, keystore.KindInvalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			tt.spec.KeySpec = keystore.KeySpec{Name: "n", User: "U", Rights: []string{"assets:read"}}
			k, err := f.svc.Import(ctx, keystore.LocalActor(), tt.spec)
			if tt.wantKind != keystore.KindInternal {
				wantKind(t, err, tt.wantKind)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !k.Imported || k.Start != tt.wantStart {
				t.Fatalf("got imported %v start %q, want true %q", k.Imported, k.Start, tt.wantStart)
			}
			_, err = f.svc.Import(ctx, keystore.LocalActor(), tt.spec)
			wantKind(t, err, keystore.KindConflict)
		})
	}
}

func TestLicense(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t)
	f.svc.License = 2
	local := keystore.LocalActor()
	k1, _, err := f.svc.Create(ctx, local, keystore.KeySpec{Name: "a", User: "U", Rights: []string{"assets:read"}, ExpiresIn: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	f.create(t, local, "U", "assets:read")
	_, _, err = f.svc.Create(ctx, local, keystore.KeySpec{Name: "c", User: "U", Rights: []string{"assets:read"}})
	wantKind(t, err, keystore.KindLicense)
	if !errors.Is(err, keystore.ErrLicenseExhausted) {
		t.Fatalf("got %v, want errors.Is ErrLicenseExhausted", err)
	}
	_, err = f.svc.Import(ctx, local, keystore.ImportSpec{KeySpec: keystore.KeySpec{Name: "c", User: "U", Rights: []string{"assets:read"}}, APIKey: "Maximo-Integration-Key-2026-abcdefXYZ"})
	wantKind(t, err, keystore.KindLicense)
	info, err := f.svc.LicenseStatus(ctx, local)
	if err != nil || info.Limit != 2 || info.InUse != 2 {
		t.Fatalf("got %+v, %v, want {2 2}", info, err)
	}
	f.clock.Add(2 * time.Hour) // k1 expires: a seat is free
	k3, _ := f.create(t, local, "U", "assets:read")
	// Reviving k1 would exceed the licence.
	_, err = f.svc.Update(ctx, local, k1.ID, keystore.KeyPatch{ExpiresAt: keystore.Null[string]()})
	wantKind(t, err, keystore.KindLicense)
	if _, err := f.svc.Revoke(ctx, local, k3.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Update(ctx, local, k1.ID, keystore.KeyPatch{ExpiresAt: keystore.Null[string]()}); err != nil {
		t.Fatalf("revive with a free seat: got %v, want nil", err)
	}
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t)
	local := keystore.LocalActor()
	k, secret, err := f.svc.Create(ctx, local, keystore.KeySpec{Name: "a", User: "U", Rights: []string{"assets:read"},
		ExpiresIn: "1h", Rate: &keystore.RateSpec{Limit: 1, Per: "1s"}, Quota: &keystore.Quota{Limit: 5, Period: "day"}})
	if err != nil {
		t.Fatal(err)
	}
	var p keystore.KeyPatch
	if err := json.Unmarshal([]byte(`{"name":"b","description":null,"rights":["workorders:write"],"rate":null,"quota":{"limit":9,"period":"month"},"expires_at":null}`), &p); err != nil {
		t.Fatal(err)
	}
	got, err := f.svc.Update(ctx, local, k.ID, p)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "b" || got.Rate != nil || got.ExpiresAt != nil || got.Quota == nil || got.Quota.Limit != 9 ||
		!reflect.DeepEqual(got.Rights, []string{"workorders:write"}) {
		t.Fatalf("got %+v, want the patch applied", got)
	}
	if !f.inv.has(keystore.DigestOf(secret)) {
		t.Fatal("changed key not invalidated")
	}
	// Absent fields stay.
	got, err = f.svc.Update(ctx, local, k.ID, keystore.KeyPatch{Description: keystore.Of("d")})
	if err != nil || got.Name != "b" || got.Quota == nil || got.Description != "d" {
		t.Fatalf("got %+v, %v, want only description changed", got, err)
	}
	bad := []struct {
		name string
		p    keystore.KeyPatch
		kind keystore.ErrorKind
	}{
		{"empty", keystore.KeyPatch{}, keystore.KindInvalid},
		{"null name", keystore.KeyPatch{Name: keystore.Null[string]()}, keystore.KindInvalid},
		{"null rights", keystore.KeyPatch{Rights: keystore.Null[[]string]()}, keystore.KindInvalid},
		{"empty rights", keystore.KeyPatch{Rights: keystore.Of([]string{})}, keystore.KindInvalid},
		{"bad rate", keystore.KeyPatch{Rate: keystore.Of(keystore.RateSpec{Limit: 1, Per: "x"})}, keystore.KindInvalid},
		{"bad quota", keystore.KeyPatch{Quota: keystore.Of(keystore.Quota{Limit: 1})}, keystore.KindInvalid},
		{"bad expiry", keystore.KeyPatch{ExpiresAt: keystore.Of("soon")}, keystore.KindInvalid},
	}
	for _, tt := range bad {
		_, err := f.svc.Update(ctx, local, k.ID, tt.p)
		if keystore.KindOf(err) != tt.kind {
			t.Fatalf("%s: got %v, want kind %v", tt.name, err, tt.kind)
		}
	}
	_, err = f.svc.Update(ctx, local, "key_nope", keystore.KeyPatch{Name: keystore.Of("x")})
	wantKind(t, err, keystore.KindNotFound)
}

func TestUsage(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t)
	local := keystore.LocalActor()
	k, _ := f.create(t, local, "U", "assets:read")
	today := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	if err := f.store.AddUsage(ctx, "b1", []keystore.UsageDelta{
		{KeyID: k.ID, Day: today, Requests: 5},
		{KeyID: k.ID, Day: today.AddDate(0, 0, -1), Requests: 2},
		{KeyID: k.ID, Day: today.AddDate(0, 0, -40), Requests: 9},
	}); err != nil {
		t.Fatal(err)
	}
	f.svc.Pending = pending{k.ID: {{KeyID: k.ID, Day: today, Requests: 3}}}
	days, err := f.svc.Usage(ctx, local, k.ID, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(days) != 30 || !days[0].Day.Equal(today.AddDate(0, 0, -29)) || !days[29].Day.Equal(today) {
		t.Fatalf("got %d days from %v, want 30 days ending today", len(days), days[0].Day)
	}
	if days[29].Requests != 8 || days[28].Requests != 2 {
		t.Fatalf("got %d and %d, want 8 (5 stored + 3 pending) and 2", days[29].Requests, days[28].Requests)
	}
	_, err = f.svc.Usage(ctx, local, k.ID, today, today.AddDate(0, 0, -1))
	wantKind(t, err, keystore.KindInvalid)
	_, err = f.svc.Usage(ctx, local, k.ID, today.AddDate(-2, 0, 0), today)
	wantKind(t, err, keystore.KindInvalid)
	_, err = f.svc.Usage(ctx, local, "key_nope", time.Time{}, time.Time{})
	wantKind(t, err, keystore.KindNotFound)
}

func TestLastUsedIncludesPending(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t)
	local := keystore.LocalActor()
	k, _ := f.create(t, local, "U", "assets:read")
	used := time.Date(2026, 11, 23, 9, 30, 15, 500, time.UTC)
	f.svc.Pending = pending{k.ID: {{KeyID: k.ID, Day: used.Truncate(24 * time.Hour), Requests: 1, LastUsed: used}}}
	got, err := f.svc.Get(ctx, local, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.LastUsedAt == nil || !got.LastUsedAt.Equal(used.Truncate(time.Second)) {
		t.Fatalf("Get: last_used_at %v, want %v", got.LastUsedAt, used.Truncate(time.Second))
	}
	keys, _, err := f.svc.List(ctx, local, keystore.ListFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].LastUsedAt == nil || !keys[0].LastUsedAt.Equal(used.Truncate(time.Second)) {
		t.Fatalf("List: got %+v, want last_used_at %v", keys, used)
	}
	// What revoke and rotate answer is as fresh as Get.
	r, _, err := f.svc.Rotate(ctx, local, k.ID, keystore.RotateSpec{})
	if err != nil {
		t.Fatal(err)
	}
	if r.LastUsedAt == nil || !r.LastUsedAt.Equal(used.Truncate(time.Second)) {
		t.Fatalf("Rotate: last_used_at %v, want %v", r.LastUsedAt, used.Truncate(time.Second))
	}
	rv, err := f.svc.Revoke(ctx, local, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rv.LastUsedAt == nil || !rv.LastUsedAt.Equal(used.Truncate(time.Second)) {
		t.Fatalf("Revoke: last_used_at %v, want %v", rv.LastUsedAt, used.Truncate(time.Second))
	}
}

func TestStoreErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t)
	k, _ := f.create(t, keystore.LocalActor(), "U", "assets:read")
	f.store.SetFail(fmt.Errorf("dial tcp: %w", keystore.ErrUnavailable))
	_, err := f.svc.Get(ctx, keystore.LocalActor(), k.ID)
	wantKind(t, err, keystore.KindUnavailable)
	f.store.SetFail(errors.New("disk on fire"))
	_, _, err = f.svc.Create(ctx, keystore.LocalActor(), keystore.KeySpec{Name: "n", User: "U", Rights: []string{"assets:read"}})
	wantKind(t, err, keystore.KindUnavailable)
	if strings.Contains(err.(*keystore.ServiceError).Message, "fire") {
		t.Fatalf("got client message %q, want the cause kept out of it", err.(*keystore.ServiceError).Message)
	}
}

func TestListCursorErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	local := keystore.LocalActor()
	f.create(t, local, "U", "assets:read")
	_, _, err := f.svc.List(t.Context(), local, keystore.ListFilter{Cursor: "!!garbage!!"})
	wantKind(t, err, keystore.KindInvalid)
	_, _, err = f.svc.Audit(t.Context(), local, keystore.AuditFilter{Cursor: "!!garbage!!"})
	wantKind(t, err, keystore.KindInvalid)
	// A store failure on a call with a cursor is the store's, not the cursor's.
	f.store.SetFail(errors.New("disk on fire"))
	_, _, err = f.svc.List(t.Context(), local, keystore.ListFilter{Cursor: "1"})
	wantKind(t, err, keystore.KindUnavailable)
}

// orderInvalidator checks, when called, that the store already holds the
// change: an eviction before the write could be refilled with the old key.
type orderInvalidator struct {
	t     *testing.T
	store *storetest.Memory
	id    string
	calls int
}

func (o *orderInvalidator) Invalidate(ds ...keystore.Digest) {
	if o.id == "" {
		return
	}
	o.calls++
	k, err := o.store.GetKey(context.Background(), o.id)
	if err != nil || k.RevokedAt == nil {
		o.t.Errorf("Invalidate called before the revocation was stored (err %v)", err)
	}
}

func TestInvalidateAfterWrite(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	inv := &orderInvalidator{t: t, store: f.store}
	f.svc.Invalidator = inv
	k, _ := f.create(t, keystore.LocalActor(), "U", "assets:read")
	inv.id = k.ID
	if _, err := f.svc.Revoke(context.Background(), keystore.LocalActor(), k.ID); err != nil {
		t.Fatal(err)
	}
	if inv.calls != 1 {
		t.Fatalf("got %d Invalidate calls, want 1", inv.calls)
	}
}

func TestFormatDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   time.Duration
		want string
	}{
		{time.Second, "1s"},
		{time.Minute, "1m"},
		{time.Hour, "1h"},
		{24 * time.Hour, "24h"},
		{90 * time.Minute, "1h30m"},
		{90 * time.Second, "1m30s"},
		{time.Hour + time.Second, "1h0m1s"},
		{1500 * time.Millisecond, "1.5s"},
		{0, "0s"},
	}
	for _, tt := range tests {
		if got := keystore.FormatDuration(tt.in); got != tt.want {
			t.Errorf("FormatDuration(%v): got %q, want %q", tt.in, got, tt.want)
		}
		if d, err := time.ParseDuration(keystore.FormatDuration(tt.in)); err != nil || d != tt.in {
			t.Errorf("round trip of %v: got %v, %v", tt.in, d, err)
		}
	}
}

func TestAuditHasNoSecrets(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t)
	local := keystore.LocalActor()
	k, s1 := f.create(t, local, "U", "assets:read")
	_, s2, err := f.svc.Rotate(ctx, local, k.ID, keystore.RotateSpec{Grace: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Update(ctx, local, k.ID, keystore.KeyPatch{Name: keystore.Of("z")}); err != nil {
		t.Fatal(err)
	}
	imp := "Maximo-Integration-Key-2026-abcdefXYZ"
	ik, err := f.svc.Import(ctx, local, keystore.ImportSpec{KeySpec: keystore.KeySpec{Name: "i", User: "U", Rights: []string{"assets:read"}}, APIKey: imp})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.RevokeLeaked(ctx, local, []string{s2}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.RevokeUser(ctx, local, "U"); err != nil {
		t.Fatal(err)
	}
	events, _, _ := f.store.ListAudit(ctx, keystore.AuditFilter{})
	actions := map[string]bool{}
	for _, e := range events {
		actions[e.Action] = true
	}
	for _, a := range []string{"create", "rotate", "update", "import", "revoke_leaked", "revoke_user"} {
		if !actions[a] {
			t.Errorf("no %s event in %v", a, actions)
		}
	}
	k2, _ := f.store.GetKey(ctx, k.ID)
	assertNoSecret(t, events, s1, k2)
	assertNoSecret(t, events, s2, k2)
	assertNoSecret(t, events, imp, ik)
}

func assertNoSecret(t *testing.T, events []keystore.AuditEvent, secret string, k *keystore.Key) {
	t.Helper()
	b, err := json.Marshal(events)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	forbidden := []string{secret, keystore.DigestOf(secret).Hex(), k.Digest.Hex()}
	if k.Start != "" {
		forbidden = append(forbidden, k.Start)
	}
	for _, f := range forbidden {
		if strings.Contains(s, f) {
			t.Fatalf("audit log contains %q", f)
		}
	}
}
