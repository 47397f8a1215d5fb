package keystore

import (
	"context"
	"sync"
	"testing"
	"time"
)

// The parts of a key's usage flush with the key's own count, in the same
// batch, under their own usage ids, and none of them claims a last use.
func TestMeterPartsFlushWithTheKey(t *testing.T) {
	t.Parallel()
	store := newUsageStore()
	m := NewMeter(store, MeterOptions{})
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for i := range 5 {
		tl := m.Count("key_a", now)
		tl.Area("assets")
		if i == 4 {
			tl.Area("workorders") // a GraphQL document of two areas
			tl.Status(404)
			continue
		}
		tl.Status(200 + i)
	}
	if got := m.PendingPartIDs(PartPrefix("key_a", ByArea)); len(got) != 2 {
		t.Errorf("PendingPartIDs(area): got %v, want the two areas", got)
	}
	if err := m.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if n := store.callCount(); n != 1 {
		t.Errorf("AddUsage calls: got %d, want 1 (parts travel in the key's batch)", n)
	}
	day := utcDay(2026, 11, 23)
	want := map[string]int64{
		"key_a":                                5,
		PartUsageID("key_a", ByArea, "assets"): 5,
		PartUsageID("key_a", ByArea, "workorders"): 1,
		PartUsageID("key_a", ByStatus, "2xx"):      4,
		PartUsageID("key_a", ByStatus, "4xx"):      1,
	}
	for id, n := range want {
		if got := store.day(id, day); got != n {
			t.Errorf("stored %s: got %d, want %d", id, got, n)
		}
	}
	store.mu.Lock()
	for id, lu := range store.last {
		if id != "key_a" && !lu.IsZero() {
			t.Errorf("%s claims a last use (%v): only keys have one", id, lu)
		}
	}
	store.mu.Unlock()
	if got := m.PendingPartIDs(PartPrefix("key_a", ByArea)); len(got) != 0 {
		t.Errorf("PendingPartIDs after the flush: got %v, want none", got)
	}
	if n := m.PendingTotal(); n != 0 {
		t.Errorf("PendingTotal after the flush: got %d", n)
	}
	m.Count("key_a", now).Status(503)
	if n := m.PendingTotal(); n != 1 {
		t.Errorf("PendingTotal counts parts: got %d, want 1 (the request once)", n)
	}
}

// A part whose entry Sweep dropped is counted into a new one, through the
// key's entry that still links the old one: nothing is lost.
func TestMeterPartSweptThenCountedAgain(t *testing.T) {
	t.Parallel()
	store, m, now := newPartsMeter(time.Minute)
	tl := m.Count("key_a", now)
	tl.Area("assets")
	if err := m.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if n := m.Sweep(now.Add(time.Hour)); n != 2 {
		t.Fatalf("Sweep: dropped %d entries, want 2 (the key and its area)", n)
	}
	tl.Area("assets") // the old tally still links the dropped entry
	m.Count("key_a", now).Area("assets")
	if err := m.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if got := store.day(PartUsageID("key_a", ByArea, "assets"), utcDay(2026, 11, 23)); got != 3 {
		t.Errorf("stored area count: got %d, want 3", got)
	}
}

// Parts counted from many goroutines, racing flushes and sweeps, add up
// exactly.
func TestMeterPartsParallelExact(t *testing.T) {
	t.Parallel()
	store, m, now := newPartsMeter(time.Nanosecond)
	const workers, each = 4, 2000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := m.Flush(context.Background()); err != nil {
				t.Errorf("Flush: %v", err)
				return
			}
			m.Sweep(now.Add(time.Hour))
		}
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				tl := m.Count("key_a", now)
				tl.Area([]string{"assets", "workorders"}[(w+i)%2])
				tl.Status(200)
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-flushed
	if err := m.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	day := utcDay(2026, 11, 23)
	a, wo := store.day(PartUsageID("key_a", ByArea, "assets"), day), store.day(PartUsageID("key_a", ByArea, "workorders"), day)
	if a+wo != workers*each || a != wo {
		t.Errorf("areas: got assets %d + workorders %d, want %d each", a, wo, workers*each/2)
	}
	if got := store.day(PartUsageID("key_a", ByStatus, "2xx"), day); got != workers*each {
		t.Errorf("2xx: got %d, want %d", got, workers*each)
	}
	if got := store.day("key_a", day); got != workers*each {
		t.Errorf("key: got %d, want %d", got, workers*each)
	}
}

func TestStatusClass(t *testing.T) {
	t.Parallel()
	for code, want := range map[int]string{100: "1xx", 101: "1xx", 200: "2xx", 204: "2xx", 304: "3xx", 404: "4xx", 499: "4xx", 502: "5xx", 599: "5xx", 600: "other", 99: "other", 0: "other"} {
		if got := StatusClass(code); got != want {
			t.Errorf("StatusClass(%d): got %q, want %q", code, got, want)
		}
	}
}

func TestSplitPartUsageID(t *testing.T) {
	t.Parallel()
	id := PartUsageID("key_a", ByArea, "assets")
	if k, by, name, ok := SplitPartUsageID(id); !ok || k != "key_a" || by != ByArea || name != "assets" {
		t.Errorf("SplitPartUsageID(%q): got %q %q %q %v", id, k, by, name, ok)
	}
	for id, isKey := range map[string]bool{"key_a": true, UserUsageID("MXINTADM"): false, id: false} {
		if got := countsAsKey(id); got != isKey {
			t.Errorf("countsAsKey(%q): got %v, want %v", id, got, isKey)
		}
	}
	if _, _, _, ok := SplitPartUsageID(UserUsageID("MXINTADM")); ok {
		t.Errorf("a user's usage id taken for a part")
	}
}

// Counting a request's parts on the hit path allocates nothing once they
// are linked.
func TestTallyAllocatesNothing(t *testing.T) {
	m := NewMeter(newUsageStore(), MeterOptions{})
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	tl := m.Count("key_a", now)
	tl.Area("assets")
	tl.Status(200)
	if n := testing.AllocsPerRun(100, func() {
		tl := m.Count("key_a", now)
		tl.Area("assets")
		tl.Status(200)
	}); n != 0 {
		t.Errorf("Count+Area+Status: %v allocations, want 0", n)
	}
}

// newPartsMeter returns a Meter over a fresh usage store that forgets idle
// entries after idle, and the instant the tests count at.
func newPartsMeter(idle time.Duration) (*usageStore, *Meter, time.Time) {
	store := newUsageStore()
	return store, NewMeter(store, MeterOptions{IdleAfter: idle}), time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
}
