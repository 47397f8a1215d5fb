package keystore_test

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

// Counts the store cannot take at shutdown go to the journal and are added
// exactly once at the next start, even when the store had in fact taken
// a batch whose answer was lost.
func TestJournalKeepsCountsTheStoreCannotTake(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	mem := storetest.NewMemory()
	day := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	meter := keystore.NewMeter(mem, keystore.MeterOptions{})
	for range 7 {
		meter.Count("key_a", day.Add(time.Hour))
	}
	meter.Count("key_b", day.Add(2*time.Hour))

	mem.SetFail(errors.Join(keystore.ErrUnavailable, errors.New("disk full")))
	if err := meter.Flush(ctx); err == nil {
		t.Fatal("flush to a failing store succeeded")
	}
	j := &keystore.Journal{Path: filepath.Join(t.TempDir(), "keys.db.usage-journal")}
	if err := meter.FlushTo(ctx, j); err != nil {
		t.Fatalf("FlushTo(journal): %v", err)
	}
	if n := meter.PendingTotal(); n != 0 {
		t.Fatalf("pending after journalling: %d, want 0", n)
	}

	mem.SetFail(nil)
	total := func(id string) int64 {
		days, err := mem.Usage(ctx, id, day, day)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, d := range days {
			n += d.Requests
		}
		return n
	}
	raw, err := os.ReadFile(j.Path)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := j.Replay(ctx, mem); err != nil || n != 1 {
		t.Fatalf("Replay = %d, %v; want 1 batch", n, err)
	}
	if a, b := total("key_a"), total("key_b"); a != 7 || b != 1 {
		t.Fatalf("after replay: key_a %d key_b %d, want 7 and 1", a, b)
	}
	if _, err := os.Stat(j.Path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("journal not removed after replay: %v", err)
	}
	// The same journal replayed again (a crash after AddUsage, before the
	// remove) adds nothing: batch ids.
	if err := os.WriteFile(j.Path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Replay(ctx, mem); err != nil {
		t.Fatal(err)
	}
	if a := total("key_a"); a != 7 {
		t.Fatalf("a second replay double counted: key_a %d, want 7", a)
	}
}

func TestJournalDamage(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	good := `{"batch":"ub_1","deltas":[{"KeyID":"key_a","Day":"2026-11-23T00:00:00Z","Requests":2,"LastUsed":"2026-11-23T01:00:00Z"}]}` + "\n"

	cut := &keystore.Journal{Path: filepath.Join(dir, "cut")}
	if err := os.WriteFile(cut.Path, []byte(good+`{"batch":"ub_2","del`), 0o600); err != nil {
		t.Fatal(err)
	}
	mem := storetest.NewMemory()
	if n, err := cut.Replay(ctx, mem); err != nil || n != 1 {
		t.Fatalf("a journal cut short in its last line: %d, %v; want the complete batch replayed", n, err)
	}

	bad := &keystore.Journal{Path: filepath.Join(dir, "bad")}
	if err := os.WriteFile(bad.Path, []byte("garbage\n"+good), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Replay(ctx, storetest.NewMemory()); err == nil || !strings.Contains(err.Error(), "line 1 is damaged") {
		t.Fatalf("damaged journal: %v, want an error naming the line", err)
	}
	if _, err := os.Stat(bad.Path); err != nil {
		t.Fatalf("a damaged journal must be kept: %v", err)
	}
	if n, err := (&keystore.Journal{Path: filepath.Join(dir, "none")}).Replay(ctx, mem); n != 0 || err != nil {
		t.Fatalf("missing journal: %d, %v; want nothing to do", n, err)
	}
}
