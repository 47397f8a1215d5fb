// Package notify sends keygate's webhook events: key lifecycle events from
// the audit log (key.created, key.rotated, key.revoked) and conditions found
// by a periodic scan of the store (key.expiring, key.expired,
// quota.threshold, license.threshold). Every event goes first to the store's
// outbox, one delivery per destination, and is POSTed from there, signed,
// retried with exponential backoff until the destination answers 2xx. So
// nothing is lost across restarts and reloads, and instances sharing a store
// deliver each event once between them (at least once: a destination that
// accepted an event whose acknowledgement was lost gets it again, with the
// same id).
package notify

import (
	"crypto/rand"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/keystore"
)

// Event types.
const (
	EventKeyCreated       = "key.created"
	EventKeyRotated       = "key.rotated"
	EventKeyRevoked       = "key.revoked"
	EventKeyExpiring      = "key.expiring"
	EventKeyExpired       = "key.expired"
	EventQuotaThreshold   = "quota.threshold"
	EventLicenseThreshold = "license.threshold"
)

// EventTypes are all event types, in documentation order.
var EventTypes = []string{EventKeyCreated, EventKeyRotated, EventKeyRevoked, EventKeyExpiring, EventKeyExpired, EventQuotaThreshold, EventLicenseThreshold}

// DefaultExpiringWithin is how long before a key expires key.expiring is
// sent, when a target does not say.
const DefaultExpiringWithin = 7 * 24 * time.Hour

// Target is one destination of events.
type Target struct {
	// URL is the absolute http or https URL events are POSTed to.
	URL string
	// Secret signs the bodies; required.
	Secret string
	// Events are the event types sent; empty means all.
	Events []string
	// ExpiringWithin is how long before a key's expiry key.expiring is
	// sent. Zero means DefaultExpiringWithin.
	ExpiringWithin time.Duration
}

// Wants reports whether t subscribes to events of type typ.
func (t *Target) Wants(typ string) bool {
	return len(t.Events) == 0 || slices.Contains(t.Events, typ)
}

func (t *Target) expiringWithin() time.Duration {
	if t.ExpiringWithin > 0 {
		return t.ExpiringWithin
	}
	return DefaultExpiringWithin
}

// Validate checks a target's URL, secret and event types.
func (t *Target) Validate() error {
	u, err := url.Parse(t.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("notify %q: the URL must be an absolute http or https URL", RedactURL(t.URL))
	}
	if t.Secret == "" {
		return fmt.Errorf("notify %s: a secret is required (secret {env.WEBHOOK_SECRET}); receivers verify the signature with it", RedactURL(t.URL))
	}
	for _, e := range t.Events {
		if !slices.Contains(EventTypes, e) {
			return fmt.Errorf("notify %s: event %q is unknown; known events: %s", RedactURL(t.URL), e, strings.Join(EventTypes, ", "))
		}
	}
	if t.ExpiringWithin < 0 {
		return fmt.Errorf("notify %s: expiring_within must not be negative", RedactURL(t.URL))
	}
	return nil
}

// RedactURL drops the user info and query of a URL, which may hold a
// credential, for logs and errors.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// newID returns prefix and 20 random base62 characters.
func newID(prefix string) string {
	const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var b [20]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	var sb strings.Builder
	sb.WriteString(prefix)
	for _, c := range b {
		sb.WriteByte(base62[int(c)%62])
	}
	return sb.String()
}

// keyRef is the key an event is about: never its secret or digest.
type keyRef struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	User string `json:"user,omitempty"`
}

func refOf(k *keystore.Key) *keyRef {
	return &keyRef{ID: k.ID, Name: k.Name, User: k.User}
}
