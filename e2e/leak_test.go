package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/keystore"
)

// The leak sweep (issue 8): every key state through every key source of the
// real binary running Caddyfile.example, then every place a secret could
// end up is searched for every key and its SHA-256.

// upstreamSecret is MAXIMO_APIKEY_MXINTADM: it must reach the backend (that
// is its purpose) and nothing else.
const upstreamSecret = "maximo-native-apikey-of-mxintadm-5b1f0c"

// exampleConfig renders Caddyfile.example for a test: the admin endpoint on
// adminPort (0: the example's unix socket, in KEYGATE_RUN_DIR), Caddy's
// default log at DEBUG (so the sweep covers keygate's
// per-request debug lines), the handler also accepting bearer tokens, and,
// if storage is not empty, that storage line instead of the file store. The
// rest comes from the environment variables the example reads.
func exampleConfig(t *testing.T, adminPort int, storage string) string {
	t.Helper()
	raw, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(raw)
	subst := func(re, repl string) {
		t.Helper()
		rx := regexp.MustCompile(re)
		if !rx.MatchString(cfg) {
			t.Fatalf("Caddyfile.example no longer matches %q; update the test", re)
		}
		cfg = rx.ReplaceAllString(cfg, repl)
	}
	if adminPort != 0 {
		subst(`(?m)^(\s*)admin\s+unix/\S+\|0600\s*$`, fmt.Sprintf("${1}admin 127.0.0.1:%d", adminPort))
	}
	subst(`(?m)^(\s*)log default \{\s*$`, "${1}log default {\n${1}\tlevel DEBUG")
	subst(`(?m)^(\s*)require_upstream_credential\s*$`, "${1}bearer\n${1}require_upstream_credential")
	if storage != "" {
		subst(`(?m)^(\s*)storage file \S+\s*$`, "${1}"+storage)
	}
	return cfg
}

// startExample runs keygate on Caddyfile.example with its logs and data in
// a directory of their own, returning the instance and that directory.
func startExample(t *testing.T, be *backend, storage string, env ...string) (*instance, string) {
	t.Helper()
	varDir := t.TempDir()
	sitePort := freePort(t)
	in := start(t, func(adminPort, _ int, _ string) string { return exampleConfig(t, adminPort, storage) },
		append(env, exampleEnv(t, be, varDir, sitePort)...)...)
	in.siteURL = fmt.Sprintf("http://127.0.0.1:%d", sitePort)
	return in, varDir
}

// exampleEnv is the environment Caddyfile.example reads: logs and data in
// varDir, the API site on sitePort, the console site on a port of its own.
func exampleEnv(t *testing.T, be *backend, varDir string, sitePort int) []string {
	t.Helper()
	return []string{
		"KEYGATE_LOG_DIR=" + varDir,
		"KEYGATE_DATA_DIR=" + varDir,
		fmt.Sprintf("KEYGATE_SITE=http://127.0.0.1:%d", sitePort),
		fmt.Sprintf("KEYGATE_CONSOLE_SITE=http://127.0.0.1:%d", freePort(t)),
		"MAXIMO_UPSTREAM=" + be.addr(),
		"MAXIMO_APIKEY_MXINTADM=" + upstreamSecret,
	}
}

// transcript records every response body the test receives, so they can be
// searched for secrets.
type transcript struct {
	mu     sync.Mutex
	bodies []string
}

func (tr *transcript) add(s string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.bodies = append(tr.bodies, s)
}

func (tr *transcript) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return strings.Join(tr.bodies, "\n")
}

// via says how a key is sent.
type via int

const (
	viaHeader via = iota
	viaQuery
	viaBearer
)

func (v via) String() string { return [...]string{"header", "query", "bearer"}[v] }

// send requests path through the proxy with key sent the v way.
func (tr *transcript) send(t *testing.T, in *instance, method, path, key string, v via) (int, string) {
	t.Helper()
	u := in.siteURL + path
	h := http.Header{}
	switch v {
	case viaHeader:
		h.Set("apikey", key)
	case viaQuery:
		sep := "?"
		if strings.Contains(u, "?") {
			sep = "&"
		}
		u += sep + "apikey=" + url.QueryEscape(key)
	case viaBearer:
		h.Set("Authorization", "Bearer "+key)
	}
	code, body, _ := call(t, method, u, h)
	tr.add(body)
	return code, body
}

// sweepKey is a secret the sweep looks for.
type sweepKey struct {
	name, key string
}

func digestHex(key string) string {
	d := sha256.Sum256([]byte(key))
	return hex.EncodeToString(d[:])
}

// newUnknownKey is a well-formed key (valid checksum) that no store holds.
func newUnknownKey(t *testing.T) string {
	t.Helper()
	k, err := keystore.GenerateKey("kg")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// corrupt changes the last character of a key so its checksum fails.
func corrupt(key string) string { return key[:len(key)-1] + flip(key[len(key)-1]) }

func TestLeakSweepFileStore(t *testing.T) {
	be := newBackend(t)
	in, varDir := startExample(t, be, "")
	runLeakSweep(t, in, be, varDir, nil)
}

func TestLeakSweepPostgres(t *testing.T) {
	db := newSweepDB(t)
	proxy := newPGProxy(t, db.target)
	be := newBackend(t)
	in, varDir := startExample(t, be, "storage postgres {env.KG_LEAK_DSN}", "KG_LEAK_DSN="+db.dsnVia(proxy.addr))
	runLeakSweep(t, in, be, varDir, &sweepOutage{db: db, proxy: proxy})
}

// sweepOutage lets the sweep cut the store (Postgres through a proxy).
type sweepOutage struct {
	db    *sweepDB
	proxy *pgProxy
}

func runLeakSweep(t *testing.T, in *instance, be *backend, varDir string, outage *sweepOutage) {
	tr := &transcript{}
	admin := func(method, path string, body any) (int, string) {
		t.Helper()
		var out map[string]any
		code := in.adminJSON(method, path, body, &out)
		return code, fmt.Sprint(out)
	}
	create := func(name string, extra map[string]any) sweepKey {
		t.Helper()
		fields := map[string]any{"name": name, "user": "MXINTADM", "rights": []string{"assets:read"}}
		for k, v := range extra {
			fields[k] = v
		}
		k := in.createKey(fields) // the one answer that shows the key; not recorded
		return sweepKey{name, k.Key}
	}

	expired := create("expired", map[string]any{"expires_in": "1s"})
	createdAt := time.Now()
	valid := create("valid", nil)
	other := create("other", nil)
	revoked := create("revoked", nil)
	limited := create("limited", map[string]any{"rate": map[string]any{"limit": 1, "per": "1m"}})
	noCred := create("no-credential", map[string]any{"user": "JDOE"})
	uncached := create("uncached", nil) // used only while the store is down
	rotated := create("rotated", nil)
	var rot createdKey
	if code := in.adminJSON("POST", "/keys/"+keyID(t, in, rotated.name)+"/rotate", map[string]any{}, &rot); code != 200 || rot.Key == "" {
		t.Fatalf("rotate: got %d, want 200 with a key", code)
	}
	rotatedNew := sweepKey{"rotated-new", rot.Key}
	imported := sweepKey{"imported", "Zx9$Qw3!Lm7@Rt5#Yu1%Io8^Pa2&Sd6*Kj4(Hg0)"}
	if code, body := admin("POST", "/keys/import", map[string]any{"name": "imported", "user": "MXINTADM", "rights": []string{"assets:read"}, "apikey": imported.key}); code != 201 {
		t.Fatalf("import: got %d %s, want 201", code, body)
	} else {
		tr.add(body)
	}
	leaked := create("leaked", nil)
	if code, body := admin("POST", "/keys/revoke-leaked", map[string]any{"keys": []string{leaked.key, newUnknownKey(t)}}); code != 200 {
		t.Fatalf("revoke-leaked: got %d %s, want 200", code, body)
	} else {
		tr.add(body)
	}
	if code, body := admin("DELETE", "/keys/"+keyID(t, in, "revoked"), nil); code != 200 {
		t.Fatalf("revoke: got %d %s, want 200", code, body)
	} else {
		tr.add(body)
	}
	if code, body := admin("PATCH", "/keys/"+keyID(t, in, "other"), map[string]any{"description": "patched"}); code != 200 {
		t.Fatalf("patch: got %d %s, want 200", code, body)
	} else {
		tr.add(body)
	}
	unknown := sweepKey{"unknown", newUnknownKey(t)}
	time.Sleep(time.Until(createdAt.Add(1100 * time.Millisecond))) // let "expired" expire

	asset := "/maximo/oslc/os/mxapiasset?lean=1"
	cases := []struct {
		name   string
		method string
		path   string
		key    string
		want   int
	}{
		{"valid", "GET", asset, valid.key, 200},
		{"valid imported", "GET", asset, imported.key, 200},
		{"valid after rotation", "GET", asset, rotatedNew.key, 200},
		{"unknown", "GET", asset, unknown.key, 401},
		{"malformed", "GET", asset, corrupt(valid.key), 401},
		{"revoked", "GET", asset, revoked.key, 401},
		{"revoked as leaked", "GET", asset, leaked.key, 401},
		{"rotated away", "GET", asset, rotated.key, 401},
		{"expired", "GET", asset, expired.key, 401},
		{"forbidden method", "POST", asset, valid.key, 403},
		{"forbidden area", "GET", "/maximo/oslc/os/mxapiwodetail", valid.key, 403},
		{"forbidden no credential", "GET", asset, noCred.key, 403},
	}
	for _, v := range []via{viaHeader, viaQuery, viaBearer} {
		for _, tc := range cases {
			if code, body := tr.send(t, in, tc.method, tc.path, tc.key, v); code != tc.want {
				t.Errorf("%s via %s: got %d %s, want %d", tc.name, v, code, body, tc.want)
			}
		}
		// Rate limited: the first request of the minute passes, the next not.
		codes := []int{}
		for range 2 {
			code, _ := tr.send(t, in, "GET", asset, limited.key, v)
			codes = append(codes, code)
		}
		if codes[len(codes)-1] != 429 {
			t.Errorf("rate limited via %s: got %v, want the last to be 429", v, codes)
		}
	}
	// Ambiguous: two distinct keys in one request, every pairing.
	for _, pair := range [][2]via{{viaHeader, viaQuery}, {viaHeader, viaBearer}, {viaQuery, viaBearer}} {
		u := in.siteURL + asset
		h := http.Header{}
		for i, v := range pair {
			k := []string{valid.key, other.key}[i]
			switch v {
			case viaHeader:
				h.Set("apikey", k)
			case viaQuery:
				u += "&apikey=" + url.QueryEscape(k)
			case viaBearer:
				h.Set("Authorization", "Bearer "+k)
			}
		}
		code, body, _ := call(t, "GET", u, h)
		tr.add(body)
		if code != 401 {
			t.Errorf("ambiguous %v+%v: got %d %s, want 401", pair[0], pair[1], code, body)
		}
	}
	// A path in no area, and one that tries to climb out of its area.
	if code, body := tr.send(t, in, "GET", "/maximo/oslc/nowhere", valid.key, viaQuery); code != 403 {
		t.Errorf("path outside every area: got %d %s, want 403", code, body)
	}
	if code, body := tr.send(t, in, "GET", "/maximo/oslc/os/mxapiasset/..;/../../nowhere", valid.key, viaQuery); code != 400 {
		t.Errorf("path climbing out of its area: got %d %s, want 400", code, body)
	}
	if outage != nil {
		outage.proxy.cut()
		for _, v := range []via{viaHeader, viaQuery, viaBearer} {
			if code, body := tr.send(t, in, "GET", asset, uncached.key, v); code != 503 {
				t.Errorf("store down via %s: got %d %s, want 503", v, code, body)
			}
		}
		// A cached key keeps working (MaxStale), fail closed for the rest.
		if code, body := tr.send(t, in, "GET", asset, valid.key, viaHeader); code != 200 {
			t.Errorf("cached key while the store is down: got %d %s, want 200", code, body)
		}
		outage.proxy.restore()
	}

	// Upstream errors are logged with the request (Caddy's error log and
	// reverse_proxy's debug lines, which show the upstream request).
	be.srv.Close()
	for _, v := range []via{viaHeader, viaQuery, viaBearer} {
		if code, body := tr.send(t, in, "GET", asset, valid.key, v); code != 502 {
			t.Errorf("backend down via %s: got %d %s, want 502", v, code, body)
		}
	}

	// The audit log, through the admin API.
	var auditBody string
	{
		var out map[string]any
		if code := in.adminJSON("GET", "/audit?limit=1000", nil, &out); code != 200 {
			t.Fatalf("audit: got %d, want 200", code)
		}
		ev, _ := out["events"].([]any)
		if len(ev) < 10 {
			t.Fatalf("audit has %d events; the sweep expects the changes above", len(ev))
		}
		auditBody = fmt.Sprint(out)
	}
	var keyList string
	{
		var out map[string]any
		if code := in.adminJSON("GET", "/keys?limit=1000", nil, &out); code != 200 {
			t.Fatalf("list: got %d, want 200", code)
		}
		keyList = fmt.Sprint(out)
	}

	in.stop() // flush the logs and the store

	places := map[string]string{
		"stdout/stderr":   in.logs(),
		"response bodies": tr.String(),
		"audit log":       auditBody,
		"key list":        keyList,
	}
	var upstream strings.Builder
	for _, r := range be.all() {
		fmt.Fprintf(&upstream, "%s %s?%s %v\n", r.Method, r.Path, r.RawQuery, r.Header)
	}
	places["upstream requests"] = upstream.String()
	if !strings.Contains(upstream.String(), upstreamSecret) {
		t.Errorf("the backend never received the upstream credential; the sweep's upstream check proves nothing")
	}
	for _, f := range []string{"access.log", "keygate.log"} {
		b, err := os.ReadFile(filepath.Join(varDir, f))
		if err != nil {
			t.Fatalf("reading %s: %v", f, err)
		}
		places[f] = string(b)
	}
	// The logs are worth searching only if they log what matters.
	if !strings.Contains(places["access.log"], "mxapiasset") || strings.Count(places["access.log"], "\n") < 40 {
		t.Errorf("access.log has %d lines, too few to prove anything", strings.Count(places["access.log"], "\n"))
	}
	if !strings.Contains(places["keygate.log"], `"level":"debug"`) {
		t.Errorf("keygate.log has no debug lines; the DEBUG substitution did not take")
	}

	var store string
	if outage == nil {
		b, err := os.ReadFile(filepath.Join(varDir, "keys.db"))
		if err != nil {
			t.Fatalf("reading the store file: %v", err)
		}
		store = string(b)
	} else {
		store = outage.db.dump()
	}

	stored := []sweepKey{expired, valid, other, revoked, limited, noCred, uncached, rotatedNew, imported, leaked}
	secrets := append(append([]sweepKey{}, stored...), rotated, unknown)
	for _, s := range secrets {
		d := digestHex(s.key)
		for place, text := range places {
			for _, form := range secretForms(s.key) {
				if n := strings.Count(text, form); n > 0 {
					t.Errorf("key %q found %d times in %s (as %q)", s.name, n, place, form)
				}
			}
			if n := strings.Count(strings.ToLower(text), d); n > 0 {
				t.Errorf("SHA-256 of key %q found %d times in %s", s.name, n, place)
			}
		}
		for _, form := range secretForms(s.key) {
			if n := strings.Count(store, form); n > 0 {
				t.Errorf("key %q found %d times in the store (as %q)", s.name, n, form)
			}
		}
	}
	// The store holds SHA-256(key), in hex (bolt's JSON records, Postgres'
	// bytea as text): that is its one form of the key. Finding it proves the
	// dump covers the key rows; an unknown key's digest must not be there.
	for _, s := range stored {
		if !strings.Contains(strings.ToLower(store), digestHex(s.key)) {
			t.Errorf("the SHA-256 of stored key %q is not in the store dump; the store check proves nothing", s.name)
		}
	}
	if strings.Contains(strings.ToLower(store), digestHex(unknown.key)) {
		t.Errorf("the SHA-256 of a key that was only presented is in the store")
	}
	for place, text := range places {
		if place == "upstream requests" {
			continue
		}
		if strings.Contains(text, upstreamSecret) {
			t.Errorf("the upstream credential was found in %s", place)
		}
	}
	if strings.Contains(store, upstreamSecret) {
		t.Errorf("the upstream credential was found in the store")
	}
}

// secretForms are the ways a key can be written down: as it is, %-encoded
// (a logged query string) and JSON-escaped (a logged header).
func secretForms(key string) []string {
	forms := []string{key}
	j, _ := json.Marshal(key)
	for _, f := range []string{url.QueryEscape(key), url.PathEscape(key), string(j[1 : len(j)-1])} {
		if !slices.Contains(forms, f) {
			forms = append(forms, f)
		}
	}
	return forms
}

// keyID finds a key's id by its name through the admin API.
func keyID(t *testing.T, in *instance, name string) string {
	t.Helper()
	var out struct {
		Keys []struct {
			ID string `json:"id"`
		} `json:"keys"`
	}
	if code := in.adminJSON("GET", "/keys?name="+url.QueryEscape(name), nil, &out); code != 200 || len(out.Keys) != 1 {
		t.Fatalf("finding key %q: got %d with %d keys, want 200 with 1", name, code, len(out.Keys))
	}
	return out.Keys[0].ID
}

// sweepDB is a database of its own for one test, dropped when it ends; the
// test skips when KEYGATE_TEST_DATABASE_URL is unset.
type sweepDB struct {
	t      *testing.T
	name   string
	dsn    string
	target string // host:port of the server
}

func newSweepDB(t *testing.T) *sweepDB {
	t.Helper()
	base := pgtest.DSN(t)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", pgtest.Env, err)
	}
	db := &sweepDB{t: t}
	db.name, db.dsn = pgtest.Database(t, "kg_sweep")
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "5432"
	}
	db.target = net.JoinHostPort(host, port)
	return db
}

// dsnVia is the database's DSN with host:port replaced by addr.
func (db *sweepDB) dsnVia(addr string) string {
	u, _ := url.Parse(db.dsn)
	u.Host = addr
	return u.String()
}

// dump renders every row of every table of the database as text.
func (db *sweepDB) dump() string {
	db.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db.dsn)
	if err != nil {
		db.t.Fatalf("connecting to the test database: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT quote_ident(table_schema) || '.' || quote_ident(table_name)
		FROM information_schema.tables
		WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')`)
	if err != nil {
		db.t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(tables) == 0 {
		db.t.Fatalf("listing tables: %v (%d tables)", err, len(tables))
	}
	var b strings.Builder
	for _, tbl := range tables {
		rows, err := conn.Query(ctx, "SELECT t::text FROM "+tbl+" t")
		if err != nil {
			db.t.Fatalf("dumping %s: %v", tbl, err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			db.t.Fatalf("dumping %s: %v", tbl, err)
		}
		fmt.Fprintf(&b, "-- %s\n%s\n", tbl, strings.Join(lines, "\n"))
	}
	return b.String()
}
