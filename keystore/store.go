package keystore

import (
	"context"
	"time"
)

// Store holds keys, the audit log and usage totals. Implementations are
// storage primitives only: policy (licence, self-service, escalation) lives in
// Service. All methods are safe for concurrent use.
type Store interface {
	DigestLookup
	UsageWriter
	UsageReader
	UserLimitsReader
	Outbox

	// SetUserLimits stores the limits of user, replacing any, and announces
	// the change like a change of each of the user's keys (cached keys of
	// the user are evicted on every instance). Zero limits are an error:
	// use DeleteUserLimits.
	SetUserLimits(ctx context.Context, user string, l UserLimits) error
	// DeleteUserLimits removes the limits of user, if any, announced
	// likewise.
	DeleteUserLimits(ctx context.Context, user string) error

	// CreateKey inserts k. If lim.MaxActive > 0 and that many keys are
	// already active at now, it fails with ErrLicenseExhausted; if
	// lim.MaxActivePerUser > 0 and k.User holds that many, with
	// ErrUserKeysExhausted. The counts and the insert are atomic. A
	// duplicate id or digest is ErrConflict.
	CreateKey(ctx context.Context, k *Key, lim CreateLimits, now time.Time) error
	// GetKey returns the key with that id, or ErrNotFound.
	GetKey(ctx context.Context, id string) (*Key, error)
	// ListKeys returns keys matching f in a stable order (creation order)
	// and the cursor of the next page ("" at the end).
	ListKeys(ctx context.Context, f ListFilter) ([]*Key, string, error)
	// UpdateKey applies fn to the stored key atomically and saves the
	// result. fn may change anything but ID; a digest change that collides
	// with another key is ErrConflict. Returns the saved key.
	UpdateKey(ctx context.Context, id string, fn func(*Key) error) (*Key, error)
	// RevokeUser sets RevokedAt=at on every unrevoked key of user and
	// returns the keys it revoked.
	RevokeUser(ctx context.Context, user string, at time.Time) ([]*Key, error)
	// UsageTotals returns, for every id with requests in [from, to] (days,
	// UTC), the sum of its stored per-day totals: the licence report.
	UsageTotals(ctx context.Context, from, to time.Time) (map[string]int64, error)
	// UsagePrefixed returns the stored per-day totals in [from, to] (days,
	// UTC; only days with requests, ascending) of every usage id that
	// starts with prefix: the parts of a key's usage (PartPrefix).
	UsagePrefixed(ctx context.Context, prefix string, from, to time.Time) (map[string][]DayUsage, error)
	// CountActive counts the keys active at now.
	CountActive(ctx context.Context, now time.Time) (int, error)

	// AppendAudit records an event.
	AppendAudit(ctx context.Context, e AuditEvent) error
	// ListAudit returns events matching f, newest first, and the next cursor.
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, string, error)

	// Close releases the store.
	Close() error
}

// The request path needs only parts of a Store; each consumer names the
// part it uses, so it can be built and tested against that alone.

// DigestLookup finds keys by digest (the Authenticator).
type DigestLookup interface {
	// LookupDigest returns the key whose current or previous digest is d,
	// or ErrNotFound. The caller decides with Key.Accepts.
	LookupDigest(ctx context.Context, d Digest) (*Key, error)
}

// UserLimitsReader reads per-user limits (the Authenticator, which loads
// them with the key).
type UserLimitsReader interface {
	// UserLimits returns the limits of user; zero limits when it has none.
	UserLimits(ctx context.Context, user string) (UserLimits, error)
}

// KeyWithUserLimitsLookup is implemented by stores that read a key by
// digest and its user's limits in one round trip (Postgres); the
// Authenticator uses it when the store is also its UserLimitsReader.
type KeyWithUserLimitsLookup interface {
	// LookupDigestWithUserLimits is LookupDigest and UserLimits of the
	// key's user, read together.
	LookupDigestWithUserLimits(ctx context.Context, d Digest) (*Key, UserLimits, error)
}

// UsageWriter stores usage counts (the Meter).
type UsageWriter interface {
	// AddUsage adds a batch of usage deltas in one transaction. batchID
	// makes it idempotent: a batch already applied is skipped silently.
	AddUsage(ctx context.Context, batchID string, deltas []UsageDelta) error
}

// UsageReader reads stored usage totals (the Limiter's quotas, reports).
type UsageReader interface {
	// Usage returns the stored per-day totals of a key in [from, to] (days,
	// UTC), only days with requests, ascending.
	Usage(ctx context.Context, id string, from, to time.Time) ([]DayUsage, error)
}

// Invalidator evicts cached lookups of digests whose key changed (revoked,
// rotated, rights or limits changed). Service calls it after every mutation.
type Invalidator interface {
	Invalidate(digests ...Digest)
}

// PendingUsage reports counts of this instance not yet flushed to the store,
// so usage reports are exact at once.
type PendingUsage interface {
	PendingUsage(keyID string) []UsageDelta
}

// ChangeFeed is an optional Store capability: a store shared by several
// instances (Postgres) announces changes made by any of them, so each
// instance can evict its cached copies.
type ChangeFeed interface {
	// WatchChanges calls evict with the current and previous digests of
	// every changed key until ctx is done.
	WatchChanges(ctx context.Context, evict func(digests []Digest)) FeedWatcher
}

// FeedWatcher reports on a running change feed.
type FeedWatcher interface {
	Stats() FeedStats
}

// FeedStats is a snapshot of a change feed's counters.
type FeedStats struct {
	// LastSeq is the last change sequence applied.
	LastSeq int64
	// Connected reports whether the feed's connection is up.
	Connected bool
	// Resyncs counts replays after a reconnect.
	Resyncs int64
	// Reconnects counts failed or lost connections.
	Reconnects int64
	// Notifications counts notifications received.
	Notifications int64
	// Changes counts changes applied.
	Changes int64
	// Lag is the time from the newest applied change's commit to its
	// replay here: the invalidation lag.
	Lag time.Duration
}
