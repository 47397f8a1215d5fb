package keystore

import (
	"crypto/subtle"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"
)

// Principal is an authenticated key as the request path sees it, and the
// key cache's entry. It holds what a request needs and no more, because the
// cache keeps one per key (up to `cache { size }` of them): the digests, the
// key's id and name, the instant it stops working, and a profile shared with
// every cached key of the same user, rights, limits and policy. The full key
// record stays in the store (Service.ActorFor reads it for the admin API).
type Principal struct {
	// id and name are the key's id and name, boxed once when the key is
	// loaded, for callers that store them as `any` on every request
	// (Caddy's placeholders) without allocating.
	id, name any
	// digest is the digest the entry was looked up by and is cached under:
	// the key's current one, or its previous one during a rotation grace.
	digest Digest
	// until is the Unix nanosecond from which digest no longer opens the
	// key (expiry, revocation or the end of the grace); 0 means never.
	until   int64
	profile *keyProfile // nil: a negative cache entry (the digest is unknown)

	// loadedAt is when the store was read (Unix nanoseconds of the
	// Authenticator's clock); refreshing is set while a background refresh
	// runs, so a stale hot key starts one store lookup, not one per request.
	loadedAt   int64
	refreshing atomic.Bool
	// hot are the key's Meter and Limiter entries (hot.go).
	hot atomic.Pointer[hotEntries]
}

// keyProfile is what many keys have in common: the user they run as, their
// rights, limits, allowed_ips and environments. Keys of one integration
// share one profile, so a cached key costs its id, name and digest only.
// Profiles are immutable once built.
type keyProfile struct {
	user         any // the key's user, boxed once for all its keys
	userUsageID  string
	rights       *Rights // interned apart: users differ more often than rights
	rate         *Rate
	quota        *Quota
	userLimits   UserLimits
	environments []string
	addrs        addrPolicy
}

// ID is the key's id.
func (p *Principal) ID() string { s, _ := p.id.(string); return s }

// Name is the key's name.
func (p *Principal) Name() string { s, _ := p.name.(string); return s }

// User is the user the key runs as.
func (p *Principal) User() string { s, _ := p.profile.user.(string); return s }

// IDValue, NameValue and UserValue are the id, name and user as interface
// values boxed when the key was loaded: storing them as `any` (Caddy's
// replacer) allocates nothing.
func (p *Principal) IDValue() any   { return p.id }
func (p *Principal) NameValue() any { return p.name }
func (p *Principal) UserValue() any { return p.profile.user }

// Rights are the key's parsed rights.
func (p *Principal) Rights() Rights { return *p.profile.rights }

// UserLimits are the limits shared by all keys of the key's user, as loaded
// with the key.
func (p *Principal) UserLimits() UserLimits { return p.profile.userLimits }

// UserUsageID is the id the key's user's usage is counted under.
func (p *Principal) UserUsageID() string { return p.profile.userUsageID }

// AcceptedIn reports whether a handler of environment env accepts the key:
// a handler with an environment only keys that list it, a handler without
// one only keys that list none.
func (p *Principal) AcceptedIn(env string) bool { return acceptedIn(p.profile.environments, env) }

// accepts reports whether the entry's digest (the caller has compared it
// with the presented one) opens a key at now.
func (p *Principal) accepts(now time.Time) bool {
	return p.profile != nil && (p.until == 0 || now.UnixNano() < p.until)
}

// matches reports, in constant time, whether d is the entry's digest.
func (p *Principal) matches(d *Digest) bool {
	return subtle.ConstantTimeCompare(p.digest[:], d[:]) == 1
}

// unixNanos is t in Unix nanoseconds, clamped to the range an int64 holds
// (years 1678 to 2262): a later expiry is "never" for any clock reading in
// range, an earlier one "already". Clamping keeps 0 free to mean "never".
func unixNanos(t time.Time) int64 {
	switch {
	case t.After(maxNanoTime):
		return math.MaxInt64
	case t.Before(minNanoTime):
		return 1
	}
	if n := t.UnixNano(); n != 0 {
		return n
	}
	return 1
}

var (
	maxNanoTime = time.Unix(0, math.MaxInt64)
	minNanoTime = time.Unix(0, 1)
)

// earliest returns the earliest of optional instants as Unix nanoseconds,
// 0 when none is set.
func earliest(times ...*time.Time) int64 {
	var first int64
	for _, t := range times {
		if t == nil {
			continue
		}
		if n := unixNanos(*t); first == 0 || n < first {
			first = n
		}
	}
	return first
}

// ---- profiles, interned ----

// profileKey identifies a profile by value. Limits are held by value (the
// zero Rate or Quota means none) so that the key is comparable.
type profileKey struct {
	user                string
	rights              string // the stored rights, sorted, NUL-separated
	rate, userRate      Rate
	quota, userQuota    Quota
	environments, addrs string // NUL-separated
}

// profiles interns keyProfiles, and apart from them the parsed rights
// they hold (users differ far more often than sets of rights): keys with the
// same profile share one, and one no cached key uses any more is collected
// (weak pointers), so the tables hold at most one entry per value in use.
type profiles struct {
	mu       sync.Mutex // guards both tables
	profiles internTable[profileKey, keyProfile]
	rights   internTable[string, Rights] // by profileKey.rights
}

// of returns the shared profile of k with its user's limits ul.
func (t *profiles) of(k *Key, ul UserLimits) *keyProfile {
	rate, quota := validRate(k.Rate), validQuota(k.Quota)
	ul = UserLimits{Rate: validRate(ul.Rate), Quota: validQuota(ul.Quota)}
	pk := profileKey{
		user:   k.User,
		rights: joinSorted(k.Rights), environments: joinSorted(k.Environments), addrs: joinSorted(k.AllowedIPs),
		rate: deref(rate), quota: deref(quota), userRate: deref(ul.Rate), userQuota: deref(ul.Quota),
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.profiles.get(pk); p != nil {
		return p
	}
	rights := t.rights.get(pk.rights)
	if rights == nil {
		rights = new(Rights)
		if parsed, err := ParseRights(k.Rights, nil); err == nil {
			*rights = parsed
		} // else a stored key with unparsable rights grants nothing
		t.rights.put(&t.mu, pk.rights, rights)
	}
	p := &keyProfile{
		user: k.User, userUsageID: UserUsageID(k.User), rights: rights,
		rate: cloneRate(rate), quota: cloneQuota(quota), userLimits: ul.Clone(),
		environments: slices.Clone(k.Environments), addrs: newAddrPolicy(k.AllowedIPs),
	}
	t.profiles.put(&t.mu, pk, p)
	return p
}

// len is the number of profiles and of sets of rights in the tables
// (tests).
func (t *profiles) len() (profiles, rights int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.profiles.m), len(t.rights.m)
}

// internTable maps keys to weakly held values; its owner's mutex guards it.
type internTable[K comparable, V any] struct {
	m map[K]weak.Pointer[V]
}

// get returns the live value interned under k, or nil.
func (t *internTable[K, V]) get(k K) *V { return t.m[k].Value() }

// put interns v under k; once v is collected its entry is dropped under mu,
// unless k has been interned again since.
func (t *internTable[K, V]) put(mu *sync.Mutex, k K, v *V) {
	if t.m == nil {
		t.m = map[K]weak.Pointer[V]{}
	}
	wp := weak.Make(v)
	t.m[k] = wp
	runtime.AddCleanup(v, func(e internEntry[K, V]) {
		mu.Lock()
		defer mu.Unlock()
		if t.m[e.key] == e.wp {
			delete(t.m, e.key)
		}
	}, internEntry[K, V]{k, wp})
}

type internEntry[K comparable, V any] struct {
	key K
	wp  weak.Pointer[V]
}

func joinSorted(list []string) string {
	if len(list) == 0 {
		return ""
	}
	s := slices.Clone(list)
	slices.Sort(s)
	return strings.Join(s, "\x00")
}

func deref[T any](p *T) T {
	var v T
	if p != nil {
		v = *p
	}
	return v
}

// newPrincipal builds the cache entry for digest d, looked up at loadedAt:
// key k found by it (nil: a negative entry), with the profile t gives it.
// A key that d opens neither as its current digest nor as its previous one
// in a grace period makes a negative entry too.
func newPrincipal(d *Digest, k *Key, ul UserLimits, t *profiles, loadedAt time.Time) *Principal {
	p := &Principal{digest: *d, loadedAt: loadedAt.UnixNano()}
	switch {
	case k == nil:
		return p
	case k.Digest == *d:
		p.until = earliest(k.ExpiresAt, k.RevokedAt)
	case !k.PrevDigest.IsZero() && k.PrevDigest == *d && k.GraceUntil != nil:
		p.until = earliest(k.ExpiresAt, k.RevokedAt, k.GraceUntil)
	default:
		return p
	}
	p.id, p.name, p.profile = k.ID, k.Name, t.of(k, ul)
	return p
}
