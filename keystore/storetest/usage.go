package storetest

import (
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

func du(d time.Time, n int64) keystore.DayUsage {
	return keystore.DayUsage{Day: d, Requests: n}
}

func mustAddUsage(t *testing.T, s keystore.Store, batchID string, deltas ...keystore.UsageDelta) {
	t.Helper()
	if err := s.AddUsage(t.Context(), batchID, deltas); err != nil {
		t.Fatalf("AddUsage(%s): %v", batchID, err)
	}
}

func wantUsage(t *testing.T, s keystore.Store, id string, from, to time.Time, want []keystore.DayUsage) {
	t.Helper()
	got, err := s.Usage(t.Context(), id, from, to)
	if err != nil {
		t.Fatalf("Usage(%s, %s, %s): %v", id, from.Format(time.DateOnly), to.Format(time.DateOnly), err)
	}
	format := func(us []keystore.DayUsage) string {
		s := "["
		for i, u := range us {
			if i > 0 {
				s += " "
			}
			s += fmt.Sprintf("%s:%d", u.Day.UTC().Format(time.RFC3339), u.Requests)
		}
		return s + "]"
	}
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = got[i].Day.Equal(want[i].Day) && got[i].Requests == want[i].Requests
	}
	if !ok {
		t.Errorf("Usage(%s, %s, %s): got %s, want %s", id, from.Format(time.DateOnly), to.Format(time.DateOnly), format(got), format(want))
	}
}

// wantLastUsed checks LastUsedAt within a minute of want (stores may
// coarsen it) or nil when want is nil.
func wantLastUsed(t *testing.T, s keystore.Store, id string, want *time.Time) {
	t.Helper()
	got := mustGet(t, s, id).LastUsedAt
	switch {
	case want == nil && got == nil:
	case want == nil || got == nil || got.Sub(*want).Abs() > time.Minute:
		t.Errorf("LastUsedAt of %s: got %s, want %s (±1m)", id, fmtTimePtr(got), fmtTimePtr(want))
	}
}

func testUsageSums(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	a := newKey(t, "u", "a", base)
	b := newKey(t, "u", "b", base)
	c := newKey(t, "u", "unused", base)
	for _, k := range []*keystore.Key{a, b, c} {
		mustCreate(t, s, k)
	}
	d1, d2, d3 := day(2026, 11, 20), day(2026, 11, 21), day(2026, 11, 23)
	mustAddUsage(t, s, "batch-1",
		keystore.UsageDelta{KeyID: a.ID, Day: d1, Requests: 5, LastUsed: d1.Add(10 * time.Hour)},
		keystore.UsageDelta{KeyID: a.ID, Day: d3, Requests: 2, LastUsed: d3.Add(8 * time.Hour)},
		keystore.UsageDelta{KeyID: b.ID, Day: d1, Requests: 7, LastUsed: d1.Add(time.Hour)},
		keystore.UsageDelta{KeyID: a.ID, Day: d1, Requests: 3, LastUsed: d1.Add(11 * time.Hour)},
	)
	mustAddUsage(t, s, "batch-2",
		keystore.UsageDelta{KeyID: a.ID, Day: d2, Requests: 4, LastUsed: d2.Add(12 * time.Hour)},
		keystore.UsageDelta{KeyID: a.ID, Day: d1, Requests: 1, LastUsed: d1.Add(23 * time.Hour)},
	)
	mustAddUsage(t, s, "batch-empty")

	tests := []struct {
		name     string
		id       string
		from, to time.Time
		want     []keystore.DayUsage
	}{
		{"all days", a.ID, d1, d3, []keystore.DayUsage{du(d1, 9), du(d2, 4), du(d3, 2)}},
		{"wide range", a.ID, d1.AddDate(0, -1, 0), d3.AddDate(0, 1, 0), []keystore.DayUsage{du(d1, 9), du(d2, 4), du(d3, 2)}},
		{"one day", a.ID, d2, d2, []keystore.DayUsage{du(d2, 4)}},
		{"bounds are inclusive", a.ID, d2, d3, []keystore.DayUsage{du(d2, 4), du(d3, 2)}},
		{"day without requests inside", a.ID, d2.AddDate(0, 0, 1), d3, []keystore.DayUsage{du(d3, 2)}},
		{"before", a.ID, d1.AddDate(0, 0, -30), d1.AddDate(0, 0, -1), nil},
		{"after", a.ID, d3.AddDate(0, 0, 1), d3.AddDate(0, 0, 30), nil},
		{"other key", b.ID, d1, d3, []keystore.DayUsage{du(d1, 7)}},
		{"unused key", c.ID, d1, d3, nil},
		{"unknown key", "key_doesnotexist000000", d1, d3, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantUsage(t, s, tt.id, tt.from, tt.to, tt.want)
		})
	}
	totals := []struct {
		name     string
		from, to time.Time
		want     map[string]int64
	}{
		{"totals, all days", d1, d3, map[string]int64{a.ID: 15, b.ID: 7}},
		{"totals, one day", d2, d2, map[string]int64{a.ID: 4}},
		{"totals, bounds are inclusive", d1, d2, map[string]int64{a.ID: 13, b.ID: 7}},
		{"totals, nothing", d3.AddDate(0, 0, 1), d3.AddDate(0, 0, 9), map[string]int64{}},
	}
	for _, tt := range totals {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := s.UsageTotals(t.Context(), tt.from, tt.to)
			if err != nil {
				t.Fatalf("UsageTotals: %v", err)
			}
			if !maps.Equal(got, tt.want) {
				t.Fatalf("UsageTotals(%s, %s): got %v, want %v", tt.from.Format(time.DateOnly), tt.to.Format(time.DateOnly), got, tt.want)
			}
		})
	}
}

func testUsageIdempotent(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	k := newKey(t, "u", "k", base)
	mustCreate(t, s, k)
	d := day(2026, 11, 23)
	delta := keystore.UsageDelta{KeyID: k.ID, Day: d, Requests: 10, LastUsed: d.Add(time.Hour)}
	mustAddUsage(t, s, "batch-1", delta)
	mustAddUsage(t, s, "batch-1", delta)
	mustAddUsage(t, s, "batch-1", keystore.UsageDelta{KeyID: k.ID, Day: d, Requests: 99, LastUsed: d.Add(2 * time.Hour)})
	wantUsage(t, s, k.ID, d, d, []keystore.DayUsage{du(d, 10)})
	wantLastUsed(t, s, k.ID, ptr(d.Add(time.Hour)))

	mustAddUsage(t, s, "batch-2", delta)
	wantUsage(t, s, k.ID, d, d, []keystore.DayUsage{du(d, 20)})
}

func testUsageLastUsedAt(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	a := newKey(t, "u", "a", base)
	b := newKey(t, "u", "b", base)
	b.LastUsedAt = ptr(at(-time.Hour))
	c := newKey(t, "u", "unused", base)
	for _, k := range []*keystore.Key{a, b, c} {
		mustCreate(t, s, k.Clone())
	}
	d := day(2026, 11, 23)
	steps := []struct {
		name   string
		deltas []keystore.UsageDelta
		wantA  *time.Time
		wantB  *time.Time
	}{
		{"first use", []keystore.UsageDelta{
			{KeyID: a.ID, Day: d, Requests: 1, LastUsed: at(time.Hour)},
			{KeyID: a.ID, Day: d, Requests: 1, LastUsed: at(3 * time.Hour)},
			{KeyID: a.ID, Day: d, Requests: 1, LastUsed: at(2 * time.Hour)},
		}, ptr(at(3 * time.Hour)), b.LastUsedAt},
		{"later use", []keystore.UsageDelta{
			{KeyID: a.ID, Day: d, Requests: 1, LastUsed: at(4 * time.Hour)},
			{KeyID: b.ID, Day: d, Requests: 1, LastUsed: at(time.Hour)},
		}, ptr(at(4 * time.Hour)), ptr(at(time.Hour))},
		{"older batch does not move it back", []keystore.UsageDelta{
			{KeyID: a.ID, Day: d.AddDate(0, 0, -1), Requests: 1, LastUsed: at(-20 * time.Hour)},
			{KeyID: b.ID, Day: d, Requests: 1, LastUsed: at(-3 * time.Hour)},
		}, ptr(at(4 * time.Hour)), ptr(at(time.Hour))},
	}
	for i, st := range steps {
		mustAddUsage(t, s, fmt.Sprintf("batch-%d", i), st.deltas...)
		wantLastUsed(t, s, a.ID, st.wantA)
		wantLastUsed(t, s, b.ID, st.wantB)
		wantLastUsed(t, s, c.ID, nil)
		if t.Failed() {
			t.Fatalf("after step %q", st.name)
		}
	}
	// AddUsage leaves every other field alone.
	got := mustGet(t, s, a.ID)
	got.LastUsedAt = nil
	wantKey(t, "GetKey after AddUsage", got, a)
}

// testUsageConcurrent sends distinct batches concurrently, each twice.
func testUsageConcurrent(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	k := newKey(t, "u", "k", base)
	mustCreate(t, s, k)
	d := day(2026, 11, 23)
	const n = 10
	var wg sync.WaitGroup
	for i := range 2 * n {
		batch := fmt.Sprintf("batch-%d", i%n)
		wg.Go(func() {
			err := s.AddUsage(t.Context(), batch, []keystore.UsageDelta{
				{KeyID: k.ID, Day: d, Requests: 1, LastUsed: d.Add(time.Hour)},
			})
			if err != nil {
				t.Errorf("AddUsage(%s): %v", batch, err)
			}
		})
	}
	wg.Wait()
	wantUsage(t, s, k.ID, d, d, []keystore.DayUsage{du(d, n)})
}
