package keystore

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Audit actions written by Service.
const (
	ActionCreate       = "create"
	ActionImport       = "import"
	ActionUpdate       = "update"
	ActionRotate       = "rotate"
	ActionRevoke       = "revoke"
	ActionRevokeUser   = "revoke_user"
	ActionRevokeLeaked = "revoke_leaked"
)

// LocalActorID is the actor id of Caddy's local admin endpoint: audited and
// recorded as created_by "local" (docs/design.md §4).
const LocalActorID = "local"

// Limits of the admin API inputs.
const (
	maxNameLen        = 200
	maxDescriptionLen = 2000
	maxUserLen        = 200
	maxRights         = 100
	maxUsageDays      = 366
	defaultUsageDays  = 30
	// MaxGrace bounds the rotation grace: an old secret must not live on
	// for months after its replacement.
	MaxGrace = 30 * 24 * time.Hour
	// DefaultMaxKeysPerUser is the app's max_keys_per_user when unset.
	DefaultMaxKeysPerUser = 25
	// MaxLeakedKeys bounds one revoke-leaked call.
	MaxLeakedKeys = 1000
)

// Nullable is a JSON field of a PATCH body with three states: absent
// (Set false), null (Set and Null) and a value.
type Nullable[T any] struct {
	Set   bool
	Null  bool
	Value T
}

// UnmarshalJSON implements json.Unmarshaler; it is called only for fields
// present in the body, null included.
func (n *Nullable[T]) UnmarshalJSON(b []byte) error {
	n.Set = true
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		n.Null = true
		return nil
	}
	return json.Unmarshal(b, &n.Value)
}

// Of returns a Nullable holding v.
func Of[T any](v T) Nullable[T] { return Nullable[T]{Set: true, Value: v} }

// Null returns an explicit null.
func Null[T any]() Nullable[T] { return Nullable[T]{Set: true, Null: true} }

// RateSpec is a rate limit as the admin API spells it: {"limit":100,"per":"1m"}.
type RateSpec struct {
	Limit int64  `json:"limit"`
	Per   string `json:"per"`
}

// KeySpec holds the create fields (docs/design.md §4).
type KeySpec struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	User        string    `json:"user"`
	Rights      []string  `json:"rights"`
	ExpiresAt   string    `json:"expires_at"` // RFC 3339
	ExpiresIn   string    `json:"expires_in"` // Go duration
	Rate        *RateSpec `json:"rate"`
	Quota       *Quota    `json:"quota"`
	// AllowedIPs and Environments are the key's policy (docs/design.md §2).
	AllowedIPs   []string `json:"allowed_ips"`
	Environments []string `json:"environments"`
}

// ImportSpec is a KeySpec plus the outside key value (APIKey) or its
// SHA-256 hex digest (SHA256), exactly one of them.
type ImportSpec struct {
	KeySpec
	APIKey string `json:"apikey"`
	SHA256 string `json:"sha256"`
}

// KeyPatch is the body of PATCH /keys/{id}. Absent fields are unchanged;
// null clears rate, quota, expires_at (and description).
type KeyPatch struct {
	Name        Nullable[string]   `json:"name"`
	Description Nullable[string]   `json:"description"`
	Rights      Nullable[[]string] `json:"rights"`
	Rate        Nullable[RateSpec] `json:"rate"`
	Quota       Nullable[Quota]    `json:"quota"`
	ExpiresAt   Nullable[string]   `json:"expires_at"`
	// null or [] clears them.
	AllowedIPs   Nullable[[]string] `json:"allowed_ips"`
	Environments Nullable[[]string] `json:"environments"`
}

// RotateSpec is the body of POST /keys/{id}/rotate.
type RotateSpec struct {
	// Grace keeps the old secret working this long (Go duration); "" or
	// "0s" stops it at once.
	Grace string `json:"grace"`
}

// LicenseInfo is the answer of GET /license. Limit 0 means no limit.
type LicenseInfo struct {
	Limit int
	InUse int
}

// Service is the admin policy on top of a Store: validation, licence,
// self-service and escalation rules, audit and cache invalidation. It has
// no HTTP or Caddy dependency; package admin serves it over HTTP.
type Service struct {
	// Store holds the keys. Required.
	Store Store
	// Prefix of generated keys; "" means DefaultPrefix.
	Prefix string
	// License caps active keys; 0 means no cap.
	License int
	// Areas are the configured areas; nil accepts any area name.
	Areas *Areas
	// SelfServiceOnly restricts even keys:admin keys to creating keys for
	// their own user (the local endpoint is exempt).
	SelfServiceOnly bool
	// MaxKeysPerUser caps the active keys of one run-as user, so one user
	// cannot take the whole licence; 0 means no cap.
	MaxKeysPerUser int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Invalidator evicts cached digests after every change; may be nil.
	Invalidator Invalidator
	// Pending adds this instance's unflushed usage to reports; may be nil.
	Pending PendingUsage
	// Logger receives failures that cannot be returned (an audit write
	// failing after the change was stored); nil discards them.
	Logger *zap.Logger
	// OnAudit are called with every audit event after it is stored, in
	// order, before the call that caused it returns (the apikey.audit
	// logger, webhooks). Details never hold a secret.
	OnAudit []func(context.Context, AuditEvent)
}

// Clock returns the service's current time in UTC, not truncated (usage days,
// licence counts and list filters use it as is); the timestamps the service
// stores come from now, which truncates it to the second.
func (s *Service) Clock() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Service) now() time.Time { return s.Clock().Truncate(time.Second) }

func (s *Service) prefix() string {
	if s.Prefix == "" {
		return DefaultPrefix
	}
	return s.Prefix
}

func (s *Service) areaKnown() func(string) bool {
	if s.Areas == nil {
		return nil
	}
	return s.Areas.Has
}

// ---- side effects ----

// invalidate evicts every digest (current and previous) of the keys.
func (s *Service) invalidate(keys ...*Key) {
	if s.Invalidator == nil {
		return
	}
	var ds []Digest
	for _, k := range keys {
		if k == nil {
			continue
		}
		for _, d := range []Digest{k.Digest, k.PrevDigest} {
			if !d.IsZero() {
				ds = append(ds, d)
			}
		}
	}
	if len(ds) > 0 {
		s.Invalidator.Invalidate(ds...)
	}
}

// audit appends an event. The change it records is already stored, so a
// failure is logged rather than returned: the caller must still learn the
// result (a created key's secret exists only in this response).
func (s *Service) audit(ctx context.Context, a Actor, action, keyID string, details map[string]any, at time.Time) {
	if details == nil {
		details = map[string]any{}
	}
	e := AuditEvent{At: at, Actor: a.ID, Action: action, KeyID: keyID, Details: details}
	if err := s.Store.AppendAudit(context.WithoutCancel(ctx), e); err != nil && s.Logger != nil {
		s.Logger.Error("writing audit event failed",
			zap.String("action", action), zap.String("key_id", keyID), zap.String("actor", a.ID), zap.Error(err))
	}
	for _, fn := range s.OnAudit {
		fn(context.WithoutCancel(ctx), e)
	}
}

// FormatDuration prints d compactly, without trailing zero units: "1s",
// "1m", "1h30m", "24h" (time.Duration.String would print "1m0s").
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
