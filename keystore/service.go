package keystore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

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
	// Key is the acting key (nil for the local endpoint): what a keys:self
	// key creates is bounded by its limits, expiry, allowed_ips and
	// environments.
	Key *Key
}

// LocalActor returns the actor of Caddy's local admin endpoint.
func LocalActor() Actor { return Actor{ID: LocalActorID, Local: true} }

// KeyActor returns the actor for an authenticated admin key.
func KeyActor(k *Key, rights Rights) Actor {
	return Actor{ID: k.ID, User: k.User, Rights: rights, Key: k}
}

func (a Actor) admin() bool { return a.Local || a.Rights.Admin }

// ErrorKind classifies a Service refusal; the admin API maps it to a status
// and an error code.
type ErrorKind uint8

const (
	// KindInternal is an unexpected failure (500).
	KindInternal ErrorKind = iota
	// KindInvalid is a bad request (400 invalid_request).
	KindInvalid
	// KindForbidden is an authorization refusal (403 forbidden).
	KindForbidden
	// KindNotFound is an unknown key (404 not_found).
	KindNotFound
	// KindConflict is a duplicate or a state conflict (409 conflict).
	KindConflict
	// KindLicense is an exhausted licence (409 license_exhausted).
	KindLicense
	// KindUnavailable is a store failure (503 store_unavailable).
	KindUnavailable
)

// ServiceError is every error Service returns. Message is meant for the
// client and names the rule that refused the call; Err is the cause, for
// logs only.
type ServiceError struct {
	Kind    ErrorKind
	Message string
	Err     error
}

func (e *ServiceError) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *ServiceError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNotFound) and friends work for service errors
// of the matching kind.
func (e *ServiceError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Kind == KindNotFound
	case ErrConflict:
		return e.Kind == KindConflict
	case ErrLicenseExhausted:
		return e.Kind == KindLicense
	case ErrUnavailable:
		return e.Kind == KindUnavailable
	}
	return false
}

// KindOf returns the kind of a Service error; errors that are not
// ServiceErrors are classified by the store sentinels they wrap.
func KindOf(err error) ErrorKind {
	var se *ServiceError
	switch {
	case errors.As(err, &se):
		return se.Kind
	case errors.Is(err, ErrNotFound):
		return KindNotFound
	case errors.Is(err, ErrUserKeysExhausted):
		return KindConflict
	case errors.Is(err, ErrLicenseExhausted):
		return KindLicense
	case errors.Is(err, ErrConflict):
		return KindConflict
	case errors.Is(err, ErrUnavailable):
		return KindUnavailable
	}
	return KindInternal
}

func invalidf(format string, args ...any) error {
	return &ServiceError{Kind: KindInvalid, Message: fmt.Sprintf(format, args...)}
}

func forbiddenf(format string, args ...any) error {
	return &ServiceError{Kind: KindForbidden, Message: fmt.Sprintf(format, args...)}
}

func conflictf(format string, args ...any) error {
	return &ServiceError{Kind: KindConflict, Message: fmt.Sprintf(format, args...)}
}

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

// serviceStoreErr translates a store error into a ServiceError.
func serviceStoreErr(err error, what string) error {
	var se *ServiceError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
		return se
	case errors.Is(err, ErrNotFound):
		return &ServiceError{Kind: KindNotFound, Message: what + " not found", Err: err}
	case errors.Is(err, ErrUserKeysExhausted):
		return &ServiceError{Kind: KindConflict, Message: what + ": its user already holds the most active keys that max_keys_per_user allows; revoke one of them first", Err: err}
	case errors.Is(err, ErrLicenseExhausted):
		return &ServiceError{Kind: KindLicense, Message: "the license is exhausted: every licensed key is in use; revoke a key or raise the license", Err: err}
	case errors.Is(err, ErrConflict):
		return &ServiceError{Kind: KindConflict, Message: what + " conflicts with an existing key", Err: err}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &ServiceError{Kind: KindUnavailable, Message: "the request was cancelled before the key store answered", Err: err}
	}
	return &ServiceError{Kind: KindUnavailable, Message: "the key store is unavailable; try again later", Err: err}
}

// cursorErr translates a list error: a cursor the store did not make
// (ErrInvalidCursor) is the caller's fault, anything else a store failure.
func cursorErr(err error, cursor, what string) error {
	if errors.Is(err, ErrInvalidCursor) {
		return &ServiceError{Kind: KindInvalid, Message: fmt.Sprintf("cursor %q is not a cursor this API returned; start without one", cursor), Err: err}
	}
	return serviceStoreErr(err, what)
}

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

// ---- validation ----

func checkAdminText(field, v string, max int, required bool) error {
	if required && strings.TrimSpace(v) == "" {
		return invalidf("%s is required", field)
	}
	if len(v) > max {
		return invalidf("%s is %d bytes long; at most %d are allowed", field, len(v), max)
	}
	if !utf8.ValidString(v) {
		return invalidf("%s must be valid UTF-8", field)
	}
	for _, c := range v {
		if unicode.IsControl(c) && (field != "description" || c != '\n' && c != '\t' && c != '\r') {
			return invalidf("%s must not contain control characters", field)
		}
	}
	return nil
}

func (s *Service) parseRights(list []string) (Rights, error) {
	if len(list) > maxRights {
		return Rights{}, invalidf("rights has %d entries; at most %d are allowed", len(list), maxRights)
	}
	r, err := ParseRights(list, s.areaKnown())
	if err != nil {
		msg := err.Error()
		if _, ok := errors.AsType[*UnknownAreaError](err); ok {
			msg += "; " + s.Areas.configured()
		}
		return r, &ServiceError{Kind: KindInvalid, Message: msg}
	}
	return r, nil
}

// ParseRate validates a rate limit: limit > 0 and per a positive Go duration.
func ParseRate(r RateSpec) (*Rate, error) {
	if r.Limit <= 0 {
		return nil, invalidf("rate.limit must be greater than 0, got %d", r.Limit)
	}
	if r.Per == "" {
		return nil, invalidf(`rate.per is required: a Go duration such as "1s" or "1m"`)
	}
	d, err := time.ParseDuration(r.Per)
	if err != nil {
		return nil, invalidf(`rate.per %q is not a Go duration such as "1s" or "1m"`, r.Per)
	}
	if d <= 0 {
		return nil, invalidf("rate.per must be positive, got %q", r.Per)
	}
	return &Rate{Limit: r.Limit, Per: d}, nil
}

// ValidateQuota validates a quota: limit > 0 and period day or month.
func ValidateQuota(q Quota) (*Quota, error) {
	if q.Limit <= 0 {
		return nil, invalidf("quota.limit must be greater than 0, got %d", q.Limit)
	}
	if q.Period != "day" && q.Period != "month" {
		return nil, invalidf(`quota.period must be "day" or "month", got %q`, q.Period)
	}
	return &q, nil
}

func parseExpiresAt(v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return t, invalidf("expires_at %q is not an RFC 3339 time such as 2026-12-31T23:59:59Z", v)
	}
	return t.UTC().Truncate(time.Second), nil
}

// specKey validates the create fields and returns the key to store
// (without id, digest and start) and the audit details.
func (s *Service) specKey(a Actor, spec KeySpec, now time.Time) (*Key, map[string]any, error) {
	if err := checkAdminText("name", spec.Name, maxNameLen, true); err != nil {
		return nil, nil, err
	}
	if err := checkAdminText("description", spec.Description, maxDescriptionLen, false); err != nil {
		return nil, nil, err
	}
	if err := checkAdminText("user", spec.User, maxUserLen, true); err != nil {
		return nil, nil, err
	}
	rights, err := s.parseRights(spec.Rights)
	if err != nil {
		return nil, nil, err
	}
	if err := s.mayGrant(a, spec.User, rights); err != nil {
		return nil, nil, err
	}
	k := &Key{
		Name:        spec.Name,
		Description: spec.Description,
		User:        spec.User,
		Rights:      rights.Strings(),
		CreatedAt:   now,
		CreatedBy:   a.ID,
	}
	switch {
	case spec.ExpiresAt != "" && spec.ExpiresIn != "":
		return nil, nil, invalidf("give expires_at or expires_in, not both")
	case spec.ExpiresAt != "":
		t, err := parseExpiresAt(spec.ExpiresAt)
		if err != nil {
			return nil, nil, err
		}
		if !t.After(now) {
			return nil, nil, invalidf("expires_at %s is not in the future", spec.ExpiresAt)
		}
		k.ExpiresAt = &t
	case spec.ExpiresIn != "":
		d, err := time.ParseDuration(spec.ExpiresIn)
		if err != nil {
			return nil, nil, invalidf(`expires_in %q is not a Go duration such as "720h"`, spec.ExpiresIn)
		}
		if d < time.Second {
			return nil, nil, invalidf("expires_in must be at least 1s, got %q", spec.ExpiresIn)
		}
		t := now.Add(d)
		k.ExpiresAt = &t
	}
	if spec.Rate != nil {
		if k.Rate, err = ParseRate(*spec.Rate); err != nil {
			return nil, nil, err
		}
	}
	if spec.Quota != nil {
		if k.Quota, err = ValidateQuota(*spec.Quota); err != nil {
			return nil, nil, err
		}
	}
	if k.AllowedIPs, err = ParseAllowedIPs(spec.AllowedIPs); err != nil {
		return nil, nil, err
	}
	if k.Environments, err = ValidateEnvironments(spec.Environments); err != nil {
		return nil, nil, err
	}
	if !a.admin() && a.Key != nil {
		if err := boundChild(a.Key, k, now); err != nil {
			return nil, nil, err
		}
	}
	return k, keyDetails(k), nil
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

// ---- mutations ----

// Create generates a new key and stores its digest. It returns the stored
// key and the secret, which is never available again.
func (s *Service) Create(ctx context.Context, a Actor, spec KeySpec) (*Key, string, error) {
	now := s.now()
	k, details, err := s.specKey(a, spec, now)
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
	k, details, err := s.specKey(a, spec.KeySpec, now)
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

// ---- reads ----

// Get returns key id.
func (s *Service) Get(ctx context.Context, a Actor, id string) (*Key, error) {
	if err := s.mayManage(a); err != nil {
		return nil, err
	}
	k, err := s.Store.GetKey(ctx, id)
	if err != nil {
		return nil, serviceStoreErr(err, "key "+id)
	}
	if err := mayRead(a, k); err != nil {
		return nil, err
	}
	s.withPendingLastUse(k)
	return k, nil
}

// withPendingLastUse moves LastUsedAt forward to this instance's latest
// unflushed request, so "last used" is exact before the next flush.
func (s *Service) withPendingLastUse(k *Key) {
	if s.Pending == nil {
		return
	}
	for _, u := range s.Pending.PendingUsage(k.ID) {
		if u.LastUsed.IsZero() || (k.LastUsedAt != nil && !u.LastUsed.After(*k.LastUsedAt)) {
			continue
		}
		t := u.LastUsed.UTC().Truncate(time.Second)
		k.LastUsedAt = &t
	}
}

// List returns a page of keys and the next cursor ("" at the end). A
// keys:self actor sees only the keys of its own user.
func (s *Service) List(ctx context.Context, a Actor, f ListFilter) ([]*Key, string, error) {
	if err := s.mayManage(a); err != nil {
		return nil, "", err
	}
	if !a.admin() {
		if f.User != "" && f.User != a.User {
			return nil, "", forbiddenf("keys:self may only list keys of its own user %q", a.User)
		}
		f.User = a.User
	}
	if f.Limit < 0 || f.Limit > MaxPageSize {
		return nil, "", invalidf("limit must be between 1 and %d, got %d", MaxPageSize, f.Limit)
	}
	if f.Status != "" {
		if _, err := ParseStatus(string(f.Status)); err != nil {
			return nil, "", &ServiceError{Kind: KindInvalid, Message: err.Error()}
		}
	}
	f.Now = s.Clock()
	keys, next, err := s.Store.ListKeys(ctx, f)
	if err != nil {
		return nil, "", cursorErr(err, f.Cursor, "key list")
	}
	for _, k := range keys {
		s.withPendingLastUse(k)
	}
	return keys, next, nil
}

// ParseDay parses a YYYY-MM-DD day (UTC).
func ParseDay(field, v string) (time.Time, error) {
	t, err := time.Parse(time.DateOnly, v)
	if err != nil {
		return t, invalidf("%s %q is not a day such as 2026-11-23 (YYYY-MM-DD)", field, v)
	}
	return t, nil
}

// Usage returns the requests of key id per UTC day in [from, to], every day
// included (zero when idle), the stored totals plus this instance's
// unflushed counts, read consistently with each other when Pending is a
// Meter (see Meter.PendingUsageAfter). Zero from/to mean the last 30 days up
// to today.
func (s *Service) Usage(ctx context.Context, a Actor, id string, from, to time.Time) ([]DayUsage, error) {
	if _, err := s.Get(ctx, a, id); err != nil {
		return nil, err
	}
	today := startOfDayUTC(s.Clock())
	if to.IsZero() {
		to = today
	}
	if from.IsZero() {
		from = to.AddDate(0, 0, -(defaultUsageDays - 1))
	}
	from, to = startOfDayUTC(from), startOfDayUTC(to)
	if from.After(to) {
		return nil, invalidf("from %s is after to %s", from.Format(time.DateOnly), to.Format(time.DateOnly))
	}
	if to.Sub(from) >= maxUsageDays*24*time.Hour {
		return nil, invalidf("the range %s to %s is longer than %d days", from.Format(time.DateOnly), to.Format(time.DateOnly), maxUsageDays)
	}
	var stored []DayUsage
	read := func(ctx context.Context) (err error) {
		stored, err = s.Store.Usage(ctx, id, from, to)
		return err
	}
	// Reading the store and then the pending counts separately would miss
	// the counts of a flush committing in between (in neither) and count
	// twice a batch the store committed but has not acknowledged (in
	// both): a Meter reads its pending counts consistently with the store.
	var pending []UsageDelta
	var err error
	if p, ok := s.Pending.(interface {
		PendingUsageAfter(ctx context.Context, keyID string, from, to time.Time, read func(context.Context) error) ([]UsageDelta, error)
	}); ok {
		pending, err = p.PendingUsageAfter(ctx, id, from, to, read)
	} else if err = read(ctx); err == nil && s.Pending != nil {
		pending = s.Pending.PendingUsage(id)
	}
	if err != nil {
		return nil, serviceStoreErr(err, "usage of key "+id)
	}
	counts := map[time.Time]int64{}
	for _, u := range stored {
		counts[startOfDayUTC(u.Day)] += u.Requests
	}
	for _, u := range pending {
		d := startOfDayUTC(u.Day)
		if !d.Before(from) && !d.After(to) {
			counts[d] += u.Requests
		}
	}
	var out []DayUsage
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		out = append(out, DayUsage{Day: d, Requests: counts[d]})
	}
	return out, nil
}

func startOfDayUTC(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// LicenseStatus reports the licence limit and the keys active now (the
// method cannot be called License: that is the field).
func (s *Service) LicenseStatus(ctx context.Context, a Actor) (LicenseInfo, error) {
	if err := s.mayManage(a); err != nil {
		return LicenseInfo{}, err
	}
	n, err := s.Store.CountActive(ctx, s.Clock())
	if err != nil {
		return LicenseInfo{}, serviceStoreErr(err, "active keys")
	}
	return LicenseInfo{Limit: s.License, InUse: n}, nil
}

// Audit returns audit events, newest first, and the next cursor. keys:self
// may read only the events of one of its own keys (f.KeyID required).
func (s *Service) Audit(ctx context.Context, a Actor, f AuditFilter) ([]AuditEvent, string, error) {
	if err := s.mayManage(a); err != nil {
		return nil, "", err
	}
	if !a.admin() {
		if f.KeyID == "" {
			return nil, "", forbiddenf("keys:self may read the audit log only of its own keys; give ?key=<id>")
		}
		if _, err := s.Get(ctx, a, f.KeyID); err != nil {
			return nil, "", err
		}
	}
	if f.Limit < 0 || f.Limit > MaxPageSize {
		return nil, "", invalidf("limit must be between 1 and %d, got %d", MaxPageSize, f.Limit)
	}
	events, next, err := s.Store.ListAudit(ctx, f)
	if err != nil {
		return nil, "", cursorErr(err, f.Cursor, "audit log")
	}
	return events, next, nil
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
