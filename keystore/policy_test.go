package keystore_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/storetest"
)

func TestParseAllowedIPs(t *testing.T) {
	tests := []struct {
		in      []string
		want    []string
		wantErr string
	}{
		{in: nil, want: nil},
		{in: []string{"192.0.2.7"}, want: []string{"192.0.2.7/32"}},
		{in: []string{"192.0.2.0/24", "2001:db8::/48"}, want: []string{"192.0.2.0/24", "2001:db8::/48"}},
		{in: []string{"2001:DB8::1"}, want: []string{"2001:db8::1/128"}},
		{in: []string{"::ffff:192.0.2.7"}, want: []string{"192.0.2.7/32"}},
		{in: []string{"::ffff:192.0.2.0/120"}, want: []string{"192.0.2.0/24"}},
		{in: []string{" 10.0.0.0/8 "}, want: []string{"10.0.0.0/8"}},
		{in: []string{"10.0.0.0/8", "10.0.0.0/8", "10.0.0.0/8"}, want: []string{"10.0.0.0/8"}},
		{in: []string{"0.0.0.0/0"}, want: []string{"0.0.0.0/0"}},
		{in: []string{"10.0.0.1/8"}, wantErr: `"10.0.0.1/8" has host bits set; did you mean 10.0.0.0/8?`},
		{in: []string{"192.0.2.0/24", "example.com"}, wantErr: `allowed_ips entry "example.com" is not an IP address`},
		{in: []string{"192.0.2.0/33"}, wantErr: `allowed_ips entry "192.0.2.0/33"`},
		{in: []string{"fe80::1%eth0"}, wantErr: `allowed_ips entry "fe80::1%eth0"`},
		{in: []string{""}, wantErr: `allowed_ips entry ""`},
		{in: []string{"::ffff:0.0.0.0/64"}, wantErr: "IPv4-mapped prefix shorter than /96"},
		{in: make([]string, keystore.MaxAllowedIPs+1), wantErr: "at most 100"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.in, ","), func(t *testing.T) {
			got, err := keystore.ParseAllowedIPs(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || keystore.KindOf(err) != keystore.KindInvalid {
					t.Fatalf("got %v, %v; want an invalid-request error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestValidateEnvironments(t *testing.T) {
	if got, err := keystore.ValidateEnvironments([]string{"prod", "TEST-2", "dev.eu_1", "prod"}); err != nil || !slices.Equal(got, []string{"prod", "TEST-2", "dev.eu_1"}) {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range [][]string{{""}, {"pro d"}, {"prod/1"}, {strings.Repeat("x", 65)}, {"ünï"}, make([]string, keystore.MaxEnvironments+1)} {
		if _, err := keystore.ValidateEnvironments(bad); keystore.KindOf(err) != keystore.KindInvalid {
			t.Errorf("ValidateEnvironments(%q): got %v, want an invalid-request error", bad, err)
		}
	}
}

// principalOf loads a key through an Authenticator, as the Gate sees it.
func principalOf(t testing.TB, k *keystore.Key) *keystore.Principal {
	t.Helper()
	secret, err := keystore.GenerateKey(keystore.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	k.Digest = keystore.DigestOf(secret)
	if k.ID == "" {
		k.ID = "key_policy"
	}
	store := storetest.NewMemory()
	if err := store.CreateKey(context.Background(), k, keystore.CreateLimits{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	auth, err := keystore.NewAuthenticator(store, keystore.AuthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(auth.Close)
	p, err := auth.AuthenticateAt(context.Background(), secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAllowsClient(t *testing.T) {
	tests := []struct {
		allowed []string
		client  string
		want    bool
	}{
		{nil, "203.0.113.9", true},
		{nil, "not an address", true},
		{[]string{"192.0.2.0/24"}, "192.0.2.200", true},
		{[]string{"192.0.2.0/24"}, "192.0.3.1", false},
		{[]string{"192.0.2.0/24"}, "::ffff:192.0.2.1", true},
		{[]string{"192.0.2.7/32"}, "192.0.2.8", false},
		{[]string{"2001:db8::/48"}, "2001:db8:0:1::5", true},
		{[]string{"2001:db8::/48"}, "2001:db9::5", false},
		{[]string{"fe80::/10"}, "fe80::1%eth0", true},
		{[]string{"192.0.2.0/24"}, "", false},
		{[]string{"192.0.2.0/24"}, "192.0.2.1:5555", false},
		{[]string{"192.0.2.0/24", "2001:db8::/32"}, "2001:db8::1", true},
		// A stored entry that does not parse: the key works from nowhere.
		{[]string{"garbage"}, "192.0.2.1", false},
		{[]string{"garbage", "192.0.2.0/24"}, "192.0.2.1", true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.allowed, " ", tt.client), func(t *testing.T) {
			p := principalOf(t, &keystore.Key{User: "u", Rights: []string{"assets:read"}, AllowedIPs: tt.allowed})
			if got := p.AllowsClient(tt.client); got != tt.want {
				t.Fatalf("AllowsClient(%q) with %v: got %v, want %v", tt.client, tt.allowed, got, tt.want)
			}
		})
	}
}

func TestAcceptedIn(t *testing.T) {
	none := &keystore.Key{}
	prod := &keystore.Key{Environments: []string{"prod", "test"}}
	for _, c := range []struct {
		k    *keystore.Key
		env  string
		want bool
	}{
		{none, "", true}, {none, "prod", false},
		{prod, "", false}, {prod, "prod", true}, {prod, "test", true}, {prod, "PROD", false}, {prod, "dev", false},
	} {
		if got := c.k.AcceptedIn(c.env); got != c.want {
			t.Errorf("key with %v in %q: got %v, want %v", c.k.Environments, c.env, got, c.want)
		}
	}
}

// selfActor creates a keys:self key with mod applied through the local
// endpoint and returns it as the actor the admin handler builds: from the
// cached principal its secret authenticates to, without the key's record,
// so the bounds come from the store.
func (f *fixture) selfActor(t *testing.T, user string, spec keystore.KeySpec) (keystore.Actor, *keystore.Key) {
	t.Helper()
	spec.Name, spec.User = "self", user
	if spec.Rights == nil {
		spec.Rights = []string{"keys:self", "assets:read"}
	}
	k, secret, err := f.svc.Create(context.Background(), keystore.LocalActor(), spec)
	if err != nil {
		t.Fatalf("creating the keys:self key: %v", err)
	}
	auth, err := keystore.NewAuthenticator(f.store, keystore.AuthOptions{Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(auth.Close)
	p, err := auth.Authenticate(context.Background(), secret)
	if err != nil {
		t.Fatalf("authenticating the keys:self key: %v", err)
	}
	a := keystore.PrincipalActor(p)
	if a.Key != nil || a.ID != k.ID || a.User != user || !a.Rights.Self {
		t.Fatalf("actor of the keys:self key: %+v", a)
	}
	return a, k
}

// TestSelfServiceActingKeyRevoked: a keys:self key revoked after it was
// cached creates nothing: its bounds are read from the store, which knows.
func TestSelfServiceActingKeyRevoked(t *testing.T) {
	f := newFixture(t)
	self, parent := f.selfActor(t, "ME", keystore.KeySpec{})
	spec := keystore.KeySpec{Name: "c", User: "ME", Rights: []string{"assets:read"}}
	if _, _, err := f.svc.Create(context.Background(), self, spec); err != nil {
		t.Fatalf("create while the acting key is active: %v", err)
	}
	if _, err := f.svc.Revoke(context.Background(), keystore.LocalActor(), parent.ID); err != nil {
		t.Fatal(err)
	}
	_, _, err := f.svc.Create(context.Background(), self, spec)
	wantKind(t, err, keystore.KindForbidden)
	if !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("got %v, want it to say the acting key is revoked", err)
	}
}

func TestSelfServiceBounds(t *testing.T) {
	f := newFixture(t)
	parentSpec := keystore.KeySpec{
		Rate:         &keystore.RateSpec{Limit: 5, Per: "1m"},
		Quota:        &keystore.Quota{Limit: 100, Period: "day"},
		ExpiresIn:    "1h",
		AllowedIPs:   []string{"10.0.0.0/8", "2001:db8::/32"},
		Environments: []string{"prod", "test"},
	}
	self, parent := f.selfActor(t, "ME", parentSpec)
	tests := []struct {
		name    string
		spec    keystore.KeySpec
		wantErr string
		check   func(t *testing.T, k *keystore.Key)
	}{
		{name: "omitted fields are inherited", check: func(t *testing.T, k *keystore.Key) {
			if k.Rate == nil || *k.Rate != *parent.Rate || k.Quota == nil || *k.Quota != *parent.Quota ||
				k.ExpiresAt == nil || !k.ExpiresAt.Equal(*parent.ExpiresAt) ||
				!slices.Equal(k.AllowedIPs, parent.AllowedIPs) || !slices.Equal(k.Environments, parent.Environments) {
				t.Fatalf("child %+v did not inherit the parent's limits %+v", k, parent)
			}
		}},
		{name: "tighter is kept", spec: keystore.KeySpec{Rate: &keystore.RateSpec{Limit: 1, Per: "1m"}, Quota: &keystore.Quota{Limit: 3, Period: "month"},
			ExpiresIn: "30m", AllowedIPs: []string{"10.1.2.3"}, Environments: []string{"test"}},
			check: func(t *testing.T, k *keystore.Key) {
				if k.Rate.Limit != 1 || k.Quota.Limit != 3 || !k.ExpiresAt.Before(*parent.ExpiresAt) ||
					!slices.Equal(k.AllowedIPs, []string{"10.1.2.3/32"}) || !slices.Equal(k.Environments, []string{"test"}) {
					t.Fatalf("child %+v lost its own tighter limits", k)
				}
			}},
		{name: "faster rate", spec: keystore.KeySpec{Rate: &keystore.RateSpec{Limit: 10, Per: "1m"}}, wantErr: "rate 10/1m is looser than this key's own rate 5/1m"},
		{name: "same rate over a shorter window", spec: keystore.KeySpec{Rate: &keystore.RateSpec{Limit: 5, Per: "30s"}}, wantErr: "rate 5/30s is looser"},
		{name: "larger burst, slower rate", spec: keystore.KeySpec{Rate: &keystore.RateSpec{Limit: 6, Per: "1h"}}, wantErr: "rate 6/1h is looser"},
		{name: "larger day quota", spec: keystore.KeySpec{Quota: &keystore.Quota{Limit: 101, Period: "day"}}, wantErr: "quota 101 per day is looser than this key's own quota 100 per day"},
		{name: "month quota above a day", spec: keystore.KeySpec{Quota: &keystore.Quota{Limit: 3000, Period: "month"}}, wantErr: "quota 3000 per month is looser"},
		{name: "later expiry", spec: keystore.KeySpec{ExpiresIn: "87600h"}, wantErr: "later than this key's own expiry"},
		{name: "address outside", spec: keystore.KeySpec{AllowedIPs: []string{"10.0.0.0/8", "192.168.0.0/16"}}, wantErr: "allowed_ips entry 192.168.0.0/16 is outside"},
		{name: "wider prefix", spec: keystore.KeySpec{AllowedIPs: []string{"10.0.0.0/7"}}, wantErr: "allowed_ips entry 10.0.0.0/7 is outside"},
		{name: "other environment", spec: keystore.KeySpec{Environments: []string{"dev"}}, wantErr: `environment "dev" is not one of this key's own environments (prod, test)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			spec.Name, spec.User, spec.Rights = "child", "ME", []string{"assets:read"}
			k, _, err := f.svc.Create(context.Background(), self, spec)
			if tt.wantErr != "" {
				wantKind(t, err, keystore.KindInvalid)
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %q, want it to say %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, k)
		})
	}
	t.Run("no environment: none for the child", func(t *testing.T) {
		plain, _ := f.selfActor(t, "ME", keystore.KeySpec{})
		_, _, err := f.svc.Create(context.Background(), plain, keystore.KeySpec{Name: "c", User: "ME", Rights: []string{"assets:read"}, Environments: []string{"prod"}})
		wantKind(t, err, keystore.KindInvalid)
	})
	t.Run("admins are not bounded", func(t *testing.T) {
		adminKey, _, err := f.svc.Create(context.Background(), keystore.LocalActor(), keystore.KeySpec{Name: "a", User: "ADM", Rights: []string{"keys:admin"},
			Rate: &keystore.RateSpec{Limit: 1, Per: "1h"}, ExpiresIn: "1h"})
		if err != nil {
			t.Fatal(err)
		}
		r, _ := keystore.ParseRights(adminKey.Rights, nil)
		k, _, err := f.svc.Create(context.Background(), keystore.KeyActor(adminKey, r), keystore.KeySpec{Name: "c", User: "X", Rights: []string{"assets:read"}, ExpiresIn: "8760h"})
		if err != nil || k.Rate != nil || !k.ExpiresAt.After(*adminKey.ExpiresAt) {
			t.Fatalf("admin-created key: %+v, %v; want it unbounded", k, err)
		}
	})
}

// TestSelfServiceCannotOutgrowItsCreator is the scenario of the defect: a
// limited keys:self key created an unlimited child, which outlived the
// parent's revocation and created a ten-year grandchild.
func TestSelfServiceCannotOutgrowItsCreator(t *testing.T) {
	for _, how := range []string{"revoke", "revoke-leaked", "revoke-user"} {
		t.Run(how, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t)
			self, parent := f.selfActor(t, "ME", keystore.KeySpec{
				Rate: &keystore.RateSpec{Limit: 5, Per: "1m"}, Quota: &keystore.Quota{Limit: 100, Period: "day"}, ExpiresIn: "1h"})
			parentSecret := ""
			if how == "revoke-leaked" {
				// Rotate to learn a secret of the parent, as a scanner would find it.
				var err error
				if _, parentSecret, err = f.svc.Rotate(ctx, keystore.LocalActor(), parent.ID, keystore.RotateSpec{}); err != nil {
					t.Fatal(err)
				}
			}
			child, _, err := f.svc.Create(ctx, self, keystore.KeySpec{Name: "child", User: "ME", Rights: []string{"keys:self", "assets:read"}})
			if err != nil {
				t.Fatal(err)
			}
			if child.Rate == nil || child.Quota == nil || child.ExpiresAt == nil {
				t.Fatalf("child has rate %v, quota %v, expiry %v; want the parent's", child.Rate, child.Quota, child.ExpiresAt)
			}
			r, _ := keystore.ParseRights(child.Rights, nil)
			childActor := keystore.KeyActor(child, r)
			_, _, err = f.svc.Create(ctx, childActor, keystore.KeySpec{Name: "grandchild", User: "ME", Rights: []string{"assets:read"}, ExpiresIn: "87600h"})
			wantKind(t, err, keystore.KindInvalid)
			grandchild, _, err := f.svc.Create(ctx, childActor, keystore.KeySpec{Name: "grandchild", User: "ME", Rights: []string{"assets:read"}})
			if err != nil {
				t.Fatal(err)
			}
			unrelated, _ := f.create(t, keystore.LocalActor(), "ME", "assets:read")

			switch how {
			case "revoke":
				_, err = f.svc.Revoke(ctx, keystore.LocalActor(), parent.ID)
			case "revoke-leaked":
				var n int
				n, err = f.svc.RevokeLeaked(ctx, keystore.LocalActor(), []string{parentSecret})
				if n != 1 {
					t.Errorf("revoke-leaked: got %d, want 1", n)
				}
			case "revoke-user":
				var n int
				n, err = f.svc.RevokeUser(ctx, keystore.LocalActor(), "ME")
				if n != 4 {
					t.Errorf("revoke-user: got %d revoked, want 4", n)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range []*keystore.Key{parent, child, grandchild} {
				got, err := f.store.GetKey(ctx, k.ID)
				if err != nil || got.RevokedAt == nil {
					t.Errorf("key %s (%s): revoked_at %v, %v; want revoked", k.Name, k.ID, got.RevokedAt, err)
				}
				if !f.inv.has(k.Digest) {
					t.Errorf("key %s: digest not invalidated", k.Name)
				}
			}
			if got, _ := f.store.GetKey(ctx, unrelated.ID); (got.RevokedAt != nil) != (how == "revoke-user") {
				t.Errorf("unrelated key of the same user: revoked_at %v after %s", got.RevokedAt, how)
			}
			events, _, err := f.store.ListAudit(ctx, keystore.AuditFilter{KeyID: grandchild.ID})
			if err != nil {
				t.Fatal(err)
			}
			if how == "revoke-user" {
				// Same user: revoked by revoke-user itself, not by the cascade.
				if len(events) == 0 || events[0].Action != keystore.ActionRevokeUser {
					t.Errorf("grandchild's newest audit event: %+v; want revoke_user", events)
				}
				return
			}
			if len(events) == 0 || events[0].Action != keystore.ActionRevoke || events[0].Details["cascade"] != true ||
				events[0].Details["created_by"] != child.ID || events[0].Details["revoked_with"] != parent.ID {
				t.Errorf("grandchild's newest audit event: %+v; want a cascade revoke naming its creator and the root", events)
			}
		})
	}
}

func TestRevokeCascadeFinishesOnRetry(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	self, parent := f.selfActor(t, "ME", keystore.KeySpec{})
	child, _, err := f.svc.Create(ctx, self, keystore.KeySpec{Name: "child", User: "ME", Rights: []string{"assets:read"}})
	if err != nil {
		t.Fatal(err)
	}
	// The parent was revoked before cascades existed (or the cascade was
	// cut short): revoking it again finishes the job.
	if _, err := f.store.UpdateKey(ctx, parent.ID, func(k *keystore.Key) error {
		now := t0
		k.RevokedAt = &now
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Revoke(ctx, keystore.LocalActor(), parent.ID); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.store.GetKey(ctx, child.ID); got.RevokedAt == nil {
		t.Fatal("child of an already revoked key still active after a second revoke")
	}
}

func TestMaxKeysPerUser(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	f.svc.MaxKeysPerUser = 2
	f.create(t, keystore.LocalActor(), "ME", "assets:read")
	f.create(t, keystore.LocalActor(), "ME", "assets:read")
	_, _, err := f.svc.Create(ctx, keystore.LocalActor(), keystore.KeySpec{Name: "third", User: "ME", Rights: []string{"assets:read"}})
	wantKind(t, err, keystore.KindConflict)
	if !strings.Contains(err.Error(), "max_keys_per_user") {
		t.Errorf("got %q, want it to name max_keys_per_user", err)
	}
	_, err = f.svc.Import(ctx, keystore.LocalActor(), keystore.ImportSpec{KeySpec: keystore.KeySpec{Name: "imp", User: "ME", Rights: []string{"assets:read"}},
		SHA256: strings.Repeat("ab", 32)})
	wantKind(t, err, keystore.KindConflict)
	f.create(t, keystore.LocalActor(), "OTHER", "assets:read")
}

func TestPatchPolicy(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	k, _ := f.create(t, keystore.LocalActor(), "ME", "assets:read")
	got, err := f.svc.Update(ctx, keystore.LocalActor(), k.ID, keystore.KeyPatch{
		AllowedIPs: keystore.Of([]string{"192.0.2.1"}), Environments: keystore.Of([]string{"prod"})})
	if err != nil || !slices.Equal(got.AllowedIPs, []string{"192.0.2.1/32"}) || !slices.Equal(got.Environments, []string{"prod"}) {
		t.Fatalf("PATCH policy: %+v, %v", got, err)
	}
	if !f.inv.has(k.Digest) {
		t.Error("PATCH of the policy did not invalidate the cached key")
	}
	_, err = f.svc.Update(ctx, keystore.LocalActor(), k.ID, keystore.KeyPatch{AllowedIPs: keystore.Of([]string{"10.0.0.1/8"})})
	wantKind(t, err, keystore.KindInvalid)
	got, err = f.svc.Update(ctx, keystore.LocalActor(), k.ID, keystore.KeyPatch{AllowedIPs: keystore.Null[[]string](), Environments: keystore.Null[[]string]()})
	if err != nil || got.AllowedIPs != nil || got.Environments != nil {
		t.Fatalf("PATCH null policy: %+v, %v", got, err)
	}
}

// BenchmarkAllowsClient: keys without allowed_ips pay nothing; a key with
// 10 prefixes pays one address parse and up to 10 comparisons.
func BenchmarkAllowsClient(b *testing.B) {
	ten := []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "2001:db8::/32", "198.51.100.0/24",
		"203.0.113.0/24", "100.64.0.0/10", "fd00::/8", "192.0.0.0/24", "192.0.2.0/24"}
	for _, bc := range []struct {
		name    string
		allowed []string
	}{{"none", nil}, {"10 CIDRs, last matches", ten}} {
		b.Run(bc.name, func(b *testing.B) {
			p := principalOf(b, &keystore.Key{User: "u", Rights: []string{"assets:read"}, AllowedIPs: bc.allowed})
			b.ReportAllocs()
			for b.Loop() {
				if !p.AllowsClient("192.0.2.10") {
					b.Fatal("refused")
				}
			}
		})
	}
}

func BenchmarkAcceptedIn(b *testing.B) {
	k := &keystore.Key{Environments: []string{"dev", "test", "prod"}}
	b.ReportAllocs()
	for b.Loop() {
		if !k.AcceptedIn("prod") {
			b.Fatal("refused")
		}
	}
}
