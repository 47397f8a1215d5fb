package keystore

import "time"

// The request path (caddymodule) and the admin API talk to limits, metering
// and caches only through these small interfaces, so each can be built and
// tested on its own.

// Invalidator evicts cached lookups of digests whose key changed (revoked,
// rotated, rights or limits changed). Service calls it after every mutation.
type Invalidator interface {
	Invalidate(digests ...Digest)
}

// Decision is the outcome of a limits check.
type Decision struct {
	Allowed bool
	// Code is "rate_limited" or "quota_exceeded" when not allowed.
	Code string
	// RetryAfter is how long until a retry can succeed (not allowed only).
	RetryAfter time.Duration
	// Limited reports whether any limit applies; then Limit, Remaining and
	// Reset fill the RateLimit-* response headers (the tightest limit).
	Limited   bool
	Limit     int64
	Remaining int64
	Reset     time.Duration
}

// Admitter decides whether a request of an authenticated key may go on
// (DESIGN §1 step 6). It must not count rejected requests.
type Admitter interface {
	Admit(k *Key, now time.Time) Decision
}

// UsageCounter counts an admitted request (DESIGN §1 step 7). It is on the
// hot path: no allocation, no lock shared across keys.
type UsageCounter interface {
	Count(keyID string, now time.Time)
}

// PendingUsage reports counts of this instance not yet flushed to the store,
// so usage reports are exact at once.
type PendingUsage interface {
	PendingUsage(keyID string) []UsageDelta
}
