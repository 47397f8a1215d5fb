package keystore

import "time"

// hotEntries are the Meter and Limiter entries a cached key was last
// counted and limited with. A request reaches them through its Principal
// instead of looking the key's and its user's ids up in the Meter's and the
// Limiter's maps: under a proxy's load each of those lookups (hash the id,
// walk the map) misses the CPU caches, and they were a good part of what the
// key check costs per request (bench/README.md).
//
// A pointer here goes stale when Sweep drops its entry. Both structures
// detect a dropped entry (Meter.count reports it, a dropped limiter entry
// holds deadTAT), and the request then goes through the map as before and
// remembers the live entry: a stale pointer costs a retry, never a lost or
// misplaced count. The set is replaced whole, never written in place;
// racing requests may each store their own, and the loser's pointers are
// simply looked up again.
type hotEntries struct {
	meter               *Meter
	meterKey, meterUser *meterEntry
	limiter             *Limiter
	limitKey, limitUser *limitEntry
}

func (p *Principal) hotEntries() hotEntries {
	if h := p.hot.Load(); h != nil {
		return *h
	}
	return hotEntries{}
}

func (p *Principal) rememberHot(h hotEntries) { p.hot.Store(&h) }

// forMeter is h with the Meter entries of another Meter than m forgotten
// (a Principal is cached by one Authenticator, which may serve several).
func (h hotEntries) forMeter(m *Meter) hotEntries {
	if h.meter != m {
		h.meter, h.meterKey, h.meterUser = m, nil, nil
	}
	return h
}

func (h hotEntries) forLimiter(l *Limiter) hotEntries {
	if h.limiter != l {
		h.limiter, h.limitKey, h.limitUser = l, nil, nil
	}
	return h
}

// CountKey is Count for p's key, through the entry p was last counted in.
func (m *Meter) CountKey(p *Principal, now time.Time) Tally {
	h := p.hotEntries().forMeter(m)
	if e := h.meterKey; e != nil && e.count(now) {
		return Tally{m: m, e: e, keyID: p.ID(), now: now}
	}
	t := m.Count(p.ID(), now)
	h.meterKey = t.e
	p.rememberHot(h)
	return t
}

// CountUser is Count for p's user (UserUsageID), through the entry p's
// requests were last counted in.
func (m *Meter) CountUser(p *Principal, now time.Time) {
	h := p.hotEntries().forMeter(m)
	if e := h.meterUser; e != nil && e.count(now) {
		return
	}
	h.meterUser = m.Count(p.UserUsageID(), now).e
	p.rememberHot(h)
}
