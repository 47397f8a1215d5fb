package keystore

import (
	"encoding/binary"
	"sync/atomic"
)

// recentSlots is the size of an Authenticator's table of recently served
// keys: 32 KB of pointers, far more slots than the keys a deployment
// usually has in use at once.
const recentSlots = 4096

// recentTable is a direct-mapped table of the principals served most
// recently, in front of the ristretto cache. A hit costs one atomic load and
// a digest comparison, where ristretto's Get hashes the key, records the
// access for its admission policy (a ring buffer whose full stripes wake
// the policy's goroutine, which then updates a count-min sketch) and reads a
// locked shard: under a proxy's load that was the largest single cost of
// the key check (bench/README.md). Keys in the table are not counted by
// ristretto's policy while they stay in it; the policy only matters when the
// cache is full, and a key it evicted meanwhile is read from the store again
// once its table entry is due for a refresh, as it would have been anyway.
//
// The table holds positive entries only and serves them only while they are
// fresh (RefreshAfter); anything else goes through the cache as before.
// Invalidate clears the slots of the digests it evicts, and a request that
// fills a slot with what it read from the cache checks the invalidation
// generation afterwards, so a key revoked meanwhile never stays in it.
type recentTable struct {
	slots [recentSlots]atomic.Pointer[Principal]
}

// slot is d's slot. It uses other digest bits than cacheKey, so keys that
// share a ristretto key do not also share a slot.
func (t *recentTable) slot(d *Digest) *atomic.Pointer[Principal] {
	return &t.slots[binary.LittleEndian.Uint16(d[8:10])%recentSlots]
}

// get returns the entry for d, or nil.
func (t *recentTable) get(d *Digest) *Principal {
	if p := t.slot(d).Load(); p != nil && p.matches(d) {
		return p
	}
	return nil
}

// rememberRecent makes p, read from the cache while the invalidation generation was
// gen, the entry of its digest, unless an invalidation has run since.
func (a *Authenticator) rememberRecent(p *Principal, gen uint64) {
	s := a.recent.slot(&p.digest)
	if s.Load() == p {
		return
	}
	s.Store(p)
	// An Invalidate that started after our read of the cache either
	// bumped gen before this check (we forget p here) or clears the slot
	// after it (it bumps gen first, then clears).
	if a.gen.Load() != gen {
		a.recent.forget(&p.digest)
	}
}

// forget clears d's slot if it holds d's entry.
func (t *recentTable) forget(d *Digest) {
	s := t.slot(d)
	for {
		p := s.Load()
		if p == nil || !p.matches(d) || s.CompareAndSwap(p, nil) {
			return
		}
	}
}

// clear empties the table.
func (t *recentTable) clear() {
	for i := range t.slots {
		t.slots[i].Store(nil)
	}
}
