package bolt

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/storetest"
)

func openTemp(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "keys.db"), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) keystore.Store {
		return openTemp(t, Options{})
	})
}

func TestOpenLockedFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keys.db")
	first, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer first.Close()

	start := time.Now()
	second, err := Open(path, Options{Timeout: 100 * time.Millisecond})
	if err == nil {
		second.Close()
		t.Fatalf("second Open of a locked file: got no error, want one")
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("second Open waited %s, want about the 100ms timeout", waited)
	}
	for _, want := range []string{path, "another process holds it"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q: want it to contain %q", err, want)
		}
	}
}

func TestOpenModes(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "missing", "data")
	path := filepath.Join(dir, "keys.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	tests := []struct {
		name string
		path string
		want os.FileMode
	}{
		{"directory", dir, os.ModeDir | 0o700},
		{"file", path, 0o600},
	}
	for _, tt := range tests {
		fi, err := os.Stat(tt.path)
		if err != nil {
			t.Fatalf("Stat(%s): %v", tt.name, err)
		}
		if fi.Mode() != tt.want {
			t.Errorf("%s mode: got %v, want %v", tt.name, fi.Mode(), tt.want)
		}
	}
}

func TestReopenKeepsData(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keys.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	k := &keystore.Key{ID: "key_reopen", Name: "n", User: "u", Digest: keystore.DigestOf("secret"), CreatedAt: now,
		Rate: &keystore.Rate{Limit: 3, Per: 90 * time.Second}}
	if err := s.CreateKey(t.Context(), k, keystore.CreateLimits{}, now); err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	defer s.Close()
	got, err := s.LookupDigest(t.Context(), keystore.DigestOf("secret"))
	if err != nil {
		t.Fatalf("LookupDigest after reopening: %v", err)
	}
	if got.ID != k.ID || *got.Rate != *k.Rate {
		t.Errorf("after reopening: got %s %+v, want %s %+v", got.ID, *got.Rate, k.ID, *k.Rate)
	}
	// The creation sequence survives, so new keys list after old ones.
	k2 := &keystore.Key{ID: "key_after", Name: "n", User: "u", Digest: keystore.DigestOf("other"), CreatedAt: now}
	if err := s.CreateKey(t.Context(), k2, keystore.CreateLimits{}, now); err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	keys, _, err := s.ListKeys(t.Context(), keystore.ListFilter{})
	if err != nil || len(keys) != 2 || keys[0].ID != k.ID || keys[1].ID != k2.ID {
		t.Errorf("ListKeys after reopening: got %d keys, %v, want [%s %s]", len(keys), err, k.ID, k2.ID)
	}
}

func TestClosedStoreIsUnavailable(t *testing.T) {
	t.Parallel()
	s, err := Open(filepath.Join(t.TempDir(), "keys.db"), Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.LookupDigest(t.Context(), keystore.DigestOf("x")); !errors.Is(err, keystore.ErrUnavailable) {
		t.Errorf("LookupDigest on a closed store: got error %v, want ErrUnavailable", err)
	}
	if err := s.AppendAudit(t.Context(), keystore.AuditEvent{Action: "x"}); !errors.Is(err, keystore.ErrUnavailable) {
		t.Errorf("AppendAudit on a closed store: got error %v, want ErrUnavailable", err)
	}
}

// fakeClock is a settable clock for Options.Now.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

func TestUsageBatchIDsExpire(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	s := openTemp(t, Options{Now: clock.Now, BatchRetention: 24 * time.Hour})
	day := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	delta := []keystore.UsageDelta{{KeyID: "key_x", Day: day, Requests: 1, LastUsed: day}}

	steps := []struct {
		name    string
		advance time.Duration
		batch   string
		want    int64
	}{
		{"first", 0, "b1", 1},
		{"repeat within retention", 23 * time.Hour, "b1", 1},
		{"another batch prunes nothing yet", 0, "b2", 2},
		{"repeat after retention is forgotten", 2 * time.Hour, "b3", 3},
		{"b1 was pruned", 0, "b1", 4},
		{"b2 is still known", 0, "b2", 4},
	}
	for _, st := range steps {
		clock.t = clock.t.Add(st.advance)
		if err := s.AddUsage(t.Context(), st.batch, delta); err != nil {
			t.Fatalf("%s: AddUsage: %v", st.name, err)
		}
		got, err := s.Usage(t.Context(), "key_x", day, day)
		if err != nil || len(got) != 1 || got[0].Requests != st.want {
			t.Fatalf("%s: Usage: got %v, %v, want %d requests", st.name, got, err, st.want)
		}
	}
}
