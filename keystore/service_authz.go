package keystore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Actor is whoever calls the admin API: an admin key (keys:admin or
// keys:self) or Caddy's local admin endpoint.
type Actor struct {
	// ID is the acting key's id, or LocalActorID.
	ID string
	// User is the acting key's user ("" for the local endpoint).
	User string
	// Rights are the acting key's parsed rights.
	Rights Rights
	// Local marks Caddy's local admin endpoint, trusted like keys:admin.
	Local bool
	// Key is the acting key's record: what a keys:self key creates is
	// bounded by its limits, expiry, allowed_ips and environments. When nil
	// for a key actor, the Service reads the record from the store when it
	// needs it.
	Key *Key
}

// LocalActor returns the actor of Caddy's local admin endpoint.
func LocalActor() Actor { return Actor{ID: LocalActorID, Local: true} }

// KeyActor returns the actor for an authenticated admin key.
func KeyActor(k *Key, rights Rights) Actor {
	return Actor{ID: k.ID, User: k.User, Rights: rights, Key: k}
}

// PrincipalActor returns the actor for an admin key as the cache holds it;
// the Service reads the key's record when it needs its bounds.
func PrincipalActor(p *Principal) Actor {
	return Actor{ID: p.ID(), User: p.User(), Rights: p.Rights()}
}

// actingKey returns the record of the key acting as a, for bounding what it
// creates: a.Key, or the store's copy, which must still be active (a key
// revoked a moment ago may still be cached elsewhere).
func (s *Service) actingKey(ctx context.Context, a Actor, now time.Time) (*Key, error) {
	if a.Key != nil {
		return a.Key, nil
	}
	k, err := s.Store.GetKey(ctx, a.ID)
	if errors.Is(err, ErrNotFound) {
		return nil, forbiddenf("the acting key %s no longer exists", a.ID)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the acting key: %w", err)
	}
	if st := k.Status(now); st != StatusActive {
		return nil, forbiddenf("the acting key %s is %s", a.ID, st)
	}
	return k, nil
}

func (a Actor) admin() bool { return a.Local || a.Rights.Admin }

// ---- authorization ----

// mayManage checks that the actor may act on keys at all.
func (s *Service) mayManage(a Actor) error {
	if a.admin() || a.Rights.Self {
		return nil
	}
	return forbiddenf("the admin API needs a key with keys:admin or keys:self")
}

// requireAdmin refuses anything but keys:admin (and the local endpoint).
func requireAdmin(a Actor, what string) error {
	if a.admin() {
		return nil
	}
	if a.Rights.Self {
		return forbiddenf("keys:self may not %s; it needs keys:admin", what)
	}
	return forbiddenf("the admin API needs a key with keys:admin or keys:self")
}

// mayRead checks that the actor may see key k: keys:admin all keys,
// keys:self the keys of its own user.
func mayRead(a Actor, k *Key) error {
	if a.admin() {
		return nil
	}
	if !a.Rights.Self {
		return forbiddenf("the admin API needs a key with keys:admin or keys:self")
	}
	if k.User != a.User {
		return forbiddenf("keys:self may only manage keys of its own user %q", a.User)
	}
	return nil
}

// mayChange checks mayRead and, for keys:self, that the key's rights are no
// wider than the actor's: a keys:self key must not rotate (and so read the
// new secret of) or revoke a key that holds more than it does.
func mayChange(a Actor, k *Key) error {
	if err := mayRead(a, k); err != nil {
		return err
	}
	if a.admin() {
		return nil
	}
	r, err := ParseRights(k.Rights, nil)
	if err != nil || !a.Rights.Covers(r) {
		return forbiddenf("keys:self may only manage keys whose rights it holds itself; key %s has rights beyond this key's", k.ID)
	}
	return nil
}

// mayGrant checks creation rights for user with rights r.
func (s *Service) mayGrant(a Actor, user string, r Rights) error {
	if err := s.mayManage(a); err != nil {
		return err
	}
	if a.Local {
		return nil
	}
	if !a.Rights.Admin {
		if user != a.User {
			return forbiddenf("keys:self may only create keys for its own user %q", a.User)
		}
		if r.Admin {
			return forbiddenf("keys:self may never grant keys:admin")
		}
		if !a.Rights.Covers(r) {
			return forbiddenf("keys:self may not grant rights wider than its own (%s)", strings.Join(a.Rights.Strings(), ", "))
		}
		return nil
	}
	if s.SelfServiceOnly && user != a.User {
		return forbiddenf("self-service only: keys may be created only for your own user %q", a.User)
	}
	return nil
}
