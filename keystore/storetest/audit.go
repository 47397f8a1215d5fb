package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// auditFixture appends five events, mixed over two keys and none, one
// minute apart, and returns them in append order.
func auditFixture(t *testing.T, s keystore.Store) []keystore.AuditEvent {
	t.Helper()
	events := []keystore.AuditEvent{
		{Actor: "local", Action: "key.create", KeyID: "key_A", Details: map[string]any{
			"name":   "mx-int",
			"rights": []any{"assets:read", "workorders:write"},
			"count":  3,
			"ratio":  0.5,
			"flag":   true,
			"none":   nil,
			"nested": map[string]any{"grace": "24h", "n": int64(1)},
		}},
		{Actor: "key_admin", Action: "key.create", KeyID: "key_B"},
		{Actor: "key_admin", Action: "key.rotate", KeyID: "key_A", Details: map[string]any{"grace": "24h"}},
		{Actor: "local", Action: "user.revoke", KeyID: "", Details: map[string]any{"user": "MXINTADM", "revoked": 0}},
		{Actor: "key_admin", Action: "key.revoke", KeyID: "key_A", Details: map[string]any{}},
	}
	for i := range events {
		events[i].At = at(time.Duration(i)*time.Minute + 7*time.Microsecond)
		if err := s.AppendAudit(t.Context(), events[i]); err != nil {
			t.Fatalf("AppendAudit(%s): %v", events[i].Action, err)
		}
	}
	return events
}

// listAudit walks every page of f like listAll.
func listAudit(t *testing.T, s keystore.Store, f keystore.AuditFilter) ([]keystore.AuditEvent, int) {
	t.Helper()
	limit := f.Limit
	if limit == 0 {
		limit = 100
	}
	var all []keystore.AuditEvent
	for page := 1; ; page++ {
		if page > 10000 {
			t.Fatalf("ListAudit(%+v): more than 10000 pages; is the cursor advancing?", f)
		}
		events, next, err := s.ListAudit(t.Context(), f)
		if err != nil {
			t.Fatalf("ListAudit(%+v) page %d: %v", f, page, err)
		}
		if len(events) > limit {
			t.Fatalf("ListAudit(%+v) page %d: got %d events, want at most %d", f, page, len(events), limit)
		}
		if len(events) == 0 && next != "" {
			t.Fatalf("ListAudit(%+v) page %d: got an empty page with next cursor %q", f, page, next)
		}
		all = append(all, events...)
		if next == "" {
			return all, page
		}
		if next == f.Cursor {
			t.Fatalf("ListAudit(%+v) page %d: next cursor %q did not advance", f, page, next)
		}
		f.Cursor = next
	}
}

func wantEvents(t *testing.T, got, want []keystore.AuditEvent) {
	t.Helper()
	if len(got) != len(want) {
		var actions []string
		for _, e := range got {
			actions = append(actions, e.KeyID+" "+e.Action)
		}
		t.Fatalf("events: got %d %v, want %d", len(got), actions, len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if !sameTime(g.At, w.At) || g.Actor != w.Actor || g.Action != w.Action || g.KeyID != w.KeyID {
			t.Errorf("event %d: got {%s %s %s %q}, want {%s %s %s %q}", i,
				g.At.UTC().Format(time.RFC3339Nano), g.Actor, g.Action, g.KeyID,
				w.At.UTC().Format(time.RFC3339Nano), w.Actor, w.Action, w.KeyID)
		}
		if gd, wd := normJSON(t, g.Details), normJSON(t, w.Details); gd != wd {
			t.Errorf("event %d (%s) details: got %s, want %s", i, w.Action, gd, wd)
		}
		if i > 0 && g.Seq >= got[i-1].Seq {
			t.Errorf("event %d: got Seq %d after %d, want decreasing sequence numbers", i, g.Seq, got[i-1].Seq)
		}
	}
}

func newestFirst(events []keystore.AuditEvent, keep ...int) []keystore.AuditEvent {
	var out []keystore.AuditEvent
	for _, i := range keep {
		out = append(out, events[i])
	}
	slices.Reverse(out)
	return out
}

func testAuditRoundTrip(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	events := auditFixture(t, s)
	got, next, err := s.ListAudit(t.Context(), keystore.AuditFilter{})
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	if next != "" {
		t.Errorf("ListAudit: got next %q, want \"\"", next)
	}
	wantEvents(t, got, newestFirst(events, 0, 1, 2, 3, 4))
}

func testAuditFilterAndPagination(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	events := auditFixture(t, s)
	tests := []struct {
		name      string
		filter    keystore.AuditFilter
		want      []keystore.AuditEvent
		wantPages int
	}{
		{"all, limit 2", keystore.AuditFilter{Limit: 2}, newestFirst(events, 0, 1, 2, 3, 4), 3},
		{"all, limit 1", keystore.AuditFilter{Limit: 1}, newestFirst(events, 0, 1, 2, 3, 4), 5},
		{"all, limit 5", keystore.AuditFilter{Limit: 5}, newestFirst(events, 0, 1, 2, 3, 4), 1},
		{"key A", keystore.AuditFilter{KeyID: "key_A"}, newestFirst(events, 0, 2, 4), 1},
		{"key A, limit 1", keystore.AuditFilter{KeyID: "key_A", Limit: 1}, newestFirst(events, 0, 2, 4), 3},
		{"key A, limit 2", keystore.AuditFilter{KeyID: "key_A", Limit: 2}, newestFirst(events, 0, 2, 4), 2},
		{"key B", keystore.AuditFilter{KeyID: "key_B", Limit: 2}, newestFirst(events, 1), 1},
		{"unknown key", keystore.AuditFilter{KeyID: "key_C"}, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, pages := listAudit(t, s, tt.filter)
			wantEvents(t, got, tt.want)
			if pages != tt.wantPages {
				t.Errorf("pages: got %d, want %d", pages, tt.wantPages)
			}
		})
	}

	t.Run("events appended between pages", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		events := auditFixture(t, s)
		page1, next, err := s.ListAudit(t.Context(), keystore.AuditFilter{Limit: 2})
		if err != nil {
			t.Fatalf("ListAudit(page 1): %v", err)
		}
		if err := s.AppendAudit(t.Context(), keystore.AuditEvent{At: at(time.Hour), Actor: "local", Action: "key.create", KeyID: "key_D"}); err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
		rest, _ := listAudit(t, s, keystore.AuditFilter{Limit: 2, Cursor: next})
		wantEvents(t, append(page1, rest...), newestFirst(events, 0, 1, 2, 3, 4))
	})
}

func testAuditEmptyAndBadCursor(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	events, next, err := s.ListAudit(t.Context(), keystore.AuditFilter{})
	if err != nil || len(events) != 0 || next != "" {
		t.Errorf("ListAudit on an empty log: got %d events, next %q, error %v, want none, \"\", nil", len(events), next, err)
	}
	auditFixture(t, s)
	for _, c := range badCursors {
		if events, _, err := s.ListAudit(t.Context(), keystore.AuditFilter{Cursor: c}); !errors.Is(err, keystore.ErrInvalidCursor) {
			t.Errorf("ListAudit with cursor %q: got %d events, error %v, want an error wrapping keystore.ErrInvalidCursor", c, len(events), err)
		}
	}
}
