// Package e2e runs the real keygate binary against a real backend on
// loopback. The binary is built once per test run.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var keygateBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "keygate-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	keygateBin = filepath.Join(dir, "keygate")
	build := exec.Command("go", "build", "-o", keygateBin, "../cmd/keygate")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building keygate:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a port that was free on every interface a moment ago.
// It is drawn from below the kernel's ephemeral range: a port taken from
// ":0" can meanwhile become the source port of one of the many outgoing
// connections the tests make (Postgres, backends), and Caddy then fails to
// bind it. Ports handed out once in this process are never handed out again.
func freePort(t *testing.T) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		p := 20000 + rand.IntN(12000) // 20000–31999, under Linux's default 32768–60999
		if portsGiven[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
		if err != nil {
			continue
		}
		l.Close()
		portsGiven[p] = true
		return p
	}
	t.Fatal("no free port found in 20000–31999")
	return 0
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// instance is a running keygate process.
type instance struct {
	t         *testing.T
	dir       string
	config    string
	adminAddr string // host:port of Caddy's admin endpoint
	siteURL   string // http://127.0.0.1:port
	cmd       *exec.Cmd
	stdout    *lockedBuffer
	stderr    *lockedBuffer
	env       []string
	done      chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const maximoAreas = `
		area assets     /maximo/oslc/os/mxapiasset* /maximo/oslc/os/mxasset* /maximo/api/os/mxapiasset*
		area workorders /maximo/oslc/os/mxapiwodetail* /maximo/oslc/os/mxwo* /maximo/api/os/mxapiwodetail*
		area locations  /maximo/oslc/os/mxapilocations*
`

// start runs keygate with the Caddyfile produced by render(adminPort, sitePort, dir)
// and waits until it is ready.
func start(t *testing.T, render func(adminPort, sitePort int, dir string) string, env ...string) *instance {
	t.Helper()
	in := prepare(t, render, env...)
	in.run()
	return in
}

// run launches the instance's process and waits until it is ready.
func (in *instance) run() {
	in.t.Helper()
	if err := in.launch(); err != nil {
		in.t.Fatal(err)
	}
	if err := in.waitReady(30 * time.Second); err != nil {
		in.t.Fatal(err)
	}
}

// prepare sets up an instance like start does, without running it, so
// several can be launched at the same moment (launch, then waitReady).
func prepare(t *testing.T, render func(adminPort, sitePort int, dir string) string, env ...string) *instance {
	t.Helper()
	dir := t.TempDir()
	adminPort, sitePort := freePort(t), freePort(t)
	in := &instance{
		t: t, dir: dir,
		config:    filepath.Join(dir, "Caddyfile"),
		adminAddr: fmt.Sprintf("127.0.0.1:%d", adminPort),
		siteURL:   fmt.Sprintf("http://127.0.0.1:%d", sitePort),
		env:       env,
	}
	if err := os.WriteFile(in.config, []byte(render(adminPort, sitePort, dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	return in
}

// launch starts the prepared instance's process without waiting for it.
func (in *instance) launch() error {
	cmd := exec.Command(keygateBin, "run", "--config", in.config, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+in.dir, "XDG_DATA_HOME="+filepath.Join(in.dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(in.dir, "config"))
	cmd.Env = append(cmd.Env, in.env...)
	in.stdout = &lockedBuffer{}
	in.stderr = &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = in.stdout, in.stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	in.cmd = cmd
	in.done = make(chan struct{})
	go func() { cmd.Wait(); close(in.done) }()
	in.t.Cleanup(in.stop)
	return nil
}

// waitReady waits until a launched instance answers on its admin endpoint.
func (in *instance) waitReady(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		select {
		case <-in.done:
			return errors.New("keygate exited at start:\n" + in.stderr.String())
		default:
		}
		resp, err := http.Get("http://" + in.adminAddr + "/apikey/license")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("keygate did not become ready: %v\n%s", err, in.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (in *instance) stop() {
	if in.cmd == nil || in.cmd.Process == nil {
		return
	}
	select {
	case <-in.done:
		return
	default:
	}
	in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.done:
	case <-time.After(20 * time.Second):
		in.cmd.Process.Kill()
		<-in.done
		in.t.Errorf("keygate did not stop on SIGTERM")
	}
}

// logs returns everything keygate wrote to stdout and stderr.
func (in *instance) logs() string { return in.stdout.String() + in.stderr.String() }

// adminJSON calls the admin API on Caddy's local admin endpoint.
func (in *instance) adminJSON(method, path string, body any, out any) int {
	in.t.Helper()
	return doJSON(in.t, method, "http://"+in.adminAddr+"/apikey"+path, nil, body, out)
}

func doJSON(t *testing.T, method, url string, header http.Header, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decoding %q: %v", method, url, raw, err)
		}
	}
	return resp.StatusCode
}

// createdKey is the subset of POST /keys answers the tests use.
type createdKey struct {
	ID     string `json:"id"`
	Key    string `json:"key"`
	Start  string `json:"start"`
	Status string `json:"status"`
	User   string `json:"user"`
}

func (in *instance) createKey(fields map[string]any) createdKey {
	in.t.Helper()
	var k createdKey
	if code := in.adminJSON("POST", "/keys", fields, &k); code != http.StatusCreated {
		in.t.Fatalf("creating key: got status %d, want 201", code)
	}
	if k.Key == "" || k.ID == "" {
		in.t.Fatalf("creating key: no key or id in the answer: %+v", k)
	}
	return k
}

// call sends a request through the proxy and returns status, body and headers.
func call(t *testing.T, method, url string, header http.Header) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// grepFiles counts occurrences of needle in every file under dir.
func grepFiles(t *testing.T, dir, needle string) map[string]int {
	t.Helper()
	found := map[string]int{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		if n := strings.Count(string(b), needle); n > 0 {
			found[p] = n
		}
		return nil
	})
	return found
}
