package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/internal/poll"
)

// pgEnv names the variable holding the test database URL; the Postgres
// end-to-end tests skip when it is unset.
const pgEnv = pgtest.Env

// pgDSNEnv is the variable the rendered Caddyfiles read the DSN from, so the
// tests also exercise the {env.*} placeholder of `storage postgres`.
const pgDSNEnv = "KG_E2E_DSN"

// Application names keygate gives its connections (keystore/postgres
// DefaultApplicationName and DefaultListenerName).
const (
	pgPoolApp     = "keygate"
	pgListenerApp = "keygate-listener"
)

// testDB is a database of its own for one test, dropped when it ends.
type testDB struct {
	t     *testing.T
	name  string
	dsn   string // DSN of the test database
	admin string // DSN of the database named by KEYGATE_TEST_DATABASE_URL
}

// newTestDB creates a fresh database kg_e2e_<random> or skips the test
// when KEYGATE_TEST_DATABASE_URL is unset. Its cleanup is registered before
// any instance using it is started, so it runs after they have stopped.
func newTestDB(t *testing.T) *testDB {
	t.Helper()
	base := pgtest.DSN(t)
	if u, err := url.Parse(base); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("%s must be a postgres:// URL for the end-to-end tests", pgEnv)
	}
	db := &testDB{t: t, admin: base}
	db.name, db.dsn = pgtest.Database(t, "kg_e2e")
	return db
}

// via returns the test database's DSN with host:port replaced by addr.
func (db *testDB) via(addr string) string {
	u, err := url.Parse(db.dsn)
	if err != nil {
		db.t.Fatal(err)
	}
	u.Host = addr
	return u.String()
}

// target is host:port of the database server.
func (db *testDB) target() string {
	u, err := url.Parse(db.dsn)
	if err != nil {
		db.t.Fatal(err)
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		host = "127.0.0.1"
	}
	if port == "" {
		port = "5432"
	}
	return net.JoinHostPort(host, port)
}

// exec runs one statement on the admin database.
func (db *testDB) exec(sql string, args ...any) {
	db.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db.admin)
	if err != nil {
		db.t.Fatalf("connecting to %s: %v", pgEnv, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		db.t.Fatalf("%s: %v", sql, err)
	}
}

// terminate ends a backend with pg_terminate_backend and waits until it is
// gone, so it can no longer receive notifications.
func (db *testDB) terminate(pid int) {
	db.t.Helper()
	db.exec("SELECT pg_terminate_backend($1)", pid)
	gone := func() bool {
		for _, b := range db.backends("") {
			if b.PID == pid {
				return false
			}
		}
		return true
	}
	if err := poll.Until(10*time.Second, fmt.Sprintf("backend %d gone after pg_terminate_backend", pid), gone); err != nil {
		db.t.Fatal(err)
	}
}

// pgBackend is one row of pg_stat_activity.
type pgBackend struct {
	PID        int
	App        string
	ClientPort int
	Start      time.Time
}

// backends lists the test database's connections whose application_name is
// app (all of keygate's when app is empty).
func (db *testDB) backends(app string) []pgBackend {
	db.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db.admin)
	if err != nil {
		db.t.Fatalf("connecting to %s: %v", pgEnv, err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT pid, application_name, coalesce(client_port, 0), backend_start
		FROM pg_stat_activity
		WHERE datname = $1 AND ($2 = '' OR application_name = $2) AND application_name LIKE 'keygate%'
		ORDER BY pid`, db.name, app)
	if err != nil {
		db.t.Fatalf("reading pg_stat_activity: %v", err)
	}
	bs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pgBackend, error) {
		var b pgBackend
		err := r.Scan(&b.PID, &b.App, &b.ClientPort, &b.Start)
		return b, err
	})
	if err != nil {
		db.t.Fatalf("reading pg_stat_activity: %v", err)
	}
	return bs
}

// query runs a query on the test database and scans its single row.
func (db *testDB) queryRow(sql string, dest ...any) {
	db.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db.dsn)
	if err != nil {
		db.t.Fatalf("connecting to the test database: %v", err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, sql).Scan(dest...); err != nil {
		db.t.Fatalf("%s: %v", sql, err)
	}
}

// pgConfig renders a Caddyfile for an instance on Postgres: the DSN comes
// from $KG_E2E_DSN, storageBody goes inside `storage postgres … { }`,
// appExtra inside `apikey { }`. Failed-attempt limiting is off: the tests
// send many invalid keys from one address on purpose.
func pgConfig(be *backend, storageBody, appExtra string) func(int, int, string) string {
	return func(adminPort, sitePort int, dir string) string {
		return fmt.Sprintf(`{
	admin 127.0.0.1:%[1]d
	apikey {
		storage postgres {env.%[3]s} {
			%[4]s
		}
		%[5]s
		failed_attempts off
		%[6]s
	}
}

http://127.0.0.1:%[2]d {
	handle {
		apikey
		reverse_proxy %[7]s {
			header_up X-Run-As-User {apikey.user}
		}
	}
}
`, adminPort, sitePort, pgDSNEnv, storageBody, maximoAreas, appExtra, be.addr())
	}
}

const assetPath = "/maximo/oslc/os/mxapiasset"

// newKeyFields are the create fields of a key that may read assets.
func newKeyFields(name string) map[string]any {
	return map[string]any{"name": name, "user": "MXINTADM", "rights": []string{"assets:read"}}
}

// loadClient is an HTTP client that keeps enough idle connections for the
// load goroutines, so load does not churn through ephemeral ports.
func loadClient() *http.Client {
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxIdleConns: 64, IdleConnTimeout: time.Minute},
	}
}

// get sends GET url with the key and returns status and body (status 0 and
// the error text for connection-level failures).
func get(c *http.Client, url, key string) (int, string) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("apikey", key)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitStatus polls until GET url with key answers want, or fails the test.
func waitStatus(t *testing.T, c *http.Client, url, key string, want int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var code int
	var body string
	for time.Since(start) < within {
		if code, body = get(c, url, key); code == want {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("got status %d (%s) for %v, want %d", code, body, within, want)
	return 0
}

// errorCode returns the code of a docs/design.md §1 error body, or "".
func errorCode(body string) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	json.Unmarshal([]byte(body), &e)
	return e.Error.Code
}

// percentile returns the nearest-rank percentile p (0 < p ≤ 100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := int(float64(len(s))*p/100 + 0.999999)
	rank = max(1, min(rank, len(s)))
	return s[rank-1]
}

// logLines returns the JSON log entries of an instance whose msg is msg.
// It reads stderr only (Caddy logs there), which is safe while the process
// runs.
func logLines(in *instance, msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(in.stderr.String(), "\n") {
		if !strings.Contains(line, `"msg":"`+msg+`"`) {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// loggerLines returns the raw log lines an instance wrote through logger.
func loggerLines(in *instance, logger string) string {
	var b strings.Builder
	for _, line := range strings.Split(in.stderr.String(), "\n") {
		if strings.Contains(line, `"logger":"`+logger+`"`) {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// pgProxy is a TCP proxy on loopback in front of Postgres that can refuse
// new connections and cut the established ones, to simulate an outage, or
// go silent, to simulate a partition.
type pgProxy struct {
	t      *testing.T
	target string
	addr   string

	mu     sync.Mutex
	silent bool         // accept and read, forward nothing
	ln     net.Listener // nil while refusing
	gen    int          // bumped on every refuse, so late accepts are dropped
	conns  map[net.Conn]struct{}
	ports  map[int]bool // local ports of every upstream connection made
	wg     sync.WaitGroup
}

func newPGProxy(t *testing.T, target string) *pgProxy {
	t.Helper()
	// Not ":0": restore listens on this address again, which an ephemeral
	// port may no longer allow (see freePort).
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{t: t, target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}, ports: map[int]bool{}}
	p.serve(ln)
	t.Cleanup(p.close)
	return p
}

func (p *pgProxy) serve(ln net.Listener) {
	p.ln = ln
	gen := p.gen
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.handle(c, gen) }()
		}
	}()
}

func (p *pgProxy) handle(c net.Conn, gen int) {
	if p.isSilent() {
		// Accepted, then never answered: the client's connect hangs
		// until its own deadline.
		p.mu.Lock()
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		io.Copy(io.Discard, c)
		c.Close()
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
		return
	}
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.gen != gen {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.ports[up.LocalAddr().(*net.TCPAddr).Port] = true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 && !p.isSilent() {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// refuse closes the listening socket: new connections are refused, as by a
// stopped server. Established connections are kept.
func (p *pgProxy) refuse() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gen++
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
}

// cut refuses new connections and resets the established ones.
func (p *pgProxy) cut() {
	p.refuse()
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // RST, like a crashed server
		}
		c.Close()
	}
}

func (p *pgProxy) isSilent() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.silent
}

// silence makes the proxy a black hole, like a network partition that
// drops packets without a reset: established connections stay open but
// nothing passes either way, new connections are accepted and never
// answered.
func (p *pgProxy) silence() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.silent = true
}

// speak ends a silence: the connections it left half-used are reset and
// new ones are forwarded again.
func (p *pgProxy) speak() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.silent = false
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
	}
}

// restore accepts connections again on the same address.
func (p *pgProxy) restore() {
	p.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := net.Listen("tcp", p.addr)
		if err == nil {
			p.mu.Lock()
			p.serve(ln)
			p.mu.Unlock()
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("proxy: listening again on %s: %v", p.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// upstreamPorts returns the local ports of every upstream connection the
// proxy has made (they are the client_port Postgres sees).
func (p *pgProxy) upstreamPorts() map[int]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(map[int]bool, len(p.ports))
	for k, v := range p.ports {
		m[k] = v
	}
	return m
}

func (p *pgProxy) close() {
	p.cut()
	p.wg.Wait()
}

// reload posts the instance's own Caddyfile to /load, forcing a reload of an
// identical config.
func (in *instance) reload() {
	in.t.Helper()
	cfg, err := os.ReadFile(in.config)
	if err != nil {
		in.t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "http://"+in.adminAddr+"/load", bytes.NewReader(cfg))
	req.Header.Set("Content-Type", "text/caddyfile")
	req.Header.Set("Cache-Control", "must-revalidate")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		in.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		in.t.Fatalf("reload: got status %d (%s), want 200", resp.StatusCode, b)
	}
}
