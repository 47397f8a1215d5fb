package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEmptyKeyStoreFileRefused: a 0-byte keys.db (a full disk, an
// interrupted copy) stops keygate at start with an error naming the file,
// instead of a new empty store that would drop every key.
func TestEmptyKeyStoreFileRefused(t *testing.T) {
	be := newBackend(t)
	in := prepare(t, floodConfig(be, ""))
	path := filepath.Join(in.dir, "keys.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := in.launch(); err != nil {
		t.Fatal(err)
	}
	err := in.waitReady(30 * time.Second)
	if err == nil {
		t.Fatal("keygate started on an empty keys.db")
	}
	for _, want := range []string{path, "empty", "restore it from a backup", "move the file away"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("start error does not mention %q:\n%v", want, err)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Fatalf("keys.db was changed: %v %v", fi, err)
	}
}
