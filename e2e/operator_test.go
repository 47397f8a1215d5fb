package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runSplit runs the binary to completion (killing it after 30s: a start
// that should have been refused would otherwise run for ever) and returns
// its exit code, stdout and stderr.
func runSplit(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, keygateBin, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("keygate %v did not finish within 30s:\n%s", args, stderr.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running keygate %v: %v", args, err)
	}
	return code, stdout.String(), stderr.String()
}

func TestVersionNamesKeygateAndCaddy(t *testing.T) {
	code, out, errOut := runSplit(t, nil, "version")
	if code != 0 {
		t.Fatalf("keygate version: exit %d, stderr %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "keygate ") || !strings.HasPrefix(lines[1], "caddy v2.") {
		t.Fatalf("keygate version printed %q, want a keygate line and a caddy v2 line", out)
	}
	// The tests build from a checkout: the version comes from the build
	// info, which is "(devel)" or a VCS pseudo-version, never empty.
	if v := strings.TrimPrefix(lines[0], "keygate "); v == "" {
		t.Fatalf("empty keygate version in %q", out)
	}
}

func TestVersionFromLdflags(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "keygate")
	build := exec.CommandContext(t.Context(), "go", "build", "-ldflags", "-X main.version=v9.8.7-test", "-o", bin, "../cmd/keygate")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building with -ldflags: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(t.Context(), bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "keygate v9.8.7-test\ncaddy v2.") {
		t.Fatalf("keygate version printed %q, want keygate v9.8.7-test then the caddy version", out)
	}
}

func TestHelpSaysKeygate(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"apikey", "--help"}, {"run", "--help"}} {
		code, out, errOut := runSplit(t, nil, args...)
		if code != 0 {
			t.Fatalf("keygate %v: exit %d, stderr %s", args, code, errOut)
		}
		if !strings.Contains(out, "Usage:\n  keygate ") {
			t.Fatalf("keygate %v: usage does not name keygate:\n%s", args, out)
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "caddy ") || strings.Contains(line, "$ caddy") {
				t.Fatalf("keygate %v: a usage line names caddy: %q", args, line)
			}
		}
		for _, name := range []string{"upgrade", "add-package", "remove-package"} {
			if strings.Contains(out, "\n  "+name+" ") {
				t.Fatalf("keygate %v lists %s:\n%s", args, name, out)
			}
		}
	}
}

// Caddy's upgrade and package commands would replace the binary with a
// stock Caddy; keygate refuses them, and the binary is untouched.
func TestSelfReplacingCommandsRefuse(t *testing.T) {
	before := fileSum(t, keygateBin)
	for _, args := range [][]string{{"upgrade"}, {"add-package", "github.com/example/plugin"}, {"remove-package", "github.com/keygate/keygate"}} {
		code, _, errOut := runSplit(t, nil, args...)
		if code != 1 {
			t.Fatalf("keygate %v: exit %d, want 1", args, code)
		}
		if !strings.Contains(errOut, "keygate "+args[0]+" is not available") || !strings.Contains(errOut, "no keygate") && !strings.Contains(errOut, "none of keygate's modules") {
			t.Fatalf("keygate %v: stderr does not explain the refusal: %s", args, errOut)
		}
	}
	if fileSum(t, keygateBin) != before {
		t.Fatal("the binary changed")
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// Caddyfile.example logs to files; a start that fails (here: the Maximo
// credential's variable is unset) still says why on stderr.
func TestFailingStartSaysWhyOnStderr(t *testing.T) {
	raw, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "Caddyfile")
	s := strings.ReplaceAll(string(raw), "localhost:2019", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	if err := os.WriteFile(cfg, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"MAXIMO_APIKEY_MXINTADM=",
		"KEYGATE_LOG_DIR=" + dir,
		"KEYGATE_DATA_DIR=" + dir,
		"KEYGATE_RUN_DIR=" + dir,
		fmt.Sprintf("KEYGATE_SITE=:%d", freePort(t)),
		fmt.Sprintf("KEYGATE_CONSOLE_SITE=:%d", freePort(t)),
	}
	code, _, errOut := runSplit(t, env, "run", "--config", cfg)
	if code == 0 {
		t.Fatal("keygate started without the Maximo credential")
	}
	if !strings.Contains(errOut, "keygate: not started:") || !strings.Contains(errOut, "MAXIMO_APIKEY_MXINTADM") {
		t.Fatalf("stderr does not say why the start failed:\n%s", errOut)
	}
	// The configured log got Caddy's own record too: the stderr line is in
	// addition to it, not instead.
	if b, _ := os.ReadFile(filepath.Join(dir, "keygate.log")); !bytes.Contains(b, []byte("MAXIMO_APIKEY_MXINTADM")) {
		t.Fatalf("keygate.log does not hold the failure:\n%s", b)
	}
}

// The ready line names the site URL, the admin address and the store.
func TestReadyLine(t *testing.T) {
	in := startDemo(t)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(in.stderr.String(), "keygate ready:") {
		if time.Now().After(deadline) {
			t.Fatalf("no ready line on stderr:\n%s", in.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var line string
	for _, l := range strings.Split(in.stderr.String(), "\n") {
		if strings.HasPrefix(l, "keygate ready:") {
			line = l
		}
	}
	sitePort := in.siteURL[strings.LastIndex(in.siteURL, ":"):]
	for _, want := range []string{"http://localhost" + sitePort + " (all interfaces)", "admin " + in.adminAddr, "store file ", "keys.db"} {
		if !strings.Contains(line, want) {
			t.Fatalf("ready line %q lacks %q", line, want)
		}
	}
}

// A second keygate on ports already served refuses to start (Caddy's
// SO_REUSEPORT would let it start and share the traffic), and the first
// keeps serving.
func TestSecondInstanceOnSamePortsRefuses(t *testing.T) {
	be := newBackend(t)
	first := start(t, standard(be, "", ""))
	code, _, errOut := runSplit(t, nil, "run", "--config", first.config, "--adapter", "caddyfile")
	if code == 0 {
		t.Fatal("a second keygate on the same ports exited 0")
	}
	if !strings.Contains(errOut, "is already served by another process") {
		t.Fatalf("stderr does not say the port is served:\n%s", errOut)
	}
	k := first.createKey(map[string]any{"name": "a", "user": "MXINTADM", "rights": []string{"assets:read"}})
	for i := range 10 {
		if code, body, _ := call(t, "GET", first.siteURL+"/maximo/oslc/os/mxapiasset", hdr("apikey", k.Key)); code != 200 {
			t.Fatalf("request %d to the first instance: got %d %s, want 200", i, code, body)
		}
	}
}
