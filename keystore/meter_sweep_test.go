package keystore

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestMeterSweepDropsIdleFlushedEntries(t *testing.T) {
	t.Parallel()
	s := newUsageStore()
	m := NewMeter(s, MeterOptions{IdleAfter: time.Minute})
	ctx := t.Context()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

	m.Count("key_flushed", now)
	m.Count("key_failed", now)
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	m.Count("key_failed", now)
	s.fail(ErrUnavailable)
	if err := m.Flush(ctx); err == nil {
		t.Fatal("Flush: got nil, want the store's failure")
	}
	m.Count("key_unflushed", now)
	pinned := m.pin("key_pinned")

	if n := m.Sweep(now.Add(30 * time.Second)); n != 0 {
		t.Fatalf("Sweep before IdleAfter: dropped %d, want 0", n)
	}
	// Idle: only the entry whose counts are all acknowledged goes. The
	// failed batch, the unflushed count and the pinned entry stay.
	if n := m.Sweep(now.Add(2 * time.Minute)); n != 1 || m.lookup("key_flushed") != nil {
		t.Fatalf("Sweep after IdleAfter: dropped %d (key_flushed kept: %v), want 1", n, m.lookup("key_flushed") != nil)
	}
	if m.Len() != 3 {
		t.Fatalf("entries left: got %d, want 3 (failed batch, unflushed, pinned)", m.Len())
	}
	s.fail(nil)
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := m.Sweep(now.Add(2 * time.Minute)); n != 2 {
		t.Fatalf("Sweep after the retry succeeded: dropped %d, want 2", n)
	}
	m.unpin(pinned)
	if n := m.Sweep(now.Add(2 * time.Minute)); n != 1 || m.Len() != 0 {
		t.Fatalf("Sweep after unpin: dropped %d, %d left, want 1 and 0", n, m.Len())
	}

	// A key that comes back counts into a new entry, once.
	m.Count("key_flushed", now.Add(3*time.Minute))
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if a, f, u := s.total("key_flushed"), s.total("key_failed"), s.total("key_unflushed"); a != 2 || f != 2 || u != 1 {
		t.Fatalf("stored: key_flushed %d, key_failed %d, key_unflushed %d, want 2, 2, 1", a, f, u)
	}
}

// TestMeterSweepRacingCountsExact: counts that race a Sweep dropping their
// key's entry land in the key's next entry, never in the dropped one.
func TestMeterSweepRacingCountsExact(t *testing.T) {
	t.Parallel()
	s := newUsageStore()
	m := NewMeter(s, MeterOptions{IdleAfter: time.Nanosecond})
	ctx := context.Background()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	keys := []string{"key_a", "key_b", "key_c", "key_d"}
	const workers, per = 4, 5000

	var stop atomic.Bool
	var dropped atomic.Int64
	done := make(chan error, 1)
	go func() {
		var err error
		for !stop.Load() {
			err = errors.Join(err, m.Flush(ctx))
			// Every entry counted before now+1h is idle: only pending
			// counts keep one.
			dropped.Add(int64(m.Sweep(now.Add(time.Hour))))
		}
		done <- err
	}()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				m.Count(keys[(i+w)%len(keys)], now)
			}
		})
	}
	wg.Wait()
	stop.Store(true)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var got int64
	for _, id := range keys {
		got += s.total(id)
	}
	if got != workers*per {
		t.Fatalf("stored: got %d, want %d (%d entries dropped meanwhile)", got, workers*per, dropped.Load())
	}
	if dropped.Load() == 0 {
		t.Log("no entry was dropped while counting: the race was not exercised this time")
	}
}

func TestMeterFlushBoundedBatches(t *testing.T) {
	t.Parallel()
	s := newUsageStore()
	m := NewMeter(s, MeterOptions{MaxBatch: 10})
	ctx := t.Context()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for i := range 25 {
		m.Count(fmt.Sprintf("key_%02d", i), now)
	}
	var sizes []int
	sized := &sizeStore{usageStore: s, sizes: &sizes}
	if err := m.FlushTo(ctx, sized); err != nil {
		t.Fatal(err)
	}
	if len(sizes) != 3 || sizes[0] != 10 || sizes[1] != 10 || sizes[2] != 5 {
		t.Fatalf("AddUsage batch sizes: got %v, want [10 10 5]", sizes)
	}
	for i := range 25 {
		if got := s.total(fmt.Sprintf("key_%02d", i)); got != 1 {
			t.Fatalf("key_%02d stored: got %d, want 1", i, got)
		}
	}
}

type sizeStore struct {
	*usageStore
	sizes *[]int
}

func (s *sizeStore) AddUsage(ctx context.Context, id string, deltas []UsageDelta) error {
	*s.sizes = append(*s.sizes, len(deltas))
	return s.usageStore.AddUsage(ctx, id, deltas)
}

// TestLimiterQuotaAfterMeterSweep: a key with a quota whose limiter state
// and meter entry were both dropped while idle is limited exactly when it
// comes back.
func TestLimiterQuotaAfterMeterSweep(t *testing.T) {
	t.Parallel()
	h := newLimitHarness(t, LimiterOptions{IdleAfter: time.Minute})
	h.meter = NewMeter(h.store, MeterOptions{IdleAfter: time.Minute})
	h.lim = NewLimiter(LimiterOptions{Store: h.store, Meter: h.meter, IdleAfter: time.Minute})
	k := quotaKey("key_q", 5, PeriodDay)
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for i := range 3 {
		if d := h.request(k, now); !d.Allowed {
			t.Fatalf("request %d: refused %+v", i+1, d)
		}
	}
	h.flush()
	later := now.Add(10 * time.Minute)
	if n := h.meter.Sweep(later); n != 0 {
		t.Fatalf("meter Sweep while the limiter holds the key: dropped %d, want 0", n)
	}
	if n := h.lim.Sweep(later); n != 1 {
		t.Fatalf("limiter Sweep: dropped %d, want 1", n)
	}
	if n := h.meter.Sweep(later); n != 1 {
		t.Fatalf("meter Sweep after the limiter let go: dropped %d, want 1", n)
	}
	// 3 stored: 2 more allowed, then refused.
	for i := range 2 {
		if d := h.request(k, later); !d.Allowed {
			t.Fatalf("request %d after the sweeps: refused %+v", 4+i, d)
		}
	}
	if d := h.request(k, later); d.Allowed || d.Code != CodeQuotaExceeded {
		t.Fatalf("request 6 of a 5/day quota: got %+v, want quota_exceeded", d)
	}
	h.flush()
	if got := h.store.total("key_q"); got != 5 {
		t.Fatalf("stored: got %d, want 5", got)
	}
}

// meterHeapBound is the growth of the live heap allowed once 100,000
// distinct keys were counted, flushed and went idle. Kept, their state
// would be about 32 MB (320 B a key, measured below).
const meterHeapBound = 4 << 20

// TestMeterMemoryBounded drives 100,000 distinct keys through the Meter
// (and, in the second case, a Limiter: keys with a quota) in waves of
// 10,000, one flush interval each, and checks the live heap after GC: idle
// keys' state is released, and flush buffers are bounded.
func TestMeterMemoryBounded(t *testing.T) {
	// Not parallel: it measures the whole heap.
	for _, tc := range []struct {
		name    string
		limited bool
		perKey  int64 // bound on live heap per active key
	}{
		{name: "meter", perKey: 512},
		{name: "meter and limiter", limited: true, perKey: 1024},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &sumStore{}
			now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
			m := NewMeter(s, MeterOptions{IdleAfter: time.Minute})
			var lim *Limiter
			if tc.limited {
				lim = NewLimiter(LimiterOptions{Store: s, Meter: m, IdleAfter: time.Minute})
			}
			ctx := context.Background()
			base := liveHeap()
			const keys, wave = 100_000, 10_000
			var peak uint64
			for w := range keys / wave {
				at := now.Add(time.Duration(w) * 10 * time.Second)
				for i := range wave {
					id := fmt.Sprintf("key_%07d", w*wave+i)
					k := &Key{ID: id, Quota: &Quota{Limit: 100, Period: PeriodMonth}}
					for range 2 {
						if lim != nil && !lim.Admit(k, at).Allowed {
							t.Fatalf("%s refused", id)
						}
						m.Count(id, at)
					}
				}
				if err := m.Flush(ctx); err != nil {
					t.Fatal(err)
				}
				if lim != nil {
					lim.Sweep(at)
				}
				m.Sweep(at)
				peak = max(peak, liveHeap())
			}
			// All keys idle: everything is released.
			if lim != nil {
				lim.Sweep(now.Add(time.Hour))
			}
			m.Sweep(now.Add(time.Hour))
			after := liveHeap()
			if got := s.total.Load(); got != 2*keys {
				t.Fatalf("stored: got %d, want %d", got, 2*keys)
			}
			if m.Len() != 0 || (lim != nil && lim.Len() != 0) {
				t.Fatalf("state left after every key went idle: %d meter entries, limiter %v", m.Len(), lim != nil && lim.Len() != 0)
			}
			// At the peak 70,000 keys are held: the 7 waves within
			// IdleAfter.
			perKey := (int64(peak) - int64(base)) / 70_000
			t.Logf("live heap: %.1f MB before, %.1f MB peak with 70,000 active keys (%d B a key), %.1f MB after all idle",
				float64(base)/1e6, float64(peak)/1e6, perKey, float64(after)/1e6)
			if grown := int64(after) - int64(base); grown > meterHeapBound {
				t.Fatalf("live heap grew by %d bytes after 100,000 keys went idle, want at most %d", grown, meterHeapBound)
			}
			if perKey > tc.perKey {
				t.Fatalf("live heap per active key: %d bytes, want at most %d", perKey, tc.perKey)
			}
		})
	}
}

// sumStore takes usage and keeps only the total (its own memory is fixed);
// it reads every stored total as 0.
type sumStore struct {
	Store
	total atomic.Int64
}

func (s *sumStore) Usage(context.Context, string, time.Time, time.Time) ([]DayUsage, error) {
	return nil, nil
}

func (s *sumStore) AddUsage(_ context.Context, _ string, deltas []UsageDelta) error {
	for _, d := range deltas {
		s.total.Add(d.Requests)
	}
	return nil
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestMemoryBoundedByCacheSize drives 100,000 distinct valid keys with a
// rate limit through the request path's state (Authenticator with cache
// size 10,000, Limiter, Meter) in waves of 10,000, and checks the live
// heap against the bound docs/performance.md derives from the cache size:
// about 0.9 KB a cached key plus its admission counters, plus about 570 B
// a key active within IdleAfter. Once every key is idle only the cache's
// share is left.
func TestMemoryBoundedByCacheSize(t *testing.T) {
	// Not parallel: it measures the whole heap.
	const keys, wave, cacheSize = 100_000, 10_000, 10_000
	store := &lookupStore{keys: map[Digest]*Key{}}
	digests := make([]Digest, keys)
	for i := range digests {
		key, err := GenerateKey("kg")
		if err != nil {
			t.Fatal(err)
		}
		d := DigestOf(key)
		digests[i] = d
		store.keys[d] = &Key{ID: fmt.Sprintf("key_%020d", i), Name: "mx-integration", User: "MXINTADM",
			Rights: []string{"assets:read"}, Start: key[:7], Digest: d, Rate: &Rate{Limit: 100, Per: time.Minute}}
	}
	usage := &sumStore{}
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	a, err := NewAuthenticator(store, AuthOptions{CacheSize: cacheSize, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	m := NewMeter(usage, MeterOptions{IdleAfter: time.Minute})
	lim := NewLimiter(LimiterOptions{Store: usage, Meter: m, IdleAfter: time.Minute})
	ctx := t.Context()
	base := liveHeap() // the store's 100,000 keys included

	// Bounds (docs/performance.md): 0.9 KB a cached key plus 4.4 MB of
	// admission counters per 100,000 of cache size, 570 B an active key
	// (70,000 at the peak: 7 waves within IdleAfter), 4 MB of slack.
	cacheBound := int64(cacheSize)*900 + 4_400_000*cacheSize/100_000
	const slack = 4 << 20
	peakBound := cacheBound + 70_000*570 + slack

	var peak uint64
	for w := range keys / wave {
		at := now.Add(time.Duration(w) * 10 * time.Second)
		for i := w * wave; i < (w+1)*wave; i++ {
			p, err := a.AuthenticateDigest(ctx, &digests[i])
			if err != nil {
				t.Fatal(err)
			}
			if !lim.AdmitPrincipal(p, at, nil, nil).Allowed {
				t.Fatalf("%s refused", p.ID())
			}
			m.Count(p.ID(), at)
		}
		if err := m.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		lim.Sweep(at)
		m.Sweep(at)
		a.Wait()
		peak = max(peak, liveHeap())
	}
	lim.Sweep(now.Add(time.Hour))
	m.Sweep(now.Add(time.Hour))
	a.Wait()
	after := liveHeap()
	if got := usage.total.Load(); got != keys {
		t.Fatalf("stored: got %d, want %d", got, keys)
	}
	t.Logf("live heap above the store: %.1f MB peak (bound %.1f MB), %.1f MB once idle (bound %.1f MB)",
		float64(int64(peak)-int64(base))/1e6, float64(peakBound)/1e6,
		float64(int64(after)-int64(base))/1e6, float64(cacheBound+slack)/1e6)
	if grown := int64(peak) - int64(base); grown > peakBound {
		t.Errorf("peak live heap grew by %d bytes, want at most %d", grown, peakBound)
	}
	if grown := int64(after) - int64(base); grown > cacheBound+slack {
		t.Errorf("live heap once every key is idle grew by %d bytes, want at most %d (the cache's share)", grown, cacheBound+slack)
	}
}
