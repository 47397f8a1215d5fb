package keystore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/poll"
)

// usageStore is an in-memory Store holding only usage: AddUsage (idempotent
// by batch id) and Usage. Other methods panic through the nil embedded Store.
type usageStore struct {
	Store

	mu       sync.Mutex
	batches  map[string]bool
	days     map[string]map[time.Time]int64 // key id → day → requests
	last     map[string]time.Time
	calls    int      // AddUsage calls
	ids      []string // batch id of every call
	addErr   error    // AddUsage fails with it (nothing committed)
	usageErr error    // Usage fails with it
	reads    int      // Usage calls
	added    chan struct{}
}

func newUsageStore() *usageStore {
	return &usageStore{batches: map[string]bool{}, days: map[string]map[time.Time]int64{}, last: map[string]time.Time{}}
}

func (s *usageStore) AddUsage(ctx context.Context, batchID string, deltas []UsageDelta) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	s.ids = append(s.ids, batchID)
	if s.addErr != nil {
		return s.addErr
	}
	if !s.batches[batchID] {
		s.batches[batchID] = true
		for _, d := range deltas {
			if s.days[d.KeyID] == nil {
				s.days[d.KeyID] = map[time.Time]int64{}
			}
			s.days[d.KeyID][d.Day] += d.Requests
			if d.LastUsed.After(s.last[d.KeyID]) {
				s.last[d.KeyID] = d.LastUsed
			}
		}
	}
	if s.added != nil {
		select {
		case s.added <- struct{}{}:
		default:
		}
	}
	return nil
}

func (s *usageStore) Usage(ctx context.Context, id string, from, to time.Time) ([]DayUsage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	if s.usageErr != nil {
		return nil, s.usageErr
	}
	var out []DayUsage
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		if n := s.days[id][d]; n > 0 {
			out = append(out, DayUsage{Day: d, Requests: n})
		}
	}
	return out, nil
}

func (s *usageStore) set(id string, day time.Time, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.days[id] == nil {
		s.days[id] = map[time.Time]int64{}
	}
	s.days[id][day] = n
}

func (s *usageStore) total(id string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, v := range s.days[id] {
		n += v
	}
	return n
}

func (s *usageStore) day(id string, day time.Time) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.days[id][day]
}

func (s *usageStore) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func (s *usageStore) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addErr = err
}

// lostAckStore commits to its inner store and then reports failure, as when
// the connection drops after COMMIT, while lose > 0.
type lostAckStore struct {
	*usageStore
	lose int
}

func (s *lostAckStore) AddUsage(ctx context.Context, batchID string, deltas []UsageDelta) error {
	if err := s.usageStore.AddUsage(ctx, batchID, deltas); err != nil {
		return err
	}
	if s.lose > 0 {
		s.lose--
		return fmt.Errorf("connection reset after commit: %w", ErrUnavailable)
	}
	return nil
}

func utcDay(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

func pendingTotal(m *Meter, id string) int64 {
	var n int64
	for _, d := range m.PendingUsage(id) {
		n += d.Requests
	}
	return n
}

func TestMeterCountAndPending(t *testing.T) {
	t.Parallel()
	m := NewMeter(newUsageStore(), MeterOptions{})
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for i := range 5 {
		m.Count("key_a", t0.Add(time.Duration(i)*time.Minute))
	}
	m.Count("key_b", t0)

	got := m.PendingUsage("key_a")
	want := []UsageDelta{{KeyID: "key_a", Day: utcDay(2026, 11, 23), Requests: 5, LastUsed: t0.Add(4 * time.Minute)}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("PendingUsage: got %v, want %v", got, want)
	}
	if got := m.PendingUsage("key_none"); got != nil {
		t.Fatalf("PendingUsage of unknown key: got %v, want nil", got)
	}
	tests := []struct {
		name  string
		id    string
		since time.Time
		want  int64
	}{
		{"today", "key_a", utcDay(2026, 11, 23), 5},
		{"month", "key_a", utcDay(2026, 11, 1), 5},
		{"tomorrow", "key_a", utcDay(2026, 11, 24), 0},
		{"other key", "key_b", utcDay(2026, 11, 23), 1},
		{"unknown key", "key_c", utcDay(2026, 11, 23), 0},
	}
	for _, tt := range tests {
		if got := m.LocalCount(tt.id, tt.since); got != tt.want {
			t.Errorf("%s: LocalCount(%s, %v): got %d, want %d", tt.name, tt.id, tt.since, got, tt.want)
		}
	}
}

func TestMeterDayRollover(t *testing.T) {
	t.Parallel()
	s := newUsageStore()
	m := NewMeter(s, MeterOptions{})
	ctx := t.Context()
	midnight := utcDay(2026, 11, 24)

	m.Count("key_a", midnight.Add(-time.Second))     // Nov 23
	m.Count("key_a", midnight)                       // Nov 24
	m.Count("key_a", midnight.Add(-time.Nanosecond)) // Nov 23, stamped before but counted after midnight
	m.Count("key_a", midnight.Add(time.Hour))        // Nov 24
	got := m.PendingUsage("key_a")
	if len(got) != 2 || got[0].Day != utcDay(2026, 11, 23) || got[0].Requests != 2 ||
		got[1].Day != midnight || got[1].Requests != 2 {
		t.Fatalf("PendingUsage: got %v, want 2 on Nov 23 and 2 on Nov 24", got)
	}
	if got[0].LastUsed.After(midnight) {
		t.Errorf("LastUsed of Nov 23: got %v, want before midnight", got[0].LastUsed)
	}
	if n := m.LocalCount("key_a", midnight); n != 2 {
		t.Errorf("LocalCount since Nov 24: got %d, want 2", n)
	}

	// Flushing fails for two days: Nov 26 reuses Nov 24's slot and the
	// Nov 24 count must survive; a late Nov 23 request still lands on Nov 23.
	s.fail(ErrUnavailable)
	if err := m.Flush(ctx); err == nil {
		t.Fatal("Flush: got nil error, want failure")
	}
	m.Count("key_a", midnight.Add(time.Hour)) // Nov 24, after the failed batch
	m.Count("key_a", midnight.Add(48*time.Hour))
	m.Count("key_a", midnight.Add(48*time.Hour+time.Second))
	m.Count("key_a", midnight.Add(-time.Hour)) // Nov 23 again
	m.Count("key_a", midnight.Add(24*time.Hour))
	if n := m.LocalCount("key_a", midnight); n != 2+1+2+1 {
		t.Errorf("LocalCount since Nov 24: got %d, want 6", n)
	}
	s.fail(nil)
	if err := m.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	for _, tt := range []struct {
		day  time.Time
		want int64
	}{{utcDay(2026, 11, 23), 3}, {midnight, 3}, {utcDay(2026, 11, 25), 1}, {utcDay(2026, 11, 26), 2}} {
		if got := s.day("key_a", tt.day); got != tt.want {
			t.Errorf("stored %v: got %d, want %d", tt.day.Format(time.DateOnly), got, tt.want)
		}
	}
	if got := m.PendingUsage("key_a"); got != nil {
		t.Errorf("PendingUsage after flush: got %v, want nil", got)
	}
	if want := midnight.Add(48*time.Hour + time.Second); !s.last["key_a"].Equal(want) {
		t.Errorf("stored last used: got %v, want %v", s.last["key_a"], want)
	}
}

func TestMeterFlushOneBatch(t *testing.T) {
	t.Parallel()
	s := newUsageStore()
	m := NewMeter(s, MeterOptions{})
	ctx := t.Context()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

	if err := m.Flush(ctx); err != nil || s.callCount() != 0 {
		t.Fatalf("Flush with nothing counted: got err %v and %d calls, want nil and 0", err, s.callCount())
	}
	const keys = 500
	for i := range keys {
		for range i%3 + 1 {
			m.Count(fmt.Sprintf("key_%03d", i), now)
		}
	}
	if err := m.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if got := s.callCount(); got != 1 {
		t.Fatalf("AddUsage calls: got %d, want 1 for %d keys", got, keys)
	}
	for i := range keys {
		id := fmt.Sprintf("key_%03d", i)
		if got, want := s.total(id), int64(i%3+1); got != want {
			t.Fatalf("stored %s: got %d, want %d", id, got, want)
		}
		if n := m.LocalCount(id, now); n != 0 {
			t.Fatalf("LocalCount(%s) after flush: got %d, want 0", id, n)
		}
	}
	if err := m.Flush(ctx); err != nil || s.callCount() != 1 {
		t.Fatalf("second Flush: got err %v and %d calls, want nil and 1", err, s.callCount())
	}
	// Committed counts feed the limiter.
	e := m.lookup("key_002")
	if got := e.committed(false, dayIndex(now)); got != 3 {
		t.Errorf("committed day: got %d, want 3", got)
	}
	if got := e.committed(true, monthIndex(now)); got != 3 {
		t.Errorf("committed month: got %d, want 3", got)
	}
}

func TestMeterFlushFailureKeepsCounts(t *testing.T) {
	t.Parallel()
	s := newUsageStore()
	m := NewMeter(s, MeterOptions{})
	ctx := t.Context()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

	for range 3 {
		m.Count("key_a", now)
	}
	s.fail(ErrUnavailable)
	if err := m.Flush(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Flush: got %v, want ErrUnavailable", err)
	}
	m.Count("key_a", now)
	if got := m.LocalCount("key_a", now); got != 4 {
		t.Fatalf("LocalCount after failed flush: got %d, want 4", got)
	}
	if got := pendingTotal(m, "key_a"); got != 4 {
		t.Fatalf("PendingUsage after failed flush: got %d, want 4", got)
	}
	if err := m.Flush(ctx); err == nil {
		t.Fatal("second Flush: got nil, want failure")
	}
	s.fail(nil)
	if err := m.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if got := s.total("key_a"); got != 4 {
		t.Fatalf("stored: got %d, want 4", got)
	}
	// Calls: failed batch, its failed retry, its retry, then the new count.
	if len(s.ids) != 4 || s.ids[0] != s.ids[1] || s.ids[1] != s.ids[2] || s.ids[3] == s.ids[0] {
		t.Fatalf("batch ids: got %v, want the failed batch resent unchanged, then a new one", s.ids)
	}
	if got := m.LocalCount("key_a", now); got != 0 {
		t.Fatalf("LocalCount: got %d, want 0", got)
	}
}

func TestMeterLostAckNotDoubleCounted(t *testing.T) {
	t.Parallel()
	inner := newUsageStore()
	s := &lostAckStore{usageStore: inner, lose: 1}
	m := NewMeter(s, MeterOptions{})
	ctx := t.Context()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

	for range 5 {
		m.Count("key_a", now)
	}
	m.Count("key_b", now)
	if err := m.Flush(ctx); err == nil {
		t.Fatal("Flush: got nil error, want the lost acknowledgement")
	}
	if got := m.LocalCount("key_a", now); got != 5 {
		t.Fatalf("LocalCount with unacknowledged batch: got %d, want 5", got)
	}
	m.Count("key_a", now)
	if err := m.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if a, b := inner.total("key_a"), inner.total("key_b"); a != 6 || b != 1 {
		t.Fatalf("stored: got key_a %d and key_b %d, want 6 and 1", a, b)
	}
	if pa := m.PendingUsage("key_a"); pa != nil {
		t.Fatalf("PendingUsage: got %v, want nil", pa)
	}
}

func TestMeterParallelCountExact(t *testing.T) {
	t.Parallel()
	s := newUsageStore()
	m := NewMeter(s, MeterOptions{})
	ctx := context.Background()
	midnight := utcDay(2026, 11, 24)
	const (
		workers = 8
		per     = 4000
	)
	keys := []string{"key_a", "key_b", "key_c"}
	var wg sync.WaitGroup
	var stop atomic.Bool
	flushes := make(chan error, 1)
	go func() {
		var err error
		for !stop.Load() {
			err = errors.Join(err, m.Flush(ctx))
		}
		flushes <- err
	}()
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				// Straddle midnight, out of order across goroutines.
				at := midnight.Add(time.Duration(i-per/2+w) * time.Millisecond)
				m.Count(keys[(i+w)%len(keys)], at)
			}
		})
	}
	wg.Wait()
	stop.Store(true)
	if err := <-flushes; err != nil {
		t.Fatalf("Flush: %v", err)
	}
	var want [2]int64
	for w := range workers {
		for i := range per {
			if i-per/2+w < 0 {
				want[0]++
			} else {
				want[1]++
			}
		}
	}
	var got [2]int64
	for _, id := range keys {
		got[0] += s.day(id, utcDay(2026, 11, 23))
		got[1] += s.day(id, midnight)
		for _, d := range m.PendingUsage(id) {
			got[dayIndex(d.Day)-dayIndex(utcDay(2026, 11, 23))] += d.Requests
		}
	}
	if got != want {
		t.Fatalf("counts per day (stored + pending): got %v, want %v", got, want)
	}
}

func TestMeterRunAndClose(t *testing.T) {
	t.Parallel()
	s := newUsageStore()
	s.added = make(chan struct{}, 1)
	m := NewMeter(s, MeterOptions{})
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { m.Run(ctx, time.Millisecond); close(done) }()

	m.Count("key_a", now)
	select {
	case <-s.added:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not flush")
	}
	m.Count("key_a", now)
	if err := m.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop after Close")
	}
	if got := s.total("key_a"); got != 2 {
		t.Fatalf("stored: got %d, want 2", got)
	}
}

func TestMeterCloseGivesUp(t *testing.T) {
	t.Parallel()
	s := newUsageStore()
	s.fail(ErrUnavailable)
	m := NewMeter(s, MeterOptions{})
	m.Count("key_a", time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Close(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Close: got %v, want ErrUnavailable", err)
	}
	if got := pendingTotal(m, "key_a"); got != 1 {
		t.Fatalf("pending after failed Close: got %d, want 1", got)
	}
}

// gate holds one store call: it closes entered when the call arrives and
// waits for release. With readFirst a Usage call reads before it waits, so
// it returns what the store held when it arrived.
type gate struct {
	entered, release chan struct{}
	readFirst        bool
}

func newGate() *gate { return &gate{entered: make(chan struct{}), release: make(chan struct{})} }

func (g *gate) hold() {
	close(g.entered)
	<-g.release
}

// gateStore is a usageStore whose next Usage or AddUsage call can be held
// by a gate, to force an interleaving of reads and flushes. A held AddUsage
// has committed: it is a flush in flight whose acknowledgement is pending.
type gateStore struct {
	*usageStore
	usageGate, addGate atomic.Pointer[gate]
}

func (s *gateStore) Usage(ctx context.Context, id string, from, to time.Time) ([]DayUsage, error) {
	g := s.usageGate.Swap(nil)
	if g != nil && g.readFirst {
		days, err := s.usageStore.Usage(ctx, id, from, to)
		g.hold()
		return days, err
	}
	if g != nil {
		g.hold()
	}
	return s.usageStore.Usage(ctx, id, from, to)
}

func (s *gateStore) AddUsage(ctx context.Context, batchID string, deltas []UsageDelta) error {
	err := s.usageStore.AddUsage(ctx, batchID, deltas)
	if g := s.addGate.Swap(nil); g != nil {
		g.hold()
	}
	return err
}

func (s *usageStore) readCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

// pendingAfter is PendingUsageAfter with a read of s, returning the stored
// total and the pending total of key_a on Nov 23.
func pendingAfter(t *testing.T, m *Meter, s Store) (stored, pending int64) {
	t.Helper()
	day := utcDay(2026, 11, 23)
	deltas, err := m.PendingUsageAfter(context.Background(), "key_a", day, day, func(ctx context.Context) error {
		days, err := s.Usage(ctx, "key_a", day, day)
		stored = 0 // read again
		for _, d := range days {
			stored += d.Requests
		}
		return err
	})
	if err != nil {
		t.Fatalf("PendingUsageAfter: %v", err)
	}
	for _, d := range deltas {
		pending += d.Requests
	}
	return stored, pending
}

func TestMeterPendingUsageAfterFlushDuringRead(t *testing.T) {
	t.Parallel()
	s := &gateStore{usageStore: newUsageStore()}
	m := NewMeter(s, MeterOptions{})
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for range 3 {
		m.Count("key_a", now)
	}
	// The read sees the store before a flush that then commits all 3
	// and releases them before the pending counts are read: they would
	// be in neither.
	g := &gate{entered: make(chan struct{}), release: make(chan struct{}), readFirst: true}
	s.usageGate.Store(g)
	type result struct{ stored, pending int64 }
	done := make(chan result)
	go func() {
		st, p := pendingAfter(t, m, s)
		done <- result{st, p}
	}()
	<-g.entered
	if err := m.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	close(g.release)
	if r := <-done; r.stored+r.pending != 3 {
		t.Fatalf("stored %d + pending %d: want 3 in all", r.stored, r.pending)
	}
	if n := s.readCount(); n != 2 {
		t.Fatalf("store reads: got %d, want 2 (the first overlapped a flush)", n)
	}
}

func TestMeterPendingUsageAfterFlushInFlight(t *testing.T) {
	t.Parallel()
	s := &gateStore{usageStore: newUsageStore()}
	m := NewMeter(s, MeterOptions{})
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for range 3 {
		m.Count("key_a", now)
	}
	// The store has committed the batch but Flush has not had the
	// acknowledgement: the 3 are both stored and held.
	g := newGate()
	s.addGate.Store(g)
	flushed := make(chan error)
	go func() { flushed <- m.Flush(context.Background()) }()
	<-g.entered
	type result struct{ stored, pending int64 }
	done := make(chan result)
	go func() {
		st, p := pendingAfter(t, m, s)
		done <- result{st, p}
	}()
	if err := poll.Until(10*time.Second, "the read reached the store", func() bool { return s.readCount() > 0 }); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		t.Fatalf("answered %+v while the flush was in flight; want it to wait", r)
	case <-time.After(20 * time.Millisecond):
	}
	close(g.release)
	if err := <-flushed; err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if r := <-done; r.stored != 3 || r.pending != 0 {
		t.Fatalf("got stored %d + pending %d, want 3 + 0", r.stored, r.pending)
	}
}

func TestMeterPendingUsageAfterFailedBatch(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	t.Run("not committed", func(t *testing.T) {
		t.Parallel()
		s := newUsageStore()
		m := NewMeter(s, MeterOptions{})
		for range 3 {
			m.Count("key_a", now)
		}
		s.fail(ErrUnavailable)
		if err := m.Flush(context.Background()); err == nil {
			t.Fatal("Flush: got nil, want an error")
		}
		if st, p := pendingAfter(t, m, s); st != 0 || p != 3 {
			t.Fatalf("got stored %d + pending %d, want 0 + 3", st, p)
		}
	})
	t.Run("committed, acknowledgement lost", func(t *testing.T) {
		t.Parallel()
		s := &lostAckStore{usageStore: newUsageStore(), lose: 1}
		m := NewMeter(s, MeterOptions{})
		for range 3 {
			m.Count("key_a", now)
		}
		if err := m.Flush(context.Background()); err == nil {
			t.Fatal("Flush: got nil, want the lost acknowledgement")
		}
		// Only the next flush can tell whether the store has the
		// batch: until then the answer errs high, never low.
		if st, p := pendingAfter(t, m, s); st != 3 || p != 3 {
			t.Fatalf("got stored %d + pending %d, want 3 + 3 (unknown outcome counted as pending)", st, p)
		}
		if err := m.Flush(context.Background()); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		if st, p := pendingAfter(t, m, s); st != 3 || p != 0 {
			t.Fatalf("after the retry: got stored %d + pending %d, want 3 + 0", st, p)
		}
	})
}

func TestMeterPendingUsageAfterReadError(t *testing.T) {
	t.Parallel()
	m := NewMeter(newUsageStore(), MeterOptions{})
	m.Count("key_a", time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	day := utcDay(2026, 11, 23)
	_, err := m.PendingUsageAfter(context.Background(), "key_a", day, day, func(context.Context) error { return ErrUnavailable })
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want the read's error", err)
	}
	got, err := m.PendingUsageAfter(context.Background(), "key_none", day, day, func(context.Context) error { return nil })
	if err != nil || got != nil {
		t.Fatalf("unknown key: got %v, %v; want nil, nil", got, err)
	}
}

// TestMeterOwnViewExact checks that a quota's view of this instance's
// requests (local plus committed) counts each exactly once while flushes
// move them from one to the other.
func TestMeterOwnViewExact(t *testing.T) {
	t.Parallel()
	m := NewMeter(newUsageStore(), MeterOptions{})
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	e := m.entry("key_a")
	day := dayIndex(now)
	var started, counted atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			started.Add(1)
			m.Count("key_a", now)
			counted.Add(1)
			if err := m.Flush(context.Background()); err != nil {
				t.Errorf("Flush: %v", err)
				return
			}
		}
	}()
	for range 20000 {
		lo := counted.Load()
		local, committed := e.own(day, false, day)
		hi := started.Load()
		if n := local + committed; n < lo || n > hi {
			close(stop)
			<-done
			t.Fatalf("local %d + committed %d = %d, want between %d and %d", local, committed, n, lo, hi)
		}
	}
	close(stop)
	<-done
}
