package keystore

import (
	"sync"
	"sync/atomic"
	"time"
)

// FailureLimiter blocks clients (by remote IP) that present too many invalid
// keys: after Limit failures within Window of the first one, the client is
// refused until the window ends. It makes guessing keys slow and keeps a
// flood of random keys away from the store. Clients with no failures cost one
// lock-free map read per request; with no failures at all, nothing.
type FailureLimiter struct {
	limit  int64
	window time.Duration
	// MaxClients bounds memory: when more clients are tracked, expired
	// entries are swept; if none expired, new clients are not tracked (the
	// store-lookup cap still protects the store).
	maxClients int64

	clients sync.Map // string → *failEntry
	n       atomic.Int64
	blocked atomic.Uint64 // requests refused, for metrics
}

type failEntry struct {
	start atomic.Int64 // unix nanos of the window's first failure
	count atomic.Int64
}

// NewFailureLimiter returns a limiter allowing limit failures per window.
func NewFailureLimiter(limit int, window time.Duration, maxClients int) *FailureLimiter {
	if maxClients <= 0 {
		maxClients = 100_000
	}
	return &FailureLimiter{limit: int64(limit), window: window, maxClients: int64(maxClients)}
}

// Blocked reports whether client is refused at now, and for how long.
func (f *FailureLimiter) Blocked(client string, now time.Time) (bool, time.Duration) {
	if f.n.Load() == 0 {
		return false, 0
	}
	v, ok := f.clients.Load(client)
	if !ok {
		return false, 0
	}
	e := v.(*failEntry)
	end := time.Unix(0, e.start.Load()).Add(f.window)
	if e.count.Load() < f.limit || !now.Before(end) {
		return false, 0
	}
	f.blocked.Add(1)
	return true, end.Sub(now)
}

// Fail records a failed attempt of client at now.
func (f *FailureLimiter) Fail(client string, now time.Time) {
	v, ok := f.clients.Load(client)
	if !ok {
		if f.n.Load() >= f.maxClients && f.Sweep(now) == 0 {
			return
		}
		e := &failEntry{}
		e.start.Store(now.UnixNano())
		v, ok = f.clients.LoadOrStore(client, e)
		if !ok {
			f.n.Add(1)
		}
	}
	e := v.(*failEntry)
	start := e.start.Load()
	if now.UnixNano()-start >= int64(f.window) {
		// A new window; a racing failure may be counted in either.
		if e.start.CompareAndSwap(start, now.UnixNano()) {
			e.count.Store(0)
		}
	}
	e.count.Add(1)
}

// Sweep forgets clients whose window has ended and returns how many.
func (f *FailureLimiter) Sweep(now time.Time) int {
	dropped := 0
	f.clients.Range(func(k, v any) bool {
		if now.UnixNano()-v.(*failEntry).start.Load() >= int64(f.window) {
			f.clients.Delete(k)
			f.n.Add(-1)
			dropped++
		}
		return true
	})
	return dropped
}

// BlockedTotal counts refused requests since start.
func (f *FailureLimiter) BlockedTotal() uint64 { return f.blocked.Load() }
