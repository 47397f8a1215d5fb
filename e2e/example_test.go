package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExampleUnixAdminAndKeyNamesNotLogged runs Caddyfile.example as it
// ships: its admin endpoint on a unix socket of mode 0600, used by the CLI,
// and keys sent under names keygate does not read (X-Api-Key, Api-Key,
// X-Api-Token, ?APIKEY=, ?ApiKey=) kept out of its real logs.
func TestExampleUnixAdminAndKeyNamesNotLogged(t *testing.T) {
	be := newBackend(t)
	runDir, err := os.MkdirTemp("", "kg") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(runDir) })
	sock := filepath.Join(runDir, "admin.sock")
	varDir := t.TempDir()
	sitePort := freePort(t)
	env := append(exampleEnv(t, be, varDir, sitePort), "KEYGATE_RUN_DIR="+runDir)
	in := prepare(t, func(int, int, string) string { return exampleConfig(t, 0, "") }, env...)
	in.adminAddr = "unix/" + sock // for in.cli; there is no TCP admin endpoint
	in.siteURL = fmt.Sprintf("http://127.0.0.1:%d", sitePort)
	if err := in.launch(); err != nil {
		t.Fatal(err)
	}

	// The CLI over the socket: poll `license` until keygate answers.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, stderr, code := in.cli("license")
		if code == 0 {
			break
		}
		select {
		case <-in.done:
			t.Fatalf("keygate exited at start:\n%s", in.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the CLI did not reach keygate over %s within 30s: %s", sock, stderr)
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not synchronisation
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket %s: mode %v, want a socket of mode 0600", sock, fi.Mode())
	}
	keyFile := filepath.Join(in.dir, "mx.apikey")
	if _, stderr, code := in.cli("create", "--name", "mx", "--user", "MXINTADM", "--rights", "assets:read", "--out", keyFile); code != 0 {
		t.Fatalf("create over the socket: exit %d: %s", code, stderr)
	}
	raw, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(string(raw))
	if stdout, stderr, code := in.cli("list"); code != 0 || !strings.Contains(stdout, "mx") {
		t.Fatalf("list over the socket: exit %d, stdout %q, stderr %q; want the new key listed", code, stdout, stderr)
	}

	asset := in.siteURL + "/maximo/oslc/os/mxapiasset"
	if code, body, _ := call(t, "GET", asset, hdr("apikey", key)); code != 200 {
		t.Fatalf("the key in its own header: got %d %s, want 200", code, body)
	}
	if code, body, _ := call(t, "GET", asset+"?apikey="+url.QueryEscape(key), nil); code != 200 {
		t.Fatalf("the key in ?apikey=: got %d %s, want 200", code, body)
	}
	// Names keygate does not read: refused, and never logged.
	for _, name := range []string{"X-Api-Key", "Api-Key", "X-Api-Token", "x-api-key"} {
		h := http.Header{}
		h[name] = []string{key}
		if code, body, _ := call(t, "GET", asset, h); code != 401 {
			t.Fatalf("the key in %s: got %d %s, want 401 (keygate reads only apikey)", name, code, body)
		}
	}
	for _, q := range []string{"APIKEY", "ApiKey", "apiKey"} {
		u := asset + "?oslc.select=assetnum&" + q + "=" + url.QueryEscape(key) + "&lean=1"
		if code, body, _ := call(t, "GET", u, nil); code != 401 {
			t.Fatalf("the key in ?%s=: got %d %s, want 401", q, code, body)
		}
	}
	in.stop() // flushes and closes the log files

	logs, _ := filepath.Glob(filepath.Join(varDir, "*.log"))
	if len(logs) < 2 {
		t.Fatalf("log files: got %v, want keygate.log and access.log", logs)
	}
	for _, secret := range []string{key, digestHex(key)} {
		for p, n := range grepFiles(t, varDir, secret) {
			if strings.HasSuffix(p, ".log") { // keys.db holds the digest, as it must
				t.Errorf("the key (or its digest) is in %s %d times", p, n)
			}
		}
	}
	access := readFile(t, filepath.Join(varDir, "access.log"))
	if n := strings.Count(access, "REDACTED"); n < 4 {
		t.Errorf("access.log: %d query values blanked, want 4 (?apikey, ?APIKEY, ?ApiKey, ?apiKey); log:\n%s", n, access)
	}
	if !strings.Contains(access, "oslc.select=assetnum") {
		t.Errorf("access.log lost the rest of the query:\n%s", access)
	}
}
