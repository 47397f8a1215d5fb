package keystore

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// A flight is one store lookup of a digest, shared by every request that
// misses the cache for it while it runs. It runs on a goroutine of its own
// under its own LookupTimeout deadline, detached from the requests: one
// client going away must not fail the others waiting for the same digest,
// and each request stops waiting when its own context ends. The store is
// called on that goroutine directly; a timer ends the flight at the
// deadline even if the store does not honour its context (the call then
// finishes in the background, still holding its lookup slot, so at most
// MaxConcurrentLookups calls can be stuck in such a store). One goroutine
// per lookup keeps a cold key to two goroutine hand-offs.
type flight struct {
	done  chan struct{} // closed once p and err are set
	p     *Principal
	err   error
	state atomic.Int32 // flightWaiting → flightInStore → flightDone
	timer *time.Timer
	start time.Time // of the store call
}

const (
	flightWaiting int32 = iota // for a lookup slot
	flightInStore
	flightDone
)

// flightKey includes the invalidation generation: a lookup that started
// before an invalidation is not shared with requests that come after it.
type flightKey struct {
	d   Digest
	gen uint64
}

// load reads the digest from the store, one lookup per digest at a time,
// and caches the answer (negative answers with NegativeTTL).
func (a *Authenticator) load(ctx context.Context, d *Digest) (*Principal, error) {
	key := flightKey{d: *d, gen: a.gen.Load()}
	a.fmu.Lock()
	f := a.flights[key]
	if f == nil {
		if !a.enter() {
			a.fmu.Unlock()
			return nil, fmt.Errorf("key cache closed: %w", ErrUnavailable)
		}
		set := a.set.Load()
		f = &flight{done: make(chan struct{})}
		if a.flights == nil {
			a.flights = map[flightKey]*flight{}
		}
		a.flights[key] = f
		f.timer = time.AfterFunc(set.lookupTimeout, func() { a.timeOut(key, f) })
		go a.fly(ctx, key, f, set)
	}
	a.fmu.Unlock()
	select {
	case <-f.done:
		return f.p, f.err
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a key lookup: %w", errors.Join(ErrUnavailable, ctx.Err()))
	}
}

// fly runs flight f: a lookup slot, the store, the cache.
func (a *Authenticator) fly(ctx context.Context, key flightKey, f *flight, set *authSettings) {
	d := &key.d
	// A flight that finished just before this one started may have filled
	// the cache after our caller missed it.
	if e, ok := a.cache.Get(cacheKey(d)); ok && e.digest == *d &&
		(e.profile == nil || time.Duration(a.opts.Now().UnixNano()-e.loadedAt) <= set.refreshAfter) {
		if f.state.CompareAndSwap(flightWaiting, flightDone) {
			f.timer.Stop()
			a.land(key, f, e, nil)
		}
		return
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), set.lookupTimeout)
	defer cancel()
	select {
	case set.sem <- struct{}{}:
	case <-lctx.Done():
		return // the timer ends the flight
	}
	f.start = time.Now()
	if !f.state.CompareAndSwap(flightWaiting, flightInStore) {
		<-set.sem
		return // timed out while the slot came free
	}
	k, ul, err := a.lookupDigest(lctx, d)
	<-set.sem
	elapsed := time.Since(f.start)
	if !f.state.CompareAndSwap(flightInStore, flightDone) {
		return // timed out: the timer counted and answered it
	}
	f.timer.Stop()
	a.countLookup(elapsed, err)
	switch {
	case err == nil:
	case errors.Is(err, ErrNotFound):
		k = nil
	default:
		a.lookupErrors.Add(1)
		if !errors.Is(err, ErrUnavailable) {
			err = errors.Join(ErrUnavailable, err)
		}
		a.land(key, f, nil, fmt.Errorf("looking up key digest: %w", err))
		return
	}
	p := newPrincipal(d, k, ul, &a.profiles, a.opts.Now())
	if a.gen.Load() == key.gen {
		if p.profile == nil {
			a.cache.SetWithTTL(cacheKey(d), p, 1, set.negativeTTL)
		} else {
			a.cache.Set(cacheKey(d), p, 1)
		}
		// An invalidation that ran between the check and the Set has
		// already deleted the entry; the Set would bring it back.
		// ristretto applies a Del after a Set, so delete again.
		if a.gen.Load() != key.gen {
			a.cache.Del(cacheKey(d))
		}
		// ristretto applies writes asynchronously: wait, so requests
		// arriving after this flight find the entry instead of starting
		// another lookup.
		a.cache.Wait()
	}
	a.land(key, f, p, nil)
}

// timeOut ends flight f at its deadline, unless it has landed.
func (a *Authenticator) timeOut(key flightKey, f *flight) {
	for {
		switch st := f.state.Load(); st {
		case flightWaiting:
			if f.state.CompareAndSwap(st, flightDone) {
				a.lookupErrors.Add(1)
				a.land(key, f, nil, fmt.Errorf("waiting for a store lookup slot: %w", errors.Join(ErrUnavailable, context.DeadlineExceeded)))
				return
			}
		case flightInStore:
			if f.state.CompareAndSwap(st, flightDone) {
				err := fmt.Errorf("store lookup: %w", errors.Join(ErrUnavailable, context.DeadlineExceeded))
				a.countLookup(time.Since(f.start), err)
				a.lookupErrors.Add(1)
				a.land(key, f, nil, fmt.Errorf("looking up key digest: %w", err))
				return
			}
		default:
			return
		}
	}
}

// land answers the requests waiting for f and ends it: later requests
// start a flight of their own (or find the cache filled). Only the one that
// moved f to flightDone calls it.
func (a *Authenticator) land(key flightKey, f *flight, p *Principal, err error) {
	f.p, f.err = p, err
	a.fmu.Lock()
	if a.flights[key] == f {
		delete(a.flights, key)
	}
	a.fmu.Unlock()
	close(f.done)
	a.background.Done()
}

func (a *Authenticator) countLookup(elapsed time.Duration, err error) {
	a.lookups.Add(1)
	a.lookupNanos.Add(uint64(elapsed))
	if a.OnLookup != nil {
		a.OnLookup(elapsed, err)
	}
}

// lookupDigest reads the key of digest d and its user's limits.
func (a *Authenticator) lookupDigest(ctx context.Context, d *Digest) (*Key, UserLimits, error) {
	if a.both != nil {
		return a.both.LookupDigestWithUserLimits(ctx, *d)
	}
	k, err := a.store.LookupDigest(ctx, *d)
	var ul UserLimits
	if err == nil && a.users != nil {
		// A key whose user's limits cannot be read is not served: that
		// would lift the limits during an outage.
		ul, err = a.users.UserLimits(ctx, k.User)
	}
	return k, ul, err
}
