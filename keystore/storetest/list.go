package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// listAll walks every page of f and checks the paging rules: no page larger
// than the limit, no empty page before the end, no key twice. It returns the
// keys and the number of pages.
func listAll(t *testing.T, s keystore.Store, f keystore.ListFilter) ([]*keystore.Key, int) {
	t.Helper()
	limit := f.Limit
	if limit == 0 {
		limit = 100
	}
	var all []*keystore.Key
	seen := map[string]bool{}
	for page := 1; ; page++ {
		if page > 10000 {
			t.Fatalf("ListKeys(%+v): more than 10000 pages; is the cursor advancing?", f)
		}
		keys, next, err := s.ListKeys(t.Context(), f)
		if err != nil {
			t.Fatalf("ListKeys(%+v) page %d: %v", f, page, err)
		}
		if len(keys) > limit {
			t.Fatalf("ListKeys(%+v) page %d: got %d keys, want at most %d", f, page, len(keys), limit)
		}
		if len(keys) == 0 && next != "" {
			t.Fatalf("ListKeys(%+v) page %d: got an empty page with next cursor %q", f, page, next)
		}
		for _, k := range keys {
			if seen[k.ID] {
				t.Fatalf("ListKeys(%+v) page %d: key %s returned twice", f, page, k.ID)
			}
			seen[k.ID] = true
		}
		all = append(all, keys...)
		if next == "" {
			return all, page
		}
		if next == f.Cursor {
			t.Fatalf("ListKeys(%+v) page %d: next cursor %q did not advance", f, page, next)
		}
		f.Cursor = next
	}
}

func testListKeysPagination(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	// Ids are random, so creation order is not id order.
	want := ids(createKeys(t, s, 7, "u", "page", base))
	tests := []struct {
		name      string
		limit     int
		wantPages int
	}{
		{"limit 1", 1, 7},
		{"limit 2", 2, 4},
		{"limit 3", 3, 3},
		{"limit 6", 6, 2},
		{"limit equals count", 7, 1},
		{"limit above count", 8, 1},
		{"default limit", 0, 1},
		{"maximum limit", 1000, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, pages := listAll(t, s, keystore.ListFilter{Limit: tt.limit})
			if !slices.Equal(ids(got), want) {
				t.Errorf("keys: got %v, want %v (creation order)", ids(got), want)
			}
			if pages != tt.wantPages {
				t.Errorf("pages: got %d, want %d", pages, tt.wantPages)
			}
		})
	}
}

func testListKeysDefaultLimit(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	want := ids(createKeys(t, s, 101, "u", "many", base))

	keys, next, err := s.ListKeys(t.Context(), keystore.ListFilter{})
	if err != nil {
		t.Fatalf("ListKeys: %v", err)
	}
	if len(keys) != 100 || next == "" {
		t.Fatalf("ListKeys with Limit 0: got %d keys and next %q, want 100 keys and a cursor", len(keys), next)
	}
	rest, next, err := s.ListKeys(t.Context(), keystore.ListFilter{Cursor: next})
	if err != nil {
		t.Fatalf("ListKeys(second page): %v", err)
	}
	if next != "" {
		t.Errorf("ListKeys(second page): got next %q, want \"\"", next)
	}
	if got := ids(append(keys, rest...)); !slices.Equal(got, want) {
		t.Errorf("keys: got %v, want %v", got, want)
	}
}

// testListKeysStableCursor checks that a cursor stays valid while keys are
// created and changed between pages.
func testListKeysStableCursor(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	keys := createKeys(t, s, 5, "u", "stable", base)

	page1, next, err := s.ListKeys(t.Context(), keystore.ListFilter{Limit: 2})
	if err != nil {
		t.Fatalf("ListKeys(page 1): %v", err)
	}
	late := newKey(t, "u", "late", at(time.Hour))
	mustCreate(t, s, late)
	if _, err := s.UpdateKey(t.Context(), keys[2].ID, func(k *keystore.Key) error {
		k.RevokedAt = ptr(base)
		k.Name = "renamed"
		return nil
	}); err != nil {
		t.Fatalf("UpdateKey: %v", err)
	}
	rest, _ := listAll(t, s, keystore.ListFilter{Limit: 2, Cursor: next})

	got := ids(append(page1, rest...))
	want := append(ids(keys), late.ID)
	if !slices.Equal(got, want) {
		t.Errorf("keys across pages: got %v, want %v", got, want)
	}
}

func testListKeysFilters(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	fixture := []struct {
		user, name         string
		expires, revokedAt *time.Time
	}{
		{"ALICE", "mx-int", nil, nil},                                 // 0 active
		{"ALICE", "mx-int-2", ptr(at(time.Hour)), nil},                // 1 expires in an hour
		{"ALICE", "report", nil, ptr(at(-time.Hour))},                 // 2 revoked
		{"BOB", "mx-int", nil, nil},                                   // 3 active
		{"BOB", "mx", ptr(at(-time.Hour)), nil},                       // 4 expired
		{"BOB", "MX-INT", nil, nil},                                   // 5 active, name differs in case
		{"alice", "mx-int", nil, nil},                                 // 6 user differs in case
		{"ALICE", "late-revoke", nil, ptr(at(time.Hour))},             // 7 revoked in an hour
		{"BOB", "both", ptr(at(-2 * time.Hour)), ptr(at(-time.Hour))}, // 8 expired, then revoked
	}
	var all []string
	for i, f := range fixture {
		k := newKey(t, f.user, f.name, at(time.Duration(i)*time.Second))
		k.ExpiresAt, k.RevokedAt = f.expires, f.revokedAt
		if i%3 == 1 {
			k.CreatedBy = "key_parent000000000000001"
		}
		mustCreate(t, s, k)
		all = append(all, k.ID)
	}
	pick := func(idx ...int) []string {
		out := []string{}
		for _, i := range idx {
			out = append(out, all[i])
		}
		return out
	}
	later := at(time.Hour)
	tests := []struct {
		name   string
		filter keystore.ListFilter
		want   []string
	}{
		{"no filter", keystore.ListFilter{}, all},
		{"user", keystore.ListFilter{User: "ALICE"}, pick(0, 1, 2, 7)},
		{"user is case sensitive", keystore.ListFilter{User: "alice"}, pick(6)},
		{"unknown user", keystore.ListFilter{User: "CAROL"}, pick()},
		{"name is exact", keystore.ListFilter{Name: "mx-int"}, pick(0, 3, 6)},
		{"name is not a prefix", keystore.ListFilter{Name: "mx"}, pick(4)},
		{"active now", keystore.ListFilter{Status: keystore.StatusActive, Now: base}, pick(0, 1, 3, 5, 6, 7)},
		{"expired now", keystore.ListFilter{Status: keystore.StatusExpired, Now: base}, pick(4)},
		{"revoked now", keystore.ListFilter{Status: keystore.StatusRevoked, Now: base}, pick(2, 8)},
		{"active later", keystore.ListFilter{Status: keystore.StatusActive, Now: later}, pick(0, 3, 5, 6)},
		{"expired later", keystore.ListFilter{Status: keystore.StatusExpired, Now: later}, pick(1, 4)},
		{"revoked later", keystore.ListFilter{Status: keystore.StatusRevoked, Now: later}, pick(2, 7, 8)},
		{"active long ago", keystore.ListFilter{Status: keystore.StatusActive, Now: at(-3 * time.Hour)}, all},
		{"user and status", keystore.ListFilter{User: "ALICE", Status: keystore.StatusActive, Now: base}, pick(0, 1, 7)},
		{"user and name", keystore.ListFilter{User: "BOB", Name: "mx-int"}, pick(3)},
		{"created by", keystore.ListFilter{CreatedBy: "key_parent000000000000001"}, pick(1, 4, 7)},
		{"created by is exact", keystore.ListFilter{CreatedBy: "key_parent"}, pick()},
		{"created by and user", keystore.ListFilter{CreatedBy: "key_parent000000000000001", User: "ALICE"}, pick(1, 7)},
		{"created by local and status", keystore.ListFilter{CreatedBy: "local", Status: keystore.StatusActive, Now: base}, pick(0, 3, 5, 6)},
		{"nothing matches all three", keystore.ListFilter{User: "ALICE", Name: "mx-int", Status: keystore.StatusRevoked, Now: base}, pick()},
	}
	for _, tt := range tests {
		for _, limit := range []int{1, 2, 0} {
			t.Run(fmt.Sprintf("%s/limit %d", tt.name, limit), func(t *testing.T) {
				t.Parallel()
				f := tt.filter
				f.Limit = limit
				got, _ := listAll(t, s, f)
				if !slices.Equal(ids(got), tt.want) {
					t.Errorf("ListKeys(%+v): got %v, want %v", f, ids(got), tt.want)
				}
			})
		}
	}
}

func testListKeysEmpty(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	for _, f := range []keystore.ListFilter{
		{},
		{User: "u", Limit: 1},
		{Status: keystore.StatusActive, Now: base},
	} {
		keys, next, err := s.ListKeys(t.Context(), f)
		if err != nil || len(keys) != 0 || next != "" {
			t.Errorf("ListKeys(%+v) on an empty store: got %d keys, next %q, error %v, want none, \"\", nil", f, len(keys), next, err)
		}
	}
}

func testListKeysBadCursor(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	createKeys(t, s, 2, "u", "k", base)
	for _, c := range badCursors {
		if keys, _, err := s.ListKeys(t.Context(), keystore.ListFilter{Cursor: c}); !errors.Is(err, keystore.ErrInvalidCursor) {
			t.Errorf("ListKeys with cursor %q: got %d keys, error %v, want an error wrapping keystore.ErrInvalidCursor", c, len(keys), err)
		}
	}
}

// badCursors are cursors no store makes.
var badCursors = []string{"!!not a cursor!!", "-1", "1x", " 1"}
