package keystore

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ---- mutations ----

// Create generates a new key and stores its digest. It returns the stored
// key and the secret, which is never available again.
func (s *Service) Create(ctx context.Context, a Actor, spec KeySpec) (*Key, string, error) {
	now := s.now()
	k, details, err := s.specKey(ctx, a, spec, now)
	if err != nil {
		return nil, "", err
	}
	secret, err := GenerateKey(s.prefix())
	if err != nil {
		return nil, "", &ServiceError{Kind: KindInternal, Message: "generating a key failed", Err: err}
	}
	k.Digest = DigestOf(secret)
	k.Start = DisplayStart(secret)
	if err := s.insert(ctx, k, now); err != nil {
		return nil, "", err
	}
	s.audit(ctx, a, ActionCreate, k.ID, details, now)
	return k, secret, nil
}

// Import stores an outside key (its value checked with
// CheckImportStrength) or an outside SHA-256 digest.
func (s *Service) Import(ctx context.Context, a Actor, spec ImportSpec) (*Key, error) {
	now := s.now()
	var (
		digest Digest
		start  string
		source string
	)
	switch {
	case spec.APIKey != "" && spec.SHA256 != "":
		return nil, invalidf("give apikey or sha256, not both")
	case spec.APIKey != "":
		if err := CheckImportStrength(spec.APIKey); err != nil {
			return nil, &ServiceError{Kind: KindInvalid, Message: err.Error()}
		}
		digest, start, source = DigestOf(spec.APIKey), DisplayStart(spec.APIKey), "apikey"
	case spec.SHA256 != "":
		d, err := ParseDigestHex(spec.SHA256)
		if err != nil {
			return nil, &ServiceError{Kind: KindInvalid, Message: err.Error()}
		}
		if d.IsZero() {
			return nil, invalidf("sha256 must not be all zeros")
		}
		digest, source = d, "sha256"
	default:
		return nil, invalidf("give the key to import as apikey, or its SHA-256 hex digest as sha256")
	}
	k, details, err := s.specKey(ctx, a, spec.KeySpec, now)
	if err != nil {
		return nil, err
	}
	k.Digest, k.Start, k.Imported = digest, start, true
	details["source"] = source
	if err := s.insert(ctx, k, now); err != nil {
		if KindOf(err) == KindConflict {
			return nil, conflictf("this key is already stored (as this or another key id)")
		}
		return nil, err
	}
	s.audit(ctx, a, ActionImport, k.ID, details, now)
	return k, nil
}

func (s *Service) insert(ctx context.Context, k *Key, now time.Time) error {
	id, err := NewID()
	if err != nil {
		return &ServiceError{Kind: KindInternal, Message: "generating a key id failed", Err: err}
	}
	k.ID = id
	lim := CreateLimits{MaxActive: s.License, MaxActivePerUser: s.MaxKeysPerUser}
	if err := s.Store.CreateKey(ctx, k, lim, now); err != nil {
		return serviceStoreErr(err, "the new key")
	}
	s.invalidate(k)
	return nil
}

// Update applies a PATCH. keys:self may not change keys (docs/design.md §4 lets it
// create, list, show, rotate and revoke only).
func (s *Service) Update(ctx context.Context, a Actor, id string, p KeyPatch) (*Key, error) {
	if err := requireAdmin(a, "change keys (PATCH)"); err != nil {
		return nil, err
	}
	now := s.now()
	details := map[string]any{}
	var apply []func(k *Key)

	if p.Name.Set {
		if p.Name.Null {
			return nil, invalidf("name cannot be null")
		}
		if err := checkAdminText("name", p.Name.Value, maxNameLen, true); err != nil {
			return nil, err
		}
		v := p.Name.Value
		details["name"] = v
		apply = append(apply, func(k *Key) { k.Name = v })
	}
	if p.Description.Set {
		v := p.Description.Value // null clears
		if err := checkAdminText("description", v, maxDescriptionLen, false); err != nil {
			return nil, err
		}
		details["description"] = v
		apply = append(apply, func(k *Key) { k.Description = v })
	}
	if p.Rights.Set {
		if p.Rights.Null {
			return nil, invalidf("rights cannot be null; a key must hold at least one right")
		}
		r, err := s.parseRights(p.Rights.Value)
		if err != nil {
			return nil, err
		}
		v := r.Strings()
		details["rights"] = v
		apply = append(apply, func(k *Key) { k.Rights = append([]string(nil), v...) })
	}
	if p.Rate.Set {
		var rate *Rate
		if !p.Rate.Null {
			var err error
			if rate, err = ParseRate(p.Rate.Value); err != nil {
				return nil, err
			}
			details["rate"] = map[string]any{"limit": rate.Limit, "per": FormatDuration(rate.Per)}
		} else {
			details["rate"] = nil
		}
		apply = append(apply, func(k *Key) {
			if rate == nil {
				k.Rate = nil
			} else {
				r := *rate
				k.Rate = &r
			}
		})
	}
	if p.Quota.Set {
		var quota *Quota
		if !p.Quota.Null {
			var err error
			if quota, err = ValidateQuota(p.Quota.Value); err != nil {
				return nil, err
			}
			details["quota"] = map[string]any{"limit": quota.Limit, "period": quota.Period}
		} else {
			details["quota"] = nil
		}
		apply = append(apply, func(k *Key) {
			if quota == nil {
				k.Quota = nil
			} else {
				q := *quota
				k.Quota = &q
			}
		})
	}
	if p.AllowedIPs.Set {
		v, err := ParseAllowedIPs(p.AllowedIPs.Value) // null: Value is nil
		if err != nil {
			return nil, err
		}
		details["allowed_ips"] = v
		apply = append(apply, func(k *Key) { k.AllowedIPs = cloneStrings(v) })
	}
	if p.Environments.Set {
		v, err := ValidateEnvironments(p.Environments.Value)
		if err != nil {
			return nil, err
		}
		details["environments"] = v
		apply = append(apply, func(k *Key) { k.Environments = cloneStrings(v) })
	}
	var expires *time.Time
	if p.ExpiresAt.Set {
		if !p.ExpiresAt.Null {
			t, err := parseExpiresAt(p.ExpiresAt.Value)
			if err != nil {
				return nil, err
			}
			expires = &t
			details["expires_at"] = t.Format(time.RFC3339)
		} else {
			details["expires_at"] = nil
		}
		apply = append(apply, func(k *Key) { k.ExpiresAt = cloneTime(expires) })
	}
	if len(apply) == 0 {
		return nil, invalidf("nothing to change: give at least one of name, description, rights, rate, quota, expires_at, allowed_ips, environments")
	}

	old, err := s.Store.GetKey(ctx, id)
	if err != nil {
		return nil, serviceStoreErr(err, "key "+id)
	}
	// Reactivating an expired key takes a licence seat. The count and the
	// update are not atomic (the Store has no primitive for it); the window
	// is one admin call wide.
	if s.License > 0 && p.ExpiresAt.Set && old.RevokedAt == nil && old.Status(now) == StatusExpired &&
		(expires == nil || expires.After(now)) {
		n, err := s.Store.CountActive(ctx, now)
		if err != nil {
			return nil, serviceStoreErr(err, "active keys")
		}
		if n >= s.License {
			return nil, &ServiceError{Kind: KindLicense, Message: fmt.Sprintf("the license allows %d active keys and all are in use; extending expired key %s would exceed it", s.License, id)}
		}
	}
	var before *Key
	k, err := s.Store.UpdateKey(ctx, id, func(k *Key) error {
		if k.RevokedAt != nil {
			return conflictf("key %s is revoked; a revoked key cannot be changed", id)
		}
		before = k.Clone()
		for _, f := range apply {
			f(k)
		}
		return nil
	})
	if err != nil {
		return nil, serviceStoreErr(err, "key "+id)
	}
	s.invalidate(before, k)
	s.audit(ctx, a, ActionUpdate, id, details, now)
	return k, nil
}

// Rotate issues a new secret for key id. With a grace, the old secret keeps
// working until now+grace; without, it stops at once. Any older previous
// secret stops in both cases.
func (s *Service) Rotate(ctx context.Context, a Actor, id string, spec RotateSpec) (*Key, string, error) {
	if err := s.mayManage(a); err != nil {
		return nil, "", err
	}
	var grace time.Duration
	if spec.Grace != "" {
		d, err := time.ParseDuration(spec.Grace)
		if err != nil {
			return nil, "", invalidf(`grace %q is not a Go duration such as "24h"`, spec.Grace)
		}
		if d < 0 || d > MaxGrace {
			return nil, "", invalidf("grace must be between 0s and %s, got %q", FormatDuration(MaxGrace), spec.Grace)
		}
		grace = d
	}
	now := s.now()
	secret, err := GenerateKey(s.prefix())
	if err != nil {
		return nil, "", &ServiceError{Kind: KindInternal, Message: "generating a key failed", Err: err}
	}
	var before *Key
	k, err := s.Store.UpdateKey(ctx, id, func(k *Key) error {
		if err := mayChange(a, k); err != nil {
			return err
		}
		if k.RevokedAt != nil {
			return conflictf("key %s is revoked; a revoked key cannot be rotated", id)
		}
		before = k.Clone()
		if grace > 0 {
			until := now.Add(grace)
			k.PrevDigest, k.GraceUntil = k.Digest, &until
		} else {
			k.PrevDigest, k.GraceUntil = Digest{}, nil
		}
		k.Digest = DigestOf(secret)
		k.Start = DisplayStart(secret)
		k.Imported = false
		return nil
	})
	if err != nil {
		return nil, "", serviceStoreErr(err, "key "+id)
	}
	s.invalidate(before, k)
	details := map[string]any{}
	if grace > 0 {
		details["grace"] = FormatDuration(grace)
		details["grace_until"] = k.GraceUntil.Format(time.RFC3339)
	}
	s.audit(ctx, a, ActionRotate, id, details, now)
	s.withPendingLastUse(k)
	return k, secret, nil
}

// Revoke revokes key id. It is idempotent: revoked_at stays the time of the
// first revocation.
func (s *Service) Revoke(ctx context.Context, a Actor, id string) (*Key, error) {
	if err := s.mayManage(a); err != nil {
		return nil, err
	}
	now := s.now()
	already := false
	k, err := s.Store.UpdateKey(ctx, id, func(k *Key) error {
		if err := mayChange(a, k); err != nil {
			return err
		}
		if k.RevokedAt != nil {
			already = true
			return nil
		}
		t := now
		k.RevokedAt = &t
		return nil
	})
	if err != nil {
		return nil, serviceStoreErr(err, "key "+id)
	}
	s.invalidate(k)
	details := map[string]any{}
	if already {
		details["already_revoked"] = true
	}
	// Also when already revoked: a cascade cut short by a store failure
	// finishes on the retry.
	n, cerr := s.revokeCreated(ctx, a, id, now)
	if n > 0 {
		details["revoked_created"] = n
	}
	s.audit(ctx, a, ActionRevoke, id, details, now)
	if cerr != nil {
		return nil, cerr
	}
	s.withPendingLastUse(k)
	return k, nil
}

// revokeCreated revokes, transitively, every key that key root created
// (created_by), so a revoked keys:self key leaves no children behind. Each
// revocation is audited with the key that created it and the root. Keys
// already revoked are walked through too: their children may not be.
func (s *Service) revokeCreated(ctx context.Context, a Actor, root string, now time.Time) (int, error) {
	if root == "" || root == LocalActorID {
		return 0, nil
	}
	queue := []string{root}
	seen := map[string]bool{root: true}
	n := 0
	for len(queue) > 0 {
		parent := queue[0]
		queue = queue[1:]
		for cursor := ""; ; {
			children, next, err := s.Store.ListKeys(ctx, ListFilter{CreatedBy: parent, Limit: MaxPageSize, Cursor: cursor, Now: now})
			if err != nil {
				return n, serviceStoreErr(err, "the keys created by "+parent)
			}
			for _, c := range children {
				if seen[c.ID] {
					continue
				}
				seen[c.ID] = true
				queue = append(queue, c.ID)
				if c.RevokedAt != nil {
					continue
				}
				revoked := false
				k, err := s.Store.UpdateKey(ctx, c.ID, func(k *Key) error {
					if k.RevokedAt == nil {
						t := now
						k.RevokedAt, revoked = &t, true
					}
					return nil
				})
				if err != nil {
					return n, serviceStoreErr(err, "key "+c.ID)
				}
				if !revoked {
					continue
				}
				n++
				s.invalidate(k)
				s.audit(ctx, a, ActionRevoke, c.ID, map[string]any{"cascade": true, "created_by": parent, "revoked_with": root}, now)
			}
			if next == "" {
				break
			}
			cursor = next
		}
	}
	return n, nil
}

// RevokeUser revokes every key of user and returns how many it revoked.
func (s *Service) RevokeUser(ctx context.Context, a Actor, user string) (int, error) {
	if err := requireAdmin(a, "revoke all keys of a user"); err != nil {
		return 0, err
	}
	if err := checkAdminText("user", user, maxUserLen, true); err != nil {
		return 0, err
	}
	now := s.now()
	keys, err := s.Store.RevokeUser(ctx, user, now)
	if err != nil {
		return 0, serviceStoreErr(err, "user "+user)
	}
	s.invalidate(keys...)
	if len(keys) == 0 {
		s.audit(ctx, a, ActionRevokeUser, "", map[string]any{"user": user, "revoked": 0}, now)
	}
	for _, k := range keys {
		s.audit(ctx, a, ActionRevokeUser, k.ID, map[string]any{"user": user, "revoked": len(keys)}, now)
	}
	total := len(keys)
	for _, k := range keys {
		n, err := s.revokeCreated(ctx, a, k.ID, now)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// RevokeLeaked takes key values as a secret scanner reports them and
// revokes the keys they open. A value that is the previous secret of a
// rotated key still in its grace ends the grace instead, so the new secret
// keeps working. Values that open nothing are ignored. It returns how many
// keys it revoked or cut off.
func (s *Service) RevokeLeaked(ctx context.Context, a Actor, values []string) (int, error) {
	if err := requireAdmin(a, "revoke leaked keys"); err != nil {
		return 0, err
	}
	if len(values) > MaxLeakedKeys {
		return 0, invalidf("keys has %d entries; at most %d are allowed per call", len(values), MaxLeakedKeys)
	}
	now := s.now()
	seen := map[Digest]bool{}
	n := 0
	for _, v := range values {
		if len(v) > MaxKeyLen || v == "" {
			continue
		}
		d := DigestOf(v)
		if seen[d] {
			continue
		}
		seen[d] = true
		found, err := s.Store.LookupDigest(ctx, d)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return n, serviceStoreErr(err, "leaked key")
		}
		var before *Key
		action := ""
		k, err := s.Store.UpdateKey(ctx, found.ID, func(k *Key) error {
			before, action = k.Clone(), ""
			switch {
			case k.RevokedAt != nil:
			case k.Digest == d:
				t := now
				k.RevokedAt = &t
				action = "revoked"
			case k.PrevDigest == d && k.GraceUntil != nil && now.Before(*k.GraceUntil):
				k.PrevDigest, k.GraceUntil = Digest{}, nil
				action = "grace_ended"
			}
			return nil
		})
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return n, serviceStoreErr(err, "leaked key")
		}
		if action == "" {
			continue
		}
		n++
		s.invalidate(before, k)
		details := map[string]any{"result": action}
		var cerr error
		if action == "revoked" {
			var c int
			c, cerr = s.revokeCreated(ctx, a, k.ID, now)
			if c > 0 {
				details["revoked_created"] = c
			}
		}
		s.audit(ctx, a, ActionRevokeLeaked, k.ID, details, now)
		if cerr != nil {
			return n, cerr
		}
	}
	return n, nil
}

// keyDetails describes a key for the audit log: never a secret, a digest
// or the display start.
func keyDetails(k *Key) map[string]any {
	d := map[string]any{
		"name":   k.Name,
		"user":   k.User,
		"rights": append([]string(nil), k.Rights...),
	}
	if k.ExpiresAt != nil {
		d["expires_at"] = k.ExpiresAt.UTC().Format(time.RFC3339)
	}
	if k.Rate != nil {
		d["rate"] = map[string]any{"limit": k.Rate.Limit, "per": FormatDuration(k.Rate.Per)}
	}
	if k.Quota != nil {
		d["quota"] = map[string]any{"limit": k.Quota.Limit, "period": k.Quota.Period}
	}
	if len(k.AllowedIPs) > 0 {
		d["allowed_ips"] = append([]string(nil), k.AllowedIPs...)
	}
	if len(k.Environments) > 0 {
		d["environments"] = append([]string(nil), k.Environments...)
	}
	return d
}
