package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestShutdownWithPostgresCutJournalsCounts: a SIGTERM while Postgres is cut
// keeps the unflushed counts in the local journal (exit 0), and the next
// start adds them to the store exactly once. If the journal cannot be
// written either, keygate exits non-zero saying counts were lost.
func TestShutdownWithPostgresCutJournalsCounts(t *testing.T) {
	db := newTestDB(t)
	be := newBackend(t)
	proxy := newPGProxy(t, db.target())
	in := start(t, pgConfig(be, "max_conns 4", "flush_interval 1h"), pgDSNEnv+"="+db.via(proxy.addr))
	c := &http.Client{}
	url := in.siteURL + assetPath
	k := in.createKey(newKeyFields("journalled"))
	send := func(n int) {
		t.Helper()
		for i := range n {
			if code, body := get(c, url, k.Key); code != 200 {
				t.Fatalf("request %d: got %d %s, want 200", i+1, code, body)
			}
		}
	}
	exitCode := func() int {
		t.Helper()
		in.stop()
		return in.cmd.ProcessState.ExitCode()
	}

	send(300)
	proxy.cut()
	if code := exitCode(); code != 0 {
		t.Fatalf("SIGTERM with Postgres cut and a writable journal: exit %d, want 0\n%s", code, in.logs())
	}
	if !strings.Contains(in.logs(), "they were saved locally and are added at the next start") {
		t.Fatalf("no log line saying the counts were journalled:\n%s", in.logs())
	}
	journals, _ := filepath.Glob(filepath.Join(in.dir, "data", "caddy", "keygate", "usage-journal-*"))
	if len(journals) != 1 {
		t.Fatalf("journal files: got %v, want one", journals)
	}

	proxy.restore()
	in.usageRestart()
	if got := in.usageOf(k.ID); got != 300 {
		t.Fatalf("usage after the restart: got %d, want 300 (the journalled counts, once)", got)
	}
	if _, err := os.Stat(journals[0]); !os.IsNotExist(err) {
		t.Fatalf("journal still there after its replay: %v", err)
	}
	in.stop()
	in.usageRestart()
	if got := in.usageOf(k.ID); got != 300 {
		t.Fatalf("usage after a second restart: got %d, want 300 (replayed once)", got)
	}

	// Neither the store nor the journal: counts are lost, and keygate
	// says so with a non-zero exit. (A file where the journal's directory
	// goes stops it even for root.)
	send(50)
	proxy.cut()
	dir := filepath.Join(in.dir, "data", "caddy", "keygate")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code := exitCode(); code == 0 {
		t.Fatalf("SIGTERM with Postgres cut and no journal: exit 0, want non-zero\n%s", in.logs())
	}
	if !strings.Contains(in.stderr.String(), "usage counts were lost at shutdown") {
		t.Fatalf("stderr does not say counts were lost:\n%s", in.stderr.String())
	}
	os.Remove(dir)
	proxy.restore()
}
