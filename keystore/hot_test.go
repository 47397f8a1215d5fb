package keystore

import (
	"testing"
	"time"
)

func hotPrincipal(t *testing.T, k *Key) *Principal {
	t.Helper()
	d := DigestOf("kg_" + k.ID)
	k.Digest = d
	var tbl profiles
	return newPrincipal(&d, k, UserLimits{}, &tbl, time.Now())
}

// TestMeterHotEntriesAfterSweep: a Principal remembers its Meter entries;
// after Sweep dropped them, its counts go to the live entries and are
// stored exactly once.
func TestMeterHotEntriesAfterSweep(t *testing.T) {
	t.Parallel()
	s := newUsageStore()
	m := NewMeter(s, MeterOptions{IdleAfter: time.Minute})
	ctx := t.Context()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	p := hotPrincipal(t, &Key{ID: "key_hot", User: "MXINTADM"})

	m.CountKey(p, now)
	m.CountUser(p, now)
	h := p.hotEntries()
	if h.meter != m || h.meterKey == nil || h.meterKey != m.lookup("key_hot") || h.meterUser != m.lookup(p.UserUsageID()) {
		t.Fatalf("hot entries after the first count: %+v, want the Meter's entries of the key and its user", h)
	}
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := m.Sweep(now.Add(2 * time.Minute)); n != 2 {
		t.Fatalf("Sweep: dropped %d, want 2", n)
	}
	later := now.Add(3 * time.Minute)
	m.CountKey(p, later).Area("assets")
	m.CountUser(p, later)
	if h2 := p.hotEntries(); h2.meterKey == h.meterKey || h2.meterKey != m.lookup("key_hot") || h2.meterUser != m.lookup(p.UserUsageID()) {
		t.Fatal("after Sweep the Principal still points at the dropped entries")
	}
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if k, u := s.total("key_hot"), s.total(p.UserUsageID()); k != 2 || u != 2 {
		t.Fatalf("stored: key %d, user %d, want 2 and 2", k, u)
	}
	if a := s.total(PartUsageID("key_hot", ByArea, "assets")); a != 1 {
		t.Fatalf("stored area part: %d, want 1", a)
	}

	// Another Meter's entries are not used for this one.
	m2 := NewMeter(newUsageStore(), MeterOptions{})
	m2.CountKey(p, later)
	if h3 := p.hotEntries(); h3.meter != m2 || h3.meterKey != m2.lookup("key_hot") {
		t.Fatal("a second Meter counted into the first one's entry")
	}
}

// TestLimiterHotEntriesAfterSweep: a Principal remembers its limiter
// entry; after Sweep dropped it, the key's next requests use the live one.
func TestLimiterHotEntriesAfterSweep(t *testing.T) {
	t.Parallel()
	l := NewLimiter(LimiterOptions{IdleAfter: time.Second})
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	p := hotPrincipal(t, &Key{ID: "key_hot", User: "MXINTADM", Rate: &Rate{Limit: 1, Per: time.Second}})
	if d := l.AdmitPrincipal(p, now, nil, nil); !d.Allowed {
		t.Fatalf("first request: %+v, want allowed", d)
	}
	old := p.hotEntries().limitKey
	if old == nil || old != l.entry("key_hot") {
		t.Fatal("the Principal does not remember its limiter entry")
	}
	if d := l.AdmitPrincipal(p, now, nil, nil); d.Allowed {
		t.Fatalf("second request in the same second: %+v, want limited (the remembered entry holds the state)", d)
	}
	if n := l.Sweep(now.Add(time.Hour)); n != 1 {
		t.Fatalf("Sweep: dropped %d, want 1", n)
	}
	later := now.Add(time.Hour)
	if d := l.AdmitPrincipal(p, later, nil, nil); !d.Allowed {
		t.Fatalf("first request after Sweep: %+v, want allowed", d)
	}
	if d := l.AdmitPrincipal(p, later, nil, nil); d.Allowed {
		t.Fatalf("second request after Sweep: %+v, want limited", d)
	}
	if now := p.hotEntries().limitKey; now == old || now != l.entry("key_hot") {
		t.Fatal("after Sweep the Principal still points at the dropped entry")
	}
}
