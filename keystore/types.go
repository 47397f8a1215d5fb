// The records a Store keeps (keys, audit events, usage, user limits) and the
// filters that select them.

package keystore

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"strings"
	"time"
)

// Status of a key, always derived from its timestamps.
type Status string

const (
	StatusActive  Status = "active"
	StatusExpired Status = "expired"
	StatusRevoked Status = "revoked"
)

// ParseStatus validates a status filter value.
func ParseStatus(s string) (Status, error) {
	switch Status(s) {
	case StatusActive, StatusExpired, StatusRevoked:
		return Status(s), nil
	}
	return "", fmt.Errorf("status %q must be active, expired or revoked", s)
}

// Rate is a per-key rate limit: Limit requests per Per.
type Rate struct {
	Limit int64         `json:"limit"`
	Per   time.Duration `json:"-"`
}

// Quota is a per-key request budget per UTC calendar day or month.
type Quota struct {
	Limit  int64  `json:"limit"`
	Period string `json:"period"` // "day" or "month"
}

// Key is a stored API key. It never holds the secret, only its digest.
type Key struct {
	ID          string
	Name        string
	Description string
	User        string
	Rights      []string
	Start       string
	Digest      Digest
	Imported    bool
	CreatedAt   time.Time
	CreatedBy   string
	ExpiresAt   *time.Time
	RevokedAt   *time.Time
	LastUsedAt  *time.Time
	Rate        *Rate
	Quota       *Quota
	// AllowedIPs are the client addresses the key works from, as canonical
	// prefixes ("192.0.2.7/32", "2001:db8::/48"); empty means anywhere.
	AllowedIPs []string
	// Environments are the handler environments that accept the key;
	// empty means only handlers without an environment.
	Environments []string

	// PrevDigest is the digest replaced by the last rotation; it keeps
	// working until GraceUntil. Zero when there is none.
	PrevDigest Digest
	GraceUntil *time.Time
}

// Clone returns a deep copy, so cached keys are never mutated in place.
func (k *Key) Clone() *Key {
	c := *k
	c.Rights = append([]string(nil), k.Rights...)
	c.AllowedIPs = cloneStrings(k.AllowedIPs)
	c.Environments = cloneStrings(k.Environments)
	c.ExpiresAt = cloneTime(k.ExpiresAt)
	c.RevokedAt = cloneTime(k.RevokedAt)
	c.LastUsedAt = cloneTime(k.LastUsedAt)
	c.GraceUntil = cloneTime(k.GraceUntil)
	c.Rate, c.Quota = cloneRate(k.Rate), cloneQuota(k.Quota)
	return &c
}

func cloneRate(r *Rate) *Rate {
	if r == nil {
		return nil
	}
	c := *r
	return &c
}

func cloneQuota(q *Quota) *Quota {
	if q == nil {
		return nil
	}
	c := *q
	return &c
}

// Clone returns a deep copy.
func (u UserLimits) Clone() UserLimits {
	return UserLimits{Rate: cloneRate(u.Rate), Quota: cloneQuota(u.Quota)}
}

func cloneStrings(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return append([]string(nil), s...)
}

func cloneTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	c := *t
	return &c
}

// Status derives the key's status at now.
func (k *Key) Status(now time.Time) Status {
	switch {
	case k.RevokedAt != nil && !now.Before(*k.RevokedAt):
		return StatusRevoked
	case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
		return StatusExpired
	}
	return StatusActive
}

// Accepts reports whether a presented digest opens this key at now: the
// current digest, or the previous one while the rotation grace lasts, and
// only while the key is active. Comparisons are constant-time.
func (k *Key) Accepts(d Digest, now time.Time) bool {
	if k.Status(now) != StatusActive {
		return false
	}
	if subtle.ConstantTimeCompare(k.Digest[:], d[:]) == 1 {
		return true
	}
	return !k.PrevDigest.IsZero() && k.GraceUntil != nil && now.Before(*k.GraceUntil) &&
		subtle.ConstantTimeCompare(k.PrevDigest[:], d[:]) == 1
}

// NewID returns a new key id, "key_" and 20 base62 characters.
func NewID() (string, error) {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	var sb strings.Builder
	sb.WriteString("key_")
	for _, c := range b {
		sb.WriteByte(base62[int(c)%62])
	}
	return sb.String(), nil
}

// Page sizes of ListKeys and ListAudit: a Limit of 0 means DefaultPageSize,
// stores return at most MaxPageSize items (see PageSize), and the Service and
// the admin API refuse a larger limit.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// PageSize is the number of items a store returns for a filter's Limit:
// DefaultPageSize for 0 (or less), at most MaxPageSize.
func PageSize(limit int) int {
	switch {
	case limit <= 0:
		return DefaultPageSize
	case limit > MaxPageSize:
		return MaxPageSize
	}
	return limit
}

// ListFilter selects keys for Store.ListKeys. Empty fields match all.
type ListFilter struct {
	User string
	Name string
	// CreatedBy selects the keys created by that key id (or "local").
	CreatedBy string
	Status    Status    // evaluated at Now
	Now       time.Time // for Status
	Limit     int       // 1..MaxPageSize; 0 means DefaultPageSize
	Cursor    string    // opaque; "" starts at the beginning
}

// AuditEvent is one entry of the audit log. Details never hold a secret.
type AuditEvent struct {
	Seq     int64          `json:"-"`
	At      time.Time      `json:"at"`
	Actor   string         `json:"actor"`
	Action  string         `json:"action"`
	KeyID   string         `json:"key_id"`
	Details map[string]any `json:"details"`
}

// AuditFilter selects audit events, newest first.
type AuditFilter struct {
	KeyID  string
	Limit  int
	Cursor string
}

// UsageDelta is a count of requests of one key on one UTC day.
type UsageDelta struct {
	KeyID    string
	Day      time.Time // midnight UTC
	Requests int64
	LastUsed time.Time
}

// DayUsage is the total of one key on one UTC day.
type DayUsage struct {
	Day      time.Time
	Requests int64
	// By splits Requests by area or answer class (Service.UsageBy); nil
	// elsewhere.
	By map[string]int64
}

// CreateLimits are the caps Store.CreateKey checks atomically with the
// insert. Zero means no cap.
type CreateLimits struct {
	// MaxActive is the licence: active keys in all.
	MaxActive int
	// MaxActivePerUser caps the active keys of the new key's user.
	MaxActivePerUser int
}

// UserLimits are a rate and/or quota shared by all keys of one run-as user,
// on top of each key's own (docs/design.md §2).
type UserLimits struct {
	Rate  *Rate
	Quota *Quota
}

// IsZero reports whether the limits limit nothing.
func (u UserLimits) IsZero() bool { return u.Rate == nil && u.Quota == nil }
