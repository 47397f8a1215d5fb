package keystore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/poll"
	"github.com/keygate/keygate/keystore"
)

// holdStore holds its next Usage call (after reading) or AddUsage call
// (after committing) until released, to force an interleaving of a usage
// report with a Meter's flush.
type holdStore struct {
	keystore.Store
	holdUsage, holdAdd atomic.Pointer[hold]
	reads              atomic.Int64
}

type hold struct{ entered, release chan struct{} }

func newHold() *hold { return &hold{make(chan struct{}), make(chan struct{})} }

func (s *holdStore) Usage(ctx context.Context, id string, from, to time.Time) ([]keystore.DayUsage, error) {
	days, err := s.Store.Usage(ctx, id, from, to)
	s.reads.Add(1)
	if h := s.holdUsage.Swap(nil); h != nil {
		close(h.entered)
		<-h.release
	}
	return days, err
}

func (s *holdStore) AddUsage(ctx context.Context, batchID string, deltas []keystore.UsageDelta) error {
	err := s.Store.AddUsage(ctx, batchID, deltas)
	if h := s.holdAdd.Swap(nil); h != nil {
		close(h.entered)
		<-h.release
	}
	return err
}

func usageToday(t *testing.T, f *fixture, id string) int64 {
	t.Helper()
	day := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	days, err := f.svc.Usage(context.Background(), keystore.LocalActor(), id, day, day)
	if err != nil {
		t.Errorf("Usage: %v", err)
		return -1
	}
	return days[0].Requests
}

func TestUsageConsistentWithFlush(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	setup := func(t *testing.T) (*fixture, *holdStore, *keystore.Meter, string) {
		f := newFixture(t)
		k, _ := f.create(t, keystore.LocalActor(), "U", "assets:read")
		s := &holdStore{Store: f.store}
		f.svc.Store = s
		m := keystore.NewMeter(s, keystore.MeterOptions{})
		f.svc.Pending = m
		for range 3 {
			m.Count(k.ID, now)
		}
		return f, s, m, k.ID
	}
	t.Run("flush between the store read and the pending counts", func(t *testing.T) {
		t.Parallel()
		f, s, m, id := setup(t)
		h := newHold()
		s.holdUsage.Store(h)
		got := make(chan int64)
		go func() { got <- usageToday(t, f, id) }()
		<-h.entered // read: 0 stored
		if err := m.Flush(context.Background()); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		close(h.release) // now 0 pending
		if n := <-got; n != 3 {
			t.Fatalf("Usage: got %d, want 3", n)
		}
	})
	t.Run("store read while a committed batch awaits its acknowledgement", func(t *testing.T) {
		t.Parallel()
		f, s, m, id := setup(t)
		h := newHold()
		s.holdAdd.Store(h)
		flushed := make(chan error)
		go func() { flushed <- m.Flush(context.Background()) }()
		<-h.entered // 3 stored and 3 still pending
		got := make(chan int64)
		go func() { got <- usageToday(t, f, id) }()
		if err := poll.Until(10*time.Second, "the usage read reached the store", func() bool { return s.reads.Load() > 0 }); err != nil {
			t.Fatal(err)
		}
		close(h.release)
		if err := <-flushed; err != nil {
			t.Fatalf("Flush: %v", err)
		}
		if n := <-got; n != 3 {
			t.Fatalf("Usage: got %d, want 3", n)
		}
	})
	t.Run("settled", func(t *testing.T) {
		t.Parallel()
		f, _, m, id := setup(t)
		if n := usageToday(t, f, id); n != 3 {
			t.Fatalf("Usage before flush: got %d, want 3", n)
		}
		if err := m.Flush(context.Background()); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		m.Count(id, now)
		if n := usageToday(t, f, id); n != 4 {
			t.Fatalf("Usage after flush: got %d, want 4", n)
		}
	})
}

// UsageBy splits each day by area or answer class, flushed and unflushed
// counts together, exactly once each, and every day has a (maybe empty)
// split.
func TestUsageByPart(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k, m := f.meteredKey(t)
	d1 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	d2 := d1.AddDate(0, 0, 1)
	count := func(at time.Time, area string, status int) {
		tl := m.Count(k.ID, at)
		tl.Area(area)
		tl.Status(status)
	}
	count(d1, "assets", 200)
	count(d1, "assets", 404)
	if err := m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	count(d1, "workorders", 200) // unflushed
	count(d2, "assets", 503)
	from, to := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	ctx := context.Background()
	areas, err := f.svc.UsageBy(ctx, keystore.LocalActor(), k.ID, from, to, keystore.ByArea)
	if err != nil {
		t.Fatalf("UsageBy(area): %v", err)
	}
	statuses, err := f.svc.UsageBy(ctx, keystore.LocalActor(), k.ID, from, to, keystore.ByStatus)
	if err != nil {
		t.Fatalf("UsageBy(status): %v", err)
	}
	want := []struct {
		requests        int64
		areas, statuses string
	}{
		{0, "map[]", "map[]"},
		{3, "map[assets:2 workorders:1]", "map[2xx:2 4xx:1]"},
		{1, "map[assets:1]", "map[5xx:1]"},
	}
	if len(areas) != len(want) || len(statuses) != len(want) {
		t.Fatalf("days: got %d and %d, want %d", len(areas), len(statuses), len(want))
	}
	for i, w := range want {
		a, s := areas[i], statuses[i]
		if a.Requests != w.requests || fmt.Sprint(a.By) != w.areas || fmt.Sprint(s.By) != w.statuses || a.By == nil {
			t.Errorf("%s: got %d %v %v, want %d %s %s", a.Day.Format(time.DateOnly), a.Requests, a.By, s.By, w.requests, w.areas, w.statuses)
		}
	}
	if _, err := f.svc.UsageBy(ctx, keystore.LocalActor(), k.ID, from, to, "user"); keystore.KindOf(err) != keystore.KindInvalid {
		t.Errorf("UsageBy(user): got %v, want an invalid-request error", err)
	}
	if _, err := f.svc.UsageBy(ctx, keystore.LocalActor(), "key_none", from, to, keystore.ByArea); keystore.KindOf(err) != keystore.KindNotFound {
		t.Errorf("UsageBy of an unknown key: got %v, want not found", err)
	}
}

// The class of an answer is counted when the answer is done, so a flush can
// store the key's count before its class is counted. The report still
// includes the unflushed class, like UsageBy does.
func TestReportByIncludesPartsPendingAfterTheKeysFlush(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k, m := f.meteredKey(t)
	tl := m.Count(k.ID, f.clock.Now())
	tl.Area("assets")
	if err := m.Flush(context.Background()); err != nil { // while the request is answered
		t.Fatal(err)
	}
	tl.Status(200)
	ctx := context.Background()
	days, err := f.svc.UsageBy(ctx, keystore.LocalActor(), k.ID, time.Time{}, time.Time{}, keystore.ByStatus)
	if err != nil {
		t.Fatalf("UsageBy: %v", err)
	}
	if got := days[len(days)-1]; got.Requests != 1 || fmt.Sprint(got.By) != "map[2xx:1]" {
		t.Fatalf("UsageBy(status) today: got %d %v, want 1 map[2xx:1]", got.Requests, got.By)
	}
	rep, err := f.svc.Report(ctx, keystore.LocalActor(), time.Time{}, time.Time{}, "", keystore.ByStatus)
	if err != nil {
		t.Fatalf("Report: %v", err)
	}
	if len(rep.Keys) != 1 || rep.Keys[0].Requests != 1 || fmt.Sprint(rep.Keys[0].By) != "map[2xx:1]" || fmt.Sprint(rep.By) != "map[2xx:1]" {
		t.Fatalf("Report(status): got %+v, want the key's 1 request as map[2xx:1] in its row and the report", rep)
	}
}

// meteredKey creates a key of user U with assets:read, and a Meter whose
// unflushed counts the service reads.
func (f *fixture) meteredKey(t *testing.T) (*keystore.Key, *keystore.Meter) {
	t.Helper()
	k, _ := f.create(t, keystore.LocalActor(), "U", "assets:read")
	m := keystore.NewMeter(f.store, keystore.MeterOptions{})
	f.svc.Pending = m
	return k, m
}
