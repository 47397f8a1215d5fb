package storetest

import (
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// testUsageParts: the parts of a key's usage are kept like any usage id,
// exactly once per batch, and UsagePrefixed returns exactly the ids of one
// key's breakdown — not another key's whose id extends it, nor the key's
// own total — for the days asked.
func testUsageParts(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	k := newKey(t, "u", "k", base)
	mustCreate(t, s, k)
	other := k.ID + "9" // an id that extends k's, as a prefix must not match
	d1, d2, d3 := day(2026, 11, 22), day(2026, 11, 23), day(2026, 11, 24)
	assets := keystore.PartUsageID(k.ID, keystore.ByArea, "assets")
	workorders := keystore.PartUsageID(k.ID, keystore.ByArea, "workorders")
	ok2xx := keystore.PartUsageID(k.ID, keystore.ByStatus, "2xx")
	batch := []keystore.UsageDelta{
		{KeyID: k.ID, Day: d1, Requests: 5},
		{KeyID: assets, Day: d1, Requests: 4},
		{KeyID: workorders, Day: d1, Requests: 1},
		{KeyID: assets, Day: d2, Requests: 7},
		{KeyID: assets, Day: d3, Requests: 100},
		{KeyID: ok2xx, Day: d1, Requests: 5},
		{KeyID: keystore.PartUsageID(other, keystore.ByArea, "assets"), Day: d1, Requests: 50},
	}
	mustAddUsage(t, s, "parts-1", batch...)
	mustAddUsage(t, s, "parts-1", batch...) // a retried batch counts once

	got, err := s.UsagePrefixed(t.Context(), keystore.PartPrefix(k.ID, keystore.ByArea), d1, d2)
	if err != nil {
		t.Fatalf("UsagePrefixed: %v", err)
	}
	want := map[string][]keystore.DayUsage{
		assets:     {du(d1, 4), du(d2, 7)},
		workorders: {du(d1, 1)},
	}
	if len(got) != len(want) {
		t.Fatalf("UsagePrefixed(area of %s): got ids %v, want %v", k.ID, keysOf(got), keysOf(want))
	}
	for id, w := range want {
		g := got[id]
		if len(g) != len(w) {
			t.Fatalf("UsagePrefixed %s: got %v, want %v", id, g, w)
		}
		for i := range w {
			if !g[i].Day.Equal(w[i].Day) || g[i].Requests != w[i].Requests {
				t.Errorf("UsagePrefixed %s day %d: got %s:%d, want %s:%d", id, i,
					g[i].Day.Format(time.DateOnly), g[i].Requests, w[i].Day.Format(time.DateOnly), w[i].Requests)
			}
		}
	}
	st, err := s.UsagePrefixed(t.Context(), keystore.PartPrefix(k.ID, keystore.ByStatus), d1, d3)
	if err != nil {
		t.Fatalf("UsagePrefixed: %v", err)
	}
	if len(st) != 1 || len(st[ok2xx]) != 1 || st[ok2xx][0].Requests != 5 {
		t.Errorf("UsagePrefixed(status of %s): got %v, want only %s = 5", k.ID, st, ok2xx)
	}
	none, err := s.UsagePrefixed(t.Context(), keystore.PartPrefix(k.ID, keystore.ByArea), d3.AddDate(0, 0, 1), d3.AddDate(0, 0, 9))
	if err != nil || len(none) != 0 {
		t.Errorf("UsagePrefixed of days without parts: got %v, %v; want none", none, err)
	}
	// The key's own total is untouched by its parts.
	wantUsage(t, s, k.ID, d1, d3, []keystore.DayUsage{du(d1, 5)})
}

func keysOf(m map[string][]keystore.DayUsage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
