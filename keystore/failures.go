package keystore

import (
	"errors"
	"hash/maphash"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FailureLimiter blocks clients (by remote IP) that present too many invalid
// keys: after Limit failures within Window of the first one, the client is
// refused until the window ends. It makes guessing keys slow and keeps a
// flood of random keys away from the store.
//
// Memory is bounded by maxClients entries and every call costs O(1) however
// many clients there are: the table is a fixed array of small buckets (a
// set-associative cache, one or two cache lines per lookup), and a new
// client in a full bucket replaces an expired entry, else one without a
// second chance, else the oldest; nothing ever sweeps the table on the
// request path. Locks are striped over the buckets. IPv6 clients are
// grouped by /64 (one host usually owns a whole /64, and counting its
// addresses one by one would let it rotate through them); IPv4 clients
// count by address.
type FailureLimiter struct {
	limit   int64
	window  int64 // nanoseconds
	seed    maphash.Seed
	ways    int // entries per bucket
	buckets uint64
	entries []failEntry // buckets × ways
	locks   []stripe

	n atomic.Int64 // tracked clients
	// atLimit counts the entries with Limit failures or more (their window
	// may have ended since): 0, the usual case even while some clients
	// fail now and then, lets Blocked skip the lookup.
	atLimit atomic.Int64
	blocked atomic.Uint64 // requests refused, for metrics
}

// clientKey is a client's identity in the table: kind, then 16 bytes (an
// IPv4 address, an IPv6 /64 prefix, or the hash of an unparsable string).
type clientKey struct {
	kind uint8 // 0: empty slot
	addr [16]byte
}

const (
	kindIPv4 = 1 + iota
	kindIPv6
	kindHashed
)

// failEntry is 32 bytes: a bucket of 8 is four cache lines.
type failEntry struct {
	addr  [16]byte
	start int64 // unix nanos of the window's first failure
	count int32
	kind  uint8
	ref   bool // used since it was last considered for eviction
}

type stripe struct {
	sync.Mutex
	_ [56]byte // one lock per cache line
}

const (
	maxWays   = 8
	maxStripe = 256
)

// NewFailureLimiter returns a limiter allowing limit failures per window,
// tracking at most maxClients clients (default 100,000). Beyond that, new
// clients replace idle or expired ones.
func NewFailureLimiter(limit int, window time.Duration, maxClients int) *FailureLimiter {
	if maxClients <= 0 {
		maxClients = 100_000
	}
	ways := min(maxWays, maxClients)
	buckets := maxClients / ways
	f := &FailureLimiter{
		limit:   int64(min(limit, 1<<31-1)),
		window:  int64(window),
		seed:    maphash.MakeSeed(),
		ways:    ways,
		buckets: uint64(buckets),
		entries: make([]failEntry, buckets*ways),
		locks:   make([]stripe, min(buckets, maxStripe)),
	}
	return f
}

// keyOf maps a client address to its table key without allocating for
// plain IPv4 and IPv6 addresses.
func keyOf(client string) clientKey {
	var k clientKey
	var a netip.Addr
	err := errNotAddr
	if strings.ContainsAny(client, ".:") {
		// ParseAddr allocates its error: skip what cannot be an address.
		a, err = netip.ParseAddr(client)
	}
	if err != nil {
		// Not an address (a unix socket peer, a test name): as is.
		k.kind = kindHashed
		s := maphash.String(hashSeed, client)
		for i := range 8 {
			k.addr[i] = byte(s >> (8 * i))
		}
		k.addr[8] = byte(len(client))
		return k
	}
	a = a.Unmap()
	k.addr = a.As16()
	if a.Is4() {
		k.kind = kindIPv4
	} else {
		k.kind = kindIPv6
		clear(k.addr[8:]) // the /64
	}
	return k
}

var errNotAddr = errors.New("not an address")

// hashSeed hashes unparsable client strings; its randomness only needs to
// hold for the process's life.
var hashSeed = maphash.MakeSeed()

// bucket locks and returns the bucket of k; the caller unlocks the stripe.
func (f *FailureLimiter) bucket(k *clientKey) ([]failEntry, *stripe) {
	h := maphash.Bytes(f.seed, k.addr[:]) ^ uint64(k.kind)*0x9e3779b97f4a7c15
	b := h % f.buckets
	st := &f.locks[b%uint64(len(f.locks))]
	st.Lock()
	i := int(b) * f.ways
	return f.entries[i : i+f.ways : i+f.ways], st
}

func find(bucket []failEntry, k *clientKey) *failEntry {
	for i := range bucket {
		if e := &bucket[i]; e.kind == k.kind && e.addr == k.addr {
			return e
		}
	}
	return nil
}

// Blocked reports whether client is refused at now, and for how long.
func (f *FailureLimiter) Blocked(client string, now time.Time) (bool, time.Duration) {
	if f.atLimit.Load() == 0 {
		return false, 0
	}
	k := keyOf(client)
	bucket, st := f.bucket(&k)
	e := find(bucket, &k)
	if e == nil {
		st.Unlock()
		return false, 0
	}
	end := e.start + f.window
	t := now.UnixNano()
	if int64(e.count) < f.limit || t >= end {
		st.Unlock()
		return false, 0
	}
	e.ref = true // a client still hammering keeps its entry
	st.Unlock()
	f.blocked.Add(1)
	return true, time.Duration(end - t)
}

// Fail records a failed attempt of client at now.
func (f *FailureLimiter) Fail(client string, now time.Time) {
	k := keyOf(client)
	t := now.UnixNano()
	bucket, st := f.bucket(&k)
	defer st.Unlock()
	if e := find(bucket, &k); e != nil {
		was := f.isAtLimit(e)
		if t-e.start >= f.window {
			e.start, e.count = t, 0
		}
		if e.count < 1<<31-1 {
			e.count++
		}
		e.ref = true
		f.noteAtLimit(was, e)
		return
	}
	v := f.victim(bucket, t)
	if v.kind == 0 {
		f.n.Add(1)
	}
	was := f.isAtLimit(v)
	// A new client starts without a second chance, so a flood of one-off
	// addresses recycles its own entries before those of repeat offenders.
	*v = failEntry{addr: k.addr, kind: k.kind, start: t, count: 1}
	f.noteAtLimit(was, v)
}

// isAtLimit reports whether e holds a client with Limit failures or more.
func (f *FailureLimiter) isAtLimit(e *failEntry) bool {
	return e.kind != 0 && int64(e.count) >= f.limit
}

// noteAtLimit keeps atLimit in step after e changed (under its stripe's
// lock); was is isAtLimit(e) before the change.
func (f *FailureLimiter) noteAtLimit(was bool, e *failEntry) {
	switch now := f.isAtLimit(e); {
	case now && !was:
		f.atLimit.Add(1)
	case was && !now:
		f.atLimit.Add(-1)
	}
}

// victim returns the slot for a new client: an empty or expired one, else
// the first without a second chance, else (all used again since) the
// oldest, clearing the second chances on the way.
func (f *FailureLimiter) victim(bucket []failEntry, now int64) *failEntry {
	var noRef, oldest *failEntry
	for i := range bucket {
		e := &bucket[i]
		if e.kind == 0 || now-e.start >= f.window {
			return e
		}
		if !e.ref && noRef == nil {
			noRef = e
		}
		if oldest == nil || e.start < oldest.start {
			oldest = e
		}
	}
	if noRef != nil {
		return noRef
	}
	for i := range bucket {
		bucket[i].ref = false
	}
	return oldest
}

// Sweep forgets clients whose window has ended and returns how many. It is
// housekeeping (expired entries are reused anyway) that keeps Blocked's
// shortcut working after a flood; it runs off the request path
// and holds one lock stripe at a time.
func (f *FailureLimiter) Sweep(now time.Time) int {
	t := now.UnixNano()
	dropped := 0
	for b := range f.buckets {
		st := &f.locks[b%uint64(len(f.locks))]
		st.Lock()
		i := int(b) * f.ways
		for j := i; j < i+f.ways; j++ {
			if e := &f.entries[j]; e.kind != 0 && t-e.start >= f.window {
				was := f.isAtLimit(e)
				*e = failEntry{}
				f.noteAtLimit(was, e)
				dropped++
			}
		}
		st.Unlock()
	}
	f.n.Add(-int64(dropped))
	return dropped
}

// Len returns how many clients are tracked.
func (f *FailureLimiter) Len() int { return int(f.n.Load()) }

// BlockedTotal counts refused requests since start.
func (f *FailureLimiter) BlockedTotal() uint64 { return f.blocked.Load() }
