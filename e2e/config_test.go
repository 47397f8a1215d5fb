package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// runKeygate runs the binary with args and returns its combined output and
// exit code, giving up after timeout.
func runKeygate(t *testing.T, timeout time.Duration, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(keygateBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return out.String(), code
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("keygate %v did not finish within %v (hang):\n%s", args, timeout, out.String())
		return "", -1
	}
}

func TestListModules(t *testing.T) {
	out, code := runKeygate(t, 30*time.Second, nil, "list-modules")
	if code != 0 {
		t.Fatalf("list-modules: exit %d", code)
	}
	for _, id := range []string{"apikey", "http.handlers.apikey", "http.handlers.apikey_admin", "admin.api.apikey"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(id) + `$`).MatchString(out) {
			t.Fatalf("module %s missing from list-modules", id)
		}
	}
}

// TestValidateWritesNothing: caddy validate provisions the config but must
// not create or write the store.
func TestValidateWritesNothing(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "sub", "keys.db")
	cf := filepath.Join(dir, "Caddyfile")
	os.WriteFile(cf, []byte(fmt.Sprintf("{\n\tadmin off\n\tapikey {\n\t\tstorage file %s\n\t\tarea assets /maximo/oslc/os/mxapiasset*\n\t}\n}\n:0 {\n\tapikey\n\trespond ok\n}\n", store)), 0o600)
	out, code := runKeygate(t, 60*time.Second, []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir}, "validate", "--config", cf, "--adapter", "caddyfile")
	if code != 0 {
		t.Fatalf("validate: exit %d:\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Dir(store)); !os.IsNotExist(err) {
		t.Fatalf("validate created %s (err %v)", filepath.Dir(store), err)
	}
}

// TestConfigErrorsAreClear runs bad configurations through the binary and
// checks the message names the problem (and the line, where there is one).
func TestConfigErrorsAreClear(t *testing.T) {
	notADir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notADir, []byte("x"), 0o600)
	readOnly := t.TempDir()
	os.Chmod(readOnly, 0o500)
	t.Cleanup(func() { os.Chmod(readOnly, 0o700) })
	tests := []struct {
		name    string
		cmd     string
		global  string
		site    string
		want    []string
		skipIf  func() bool
		timeout time.Duration
	}{
		{name: "unknown option", cmd: "adapt", global: "apikey {\n\t\tfrobnicate\n\t}", site: "apikey", want: []string{`unknown apikey option`, "frobnicate", "Caddyfile:4"}},
		{name: "duplicate area", cmd: "adapt", global: "apikey {\n\t\tarea a /x*\n\t\tarea a /y*\n\t}", site: "apikey", want: []string{"area a is defined twice", "Caddyfile:5"}},
		{name: "area without paths", cmd: "adapt", global: "apikey {\n\t\tarea a\n\t}", site: "apikey", want: []string{"area a has no paths"}},
		{name: "bad prefix", cmd: "adapt", global: "apikey {\n\t\tprefix kg-prod!\n\t}", site: "apikey", want: []string{`kg-prod!`, "must be 1 to 8 letters or digits", "Caddyfile:4"}},
		{name: "bad duration", cmd: "adapt", global: "apikey {\n\t\tflush_interval often\n\t}", site: "apikey", want: []string{"flush_interval", "positive duration"}},
		{name: "handler without app", cmd: "validate", site: "apikey", want: []string{"needs the apikey app"}},
		{name: "storage not writable", cmd: "validate", global: "apikey {\n\t\tstorage file " + readOnly + "/keys.db\n\t}", site: "apikey", want: []string{"not writable"},
			skipIf: func() bool { return os.Geteuid() == 0 }},
		{name: "storage under a file", cmd: "validate", global: "apikey {\n\t\tstorage file " + notADir + "/keys.db\n\t}", site: "apikey", want: []string{"is not a directory"}},
		{name: "notify secret unset", cmd: "validate", global: "apikey {\n\t\tnotify https://hooks.example/k {\n\t\t\tsecret {env.KG_UNSET_WEBHOOK_SECRET}\n\t\t}\n\t}", site: "apikey", want: []string{"notify https://hooks.example/k: resolving the secret"}},
		{name: "notify without secret", cmd: "adapt", global: "apikey {\n\t\tnotify https://hooks.example/k {\n\t\t\tevents key.created\n\t\t}\n\t}", site: "apikey", want: []string{"Caddyfile:4", "needs a secret"}},
		{name: "unreachable DSN", cmd: "run", global: "apikey {\n\t\tstorage postgres postgres://nobody@127.0.0.1:1/none?connect_timeout=2\n\t}", site: "apikey", want: []string{"postgres key store", "reachable"}, timeout: 60 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skipIf != nil && tc.skipIf() {
				t.Skip("root can write anywhere")
			}
			dir := t.TempDir()
			cf := filepath.Join(dir, "Caddyfile")
			body := "{\n\tadmin off\n\t" + tc.global + "\n}\n:0 {\n\t" + tc.site + "\n\trespond ok\n}\n"
			os.WriteFile(cf, []byte(body), 0o600)
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 30 * time.Second
			}
			out, code := runKeygate(t, timeout, []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir}, tc.cmd, "--config", cf, "--adapter", "caddyfile")
			if code == 0 {
				t.Fatalf("%s succeeded; want a failure:\n%s", tc.cmd, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Fatalf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
