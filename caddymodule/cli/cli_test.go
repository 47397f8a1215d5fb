package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/cobra"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

const (
	testKey  = "kg_4Fq9aaaabbbbccccddddeeeeffffgggg0Tb1x0"
	keyJSON  = `{"id":"key_7Hs2","name":"mx-int","description":"","user":"MXINTADM","rights":["assets:read","workorders:write"],"start":"kg_4Fq9","status":"active","imported":false,"created_at":"2026-11-23T10:00:00Z","created_by":"local","expires_at":"2026-12-23T10:00:00Z","revoked_at":null,"last_used_at":null,"rate":{"limit":100,"per":"1m"},"quota":{"limit":10000,"period":"month"}}`
	mintJSON = `{"id":"key_7Hs2","name":"mx-int","user":"MXINTADM","rights":["assets:read"],"start":"kg_4Fq9","status":"active","created_at":"2026-11-23T10:00:00Z","expires_at":null,"revoked_at":null,"last_used_at":null,"rate":null,"quota":null,"key":"` + testKey + `"}`
)

// recorded is one request the fake admin endpoint received.
type recorded struct {
	Method      string
	Path        string // escaped
	Query       string
	Body        string
	Origin      string
	ContentType string
}

type reply struct {
	status int
	body   string
}

// fakeAdmin fakes the admin API: it records requests and answers
// "METHOD /escaped/path" (optionally "?query") from canned replies.
type fakeAdmin struct {
	srv     *httptest.Server
	replies map[string]reply
	mu      sync.Mutex
	reqs    []recorded
}

func newFakeAdmin(t *testing.T, replies map[string]reply) *fakeAdmin {
	t.Helper()
	f := &fakeAdmin{replies: replies}
	f.srv = httptest.NewServer(f)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, recorded{
		Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Body: string(body),
		Origin: r.Header.Get("Origin"), ContentType: r.Header.Get("Content-Type"),
	})
	f.mu.Unlock()
	route := r.Method + " " + r.URL.EscapedPath()
	rep, ok := f.replies[route+"?"+r.URL.RawQuery]
	if !ok {
		rep, ok = f.replies[route]
	}
	if !ok {
		rep = reply{http.StatusNotFound, `{"error":{"code":"not_found","message":"no such route in the fake"}}`}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.status)
	io.WriteString(w, rep.body)
}

func (f *fakeAdmin) addr() string { return strings.TrimPrefix(f.srv.URL, "http://") }

func (f *fakeAdmin) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

// only returns the single request made, failing if there was not exactly one.
func (f *fakeAdmin) only(t *testing.T) recorded {
	t.Helper()
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests %+v, want 1", len(reqs), reqs)
	}
	return reqs[0]
}

type result struct {
	code   int
	stdout string
	stderr string
}

// runCLI runs `<bin> apikey args...` in process, under a root command like
// Caddy's, and returns the exit code the command chose and its output.
func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	res := result{code: -1}
	a := &app{
		stdin:  strings.NewReader(stdin),
		stdout: &stdout,
		stderr: &stderr,
		exit: func(_ *cobra.Command, code int) error {
			res.code = code
			if code != exitOK {
				return errReported
			}
			return nil
		},
	}
	root := &cobra.Command{Use: "keygate", SilenceUsage: true}
	apikey := &cobra.Command{Use: "apikey"}
	a.setup(apikey)
	root.AddCommand(apikey)
	root.SetArgs(append([]string{"apikey"}, args...))
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	err := root.Execute()
	if res.code == -1 {
		// Only cobra's own help path may bypass the exit function.
		if err != nil {
			t.Fatalf("cobra returned %v without an exit code; stderr: %s", err, stderr.String())
		}
		res.code = exitOK
	}
	res.stdout, res.stderr = stdout.String(), stderr.String()
	return res
}

func wantCode(t *testing.T, res result, want int) {
	t.Helper()
	if res.code != want {
		t.Fatalf("exit code: got %d, want %d\nstdout: %s\nstderr: %s", res.code, want, res.stdout, res.stderr)
	}
}

// jsonEqual compares two JSON documents by value.
func jsonEqual(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("got invalid JSON %q: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want invalid JSON %q: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("JSON: got %s, want %s", got, want)
	}
}

func TestRequests(t *testing.T) {
	t.Parallel()
	sha := strings.Repeat("0f", 32)
	tests := []struct {
		name      string
		stdin     string
		args      []string
		method    string
		path      string
		query     string
		body      string // JSON; "" = no body
		replyCode int
		reply     string
	}{
		{
			name: "create full",
			args: []string{"create", "--name", "mx-int", "--user", "MXINTADM", "--description", "Maximo integration",
				"--rights", "assets:read,workorders:write", "--expires-in", "720h", "--rate", "100/1m", "--quota", "10000/month"},
			method: "POST", path: "/apikey/keys",
			body: `{"name":"mx-int","user":"MXINTADM","description":"Maximo integration","rights":["assets:read","workorders:write"],
				"expires_in":"720h","rate":{"limit":100,"per":"1m"},"quota":{"limit":10000,"period":"month"}}`,
			replyCode: 201, reply: mintJSON,
		},
		{
			name:   "create minimal with expires-at",
			args:   []string{"create", "--name", "n", "--user", "U", "--rights", "*:read", "--expires-at", "2027-01-31T00:00:00Z", "--rate", "5/s", "--quota", "500/day"},
			method: "POST", path: "/apikey/keys",
			body:      `{"name":"n","user":"U","rights":["*:read"],"expires_at":"2027-01-31T00:00:00Z","rate":{"limit":5,"per":"1s"},"quota":{"limit":500,"period":"day"}}`,
			replyCode: 201, reply: mintJSON,
		},
		{
			name:   "create with policy",
			args:   []string{"create", "--name", "n", "--user", "U", "--rights", "assets:read", "--allowed-ips", "10.20.0.0/16, 2001:db8::7", "--environments", "prod,test"},
			method: "POST", path: "/apikey/keys",
			body:      `{"name":"n","user":"U","rights":["assets:read"],"allowed_ips":["10.20.0.0/16","2001:db8::7"],"environments":["prod","test"]}`,
			replyCode: 201, reply: mintJSON,
		},
		{
			name:   "update policy and limits",
			args:   []string{"update", "key_7Hs2", "--allowed-ips", "192.0.2.0/24", "--environments", "none", "--rate", "none", "--quota", "500/day", "--expires-at", "never"},
			method: "PATCH", path: "/apikey/keys/key_7Hs2",
			body:      `{"allowed_ips":["192.0.2.0/24"],"environments":null,"rate":null,"quota":{"limit":500,"period":"day"},"expires_at":null}`,
			replyCode: 200, reply: keyJSON,
		},
		{
			name:   "update name and rights",
			args:   []string{"update", "key_7Hs2", "--name", "renamed", "--rights", "assets:read,workorders:read"},
			method: "PATCH", path: "/apikey/keys/key_7Hs2",
			body:      `{"name":"renamed","rights":["assets:read","workorders:read"]}`,
			replyCode: 200, reply: keyJSON,
		},
		{
			name:   "import from stdin",
			stdin:  "legacy-0123456789-abcdefghij-ABCDEFGHIJ\n",
			args:   []string{"import", "--name", "legacy", "--user", "MXINTADM", "--rights", "assets:read", "--apikey-file", "-"},
			method: "POST", path: "/apikey/keys/import",
			body:      `{"name":"legacy","user":"MXINTADM","rights":["assets:read"],"apikey":"legacy-0123456789-abcdefghij-ABCDEFGHIJ"}`,
			replyCode: 201, reply: keyJSON,
		},
		{
			name:   "import value",
			args:   []string{"import", "--name", "legacy", "--user", "MXINTADM", "--rights", "assets:read", "--apikey", "v-0123456789-abcdefghij-ABCDEFGHIJ"},
			method: "POST", path: "/apikey/keys/import",
			body:      `{"name":"legacy","user":"MXINTADM","rights":["assets:read"],"apikey":"v-0123456789-abcdefghij-ABCDEFGHIJ"}`,
			replyCode: 201, reply: keyJSON,
		},
		{
			name:   "import sha256",
			args:   []string{"import", "--name", "legacy", "--user", "MXINTADM", "--rights", "assets:read", "--sha256", strings.ToUpper(sha)},
			method: "POST", path: "/apikey/keys/import",
			body:      `{"name":"legacy","user":"MXINTADM","rights":["assets:read"],"sha256":"` + sha + `"}`,
			replyCode: 201, reply: keyJSON,
		},
		{
			name:   "rotate with grace",
			args:   []string{"rotate", "key_7Hs2", "--grace", "24h"},
			method: "POST", path: "/apikey/keys/key_7Hs2/rotate", body: `{"grace":"24h"}`,
			replyCode: 200, reply: mintJSON,
		},
		{
			name:   "rotate without grace",
			args:   []string{"rotate", "key_7Hs2"},
			method: "POST", path: "/apikey/keys/key_7Hs2/rotate", body: `{}`,
			replyCode: 200, reply: mintJSON,
		},
		{
			name:   "show",
			args:   []string{"show", "key_7Hs2"},
			method: "GET", path: "/apikey/keys/key_7Hs2",
			replyCode: 200, reply: keyJSON,
		},
		{
			name:   "show escapes the id",
			args:   []string{"show", "a/b?c"},
			method: "GET", path: "/apikey/keys/a%2Fb%3Fc",
			replyCode: 200, reply: keyJSON,
		},
		{
			name:   "revoke",
			args:   []string{"revoke", "key_7Hs2"},
			method: "DELETE", path: "/apikey/keys/key_7Hs2",
			replyCode: 200, reply: keyJSON,
		},
		{
			name:   "revoke-user escapes the user",
			args:   []string{"revoke-user", "MX INT/ADM"},
			method: "DELETE", path: "/apikey/users/MX%20INT%2FADM",
			replyCode: 200, reply: `{"revoked":3}`,
		},
		{
			name:   "list filters",
			args:   []string{"list", "--user", "MXINTADM", "--name", "mx int", "--status", "revoked", "--limit", "10", "--cursor", "c1"},
			method: "GET", path: "/apikey/keys", query: "cursor=c1&limit=10&name=mx+int&status=revoked&user=MXINTADM",
			replyCode: 200, reply: `{"keys":[],"next":null}`,
		},
		{
			name:   "list plain",
			args:   []string{"list"},
			method: "GET", path: "/apikey/keys",
			replyCode: 200, reply: `{"keys":[],"next":null}`,
		},
		{
			name:   "usage range",
			args:   []string{"usage", "key_7Hs2", "--from", "2026-11-01", "--to", "2026-11-30"},
			method: "GET", path: "/apikey/keys/key_7Hs2/usage", query: "from=2026-11-01&to=2026-11-30",
			replyCode: 200, reply: `{"id":"key_7Hs2","days":[]}`,
		},
		{
			name:   "usage by area",
			args:   []string{"usage", "key_7Hs2", "--by", "area"},
			method: "GET", path: "/apikey/keys/key_7Hs2/usage", query: "by=area",
			replyCode: 200, reply: `{"id":"key_7Hs2","days":[]}`,
		},
		{
			name:   "report by status",
			args:   []string{"report", "--by", "status", "--csv"},
			method: "GET", path: "/apikey/usage", query: "by=status&format=csv",
			replyCode: 200, reply: "id,name,user,requests,2xx\nkey_7Hs2,mx-int,MXINTADM,12,12\n",
		},
		{
			name:   "usage default range",
			args:   []string{"usage", "key_7Hs2"},
			method: "GET", path: "/apikey/keys/key_7Hs2/usage",
			replyCode: 200, reply: `{"id":"key_7Hs2","days":[]}`,
		},
		{
			name:   "report",
			args:   []string{"report", "--from", "2026-11-01", "--to", "2026-11-30", "--user", "MX INT"},
			method: "GET", path: "/apikey/usage", query: "from=2026-11-01&to=2026-11-30&user=MX+INT",
			replyCode: 200, reply: `{"keys":[{"id":"key_7Hs2","name":"mx-int","user":"MX INT","requests":12}],"total":12}`,
		},
		{
			name:   "report csv",
			args:   []string{"report", "--csv"},
			method: "GET", path: "/apikey/usage", query: "format=csv",
			replyCode: 200, reply: "id,name,user,requests\nkey_7Hs2,mx-int,MXINTADM,12\n",
		},
		{
			name:   "license",
			args:   []string{"license"},
			method: "GET", path: "/apikey/license",
			replyCode: 200, reply: `{"limit":100,"in_use":9}`,
		},
		{
			name:   "audit",
			args:   []string{"audit", "--key", "key_7Hs2", "--limit", "5", "--cursor", "x"},
			method: "GET", path: "/apikey/audit", query: "cursor=x&key=key_7Hs2&limit=5",
			replyCode: 200, reply: `{"events":[],"next":null}`,
		},
		{
			name:   "areas",
			args:   []string{"areas"},
			method: "GET", path: "/apikey/areas",
			replyCode: 200, reply: `{"areas":[]}`,
		},
		{
			name:   "whoami",
			args:   []string{"whoami"},
			method: "GET", path: "/apikey/whoami",
			replyCode: 200, reply: `{"id":"local","name":"local","user":"","rights":["keys:admin"]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAdmin(t, map[string]reply{tt.method + " " + tt.path: {tt.replyCode, tt.reply}})
			res := runCLI(t, tt.stdin, append(tt.args, "--address", f.addr())...)
			wantCode(t, res, exitOK)
			req := f.only(t)
			if req.Method != tt.method || req.Path != tt.path || req.Query != tt.query {
				t.Errorf("request: got %s %s?%s, want %s %s?%s", req.Method, req.Path, req.Query, tt.method, tt.path, tt.query)
			}
			if tt.body == "" {
				if req.Body != "" {
					t.Errorf("body: got %s, want none", req.Body)
				}
			} else {
				jsonEqual(t, req.Body, tt.body)
				if req.ContentType != "application/json" {
					t.Errorf("Content-Type: got %q, want application/json", req.ContentType)
				}
			}
			if want := "http://" + f.addr(); req.Origin != want {
				t.Errorf("Origin: got %q, want %q", req.Origin, want)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	create := []string{"create", "--name", "n", "--user", "U", "--rights", "assets:read"}
	imp := []string{"import", "--name", "n", "--user", "U", "--rights", "assets:read"}
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "create without name", args: []string{"create", "--user", "U", "--rights", "assets:read"}, wantErr: "--name is required"},
		{name: "create blank name", args: []string{"create", "--name", " ", "--user", "U", "--rights", "assets:read"}, wantErr: "--name is required"},
		{name: "create without user", args: []string{"create", "--name", "n", "--rights", "assets:read"}, wantErr: "--user is required"},
		{name: "create without rights", args: []string{"create", "--name", "n", "--user", "U"}, wantErr: "--rights is required"},
		{name: "create bad right", args: []string{"create", "--name", "n", "--user", "U", "--rights", "assets"}, wantErr: `invalid right "assets"`},
		{name: "bad rate", args: append(slices.Clone(create), "--rate", "100"), wantErr: `invalid --rate "100"`},
		{name: "bad rate period", args: append(slices.Clone(create), "--rate", "100/minute"), wantErr: `invalid --rate "100/minute"`},
		{name: "empty rate", args: append(slices.Clone(create), "--rate", ""), wantErr: `invalid --rate ""`},
		{name: "bad quota", args: append(slices.Clone(create), "--quota", "10/week"), wantErr: "day or month"},
		{name: "expires-in in days", args: append(slices.Clone(create), "--expires-in", "30d"), wantErr: "30 days = 720h"},
		{name: "negative expires-in", args: append(slices.Clone(create), "--expires-in", "-1h"), wantErr: "must be positive"},
		{name: "bad expires-at", args: append(slices.Clone(create), "--expires-at", "2027-01-31"), wantErr: "RFC 3339"},
		{name: "update nothing", args: []string{"update", "key_7Hs2"}, wantErr: "nothing to change"},
		{name: "update bad rate", args: []string{"update", "key_7Hs2", "--rate", "fast"}, wantErr: `invalid --rate "fast"`},
		{name: "update bad expiry", args: []string{"update", "key_7Hs2", "--expires-at", "tomorrow"}, wantErr: "or never"},
		{name: "both expiries", args: append(slices.Clone(create), "--expires-in", "1h", "--expires-at", "2027-01-31T00:00:00Z"), wantErr: "not both"},
		{name: "create with argument", args: append(slices.Clone(create), "extra"), wantErr: `unexpected argument "extra"`},
		{name: "unknown flag", args: append(slices.Clone(create), "--colour", "red"), wantErr: "unknown flag: --colour"},
		{name: "flag without value", args: []string{"show", "key_1", "--address"}, wantErr: "flag needs an argument"},
		{name: "bad int flag", args: []string{"list", "--limit", "ten"}, wantErr: "invalid argument"},
		{name: "import without source", args: imp, wantErr: "exactly one of"},
		{name: "import two sources", args: append(slices.Clone(imp), "--apikey", "x", "--sha256", strings.Repeat("0", 64)), wantErr: "exactly one of"},
		{name: "import empty key", args: append(slices.Clone(imp), "--apikey", " "), wantErr: "--apikey is empty"},
		{name: "import bad sha", args: append(slices.Clone(imp), "--sha256", "abc"), wantErr: "invalid --sha256"},
		{name: "import empty stdin", args: append(slices.Clone(imp), "--apikey-file", "-"), wantErr: "no key found in stdin"},
		{name: "import has no --out", args: append(slices.Clone(imp), "--apikey", "x", "--out", "f"), wantErr: "unknown flag: --out"},
		{name: "show without id", args: []string{"show"}, wantErr: "want 1 argument(s) <id>, got 0"},
		{name: "show two ids", args: []string{"show", "a", "b"}, wantErr: "got 2"},
		{name: "show dot-dot", args: []string{"show", ".."}, wantErr: `invalid <id> ".."`},
		{name: "rotate bad grace", args: []string{"rotate", "key_1", "--grace", "1 day"}, wantErr: `invalid --grace "1 day"`},
		{name: "revoke-user without user", args: []string{"revoke-user"}, wantErr: "<user>"},
		{name: "list bad status", args: []string{"list", "--status", "deleted"}, wantErr: `invalid --status "deleted"`},
		{name: "list negative limit", args: []string{"list", "--limit", "-1"}, wantErr: "invalid --limit"},
		{name: "list all and cursor", args: []string{"list", "--all", "--cursor", "c"}, wantErr: "not both"},
		{name: "usage bad by", args: []string{"usage", "key_1", "--by", "day"}, wantErr: `--by "day" must be area or status`},
		{name: "report bad by", args: []string{"report", "--by", "user"}, wantErr: `--by "user" must be area or status`},
		{name: "usage bad date", args: []string{"usage", "key_1", "--from", "01/11/2026"}, wantErr: "want YYYY-MM-DD"},
		{name: "usage reversed range", args: []string{"usage", "key_1", "--from", "2026-11-30", "--to", "2026-11-01"}, wantErr: "is before --from"},
		{name: "license with argument", args: []string{"license", "now"}, wantErr: "unexpected argument"},
		{name: "areas with argument", args: []string{"areas", "assets"}, wantErr: "unexpected argument"},
		{name: "audit negative limit", args: []string{"audit", "--limit", "-5"}, wantErr: "invalid --limit"},
		{name: "unknown subcommand", args: []string{"frobnicate"}, wantErr: `unknown command "frobnicate"`},
		{name: "bad address", args: []string{"license", "--address", "localhost:2019-2020"}, wantErr: "invalid admin address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAdmin(t, nil)
			args := tt.args
			if !slices.Contains(args, "--address") {
				args = append(slices.Clone(args), "--address", f.addr())
			}
			res := runCLI(t, "", args...)
			wantCode(t, res, exitUsage)
			if !strings.Contains(res.stderr, tt.wantErr) {
				t.Errorf("stderr: got %q, want it to contain %q", res.stderr, tt.wantErr)
			}
			if !strings.Contains(res.stderr, "--help' for usage") {
				t.Errorf("stderr: got %q, want a pointer to --help", res.stderr)
			}
			if res.stdout != "" {
				t.Errorf("stdout: got %q, want nothing", res.stdout)
			}
			if reqs := f.requests(); len(reqs) != 0 {
				t.Errorf("got requests %+v, want none", reqs)
			}
		})
	}
}

func TestServerRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		route      string
		status     int
		body       string
		wantStderr []string
	}{
		{
			name:  "license exhausted",
			args:  []string{"create", "--name", "n", "--user", "U", "--rights", "assets:read"},
			route: "POST /apikey/keys", status: 409,
			body:       `{"error":{"code":"license_exhausted","message":"the license allows 100 active keys"}}`,
			wantStderr: []string{"Error: the license allows 100 active keys (license_exhausted, HTTP 409)"},
		},
		{
			name:  "weak imported key",
			args:  []string{"import", "--name", "n", "--user", "U", "--rights", "assets:read", "--apikey", "aaaaaaaa"},
			route: "POST /apikey/keys/import", status: 400,
			body:       `{"error":{"code":"invalid_request","message":"apikey: at least 32 characters"}}`,
			wantStderr: []string{"apikey: at least 32 characters", "invalid_request", "HTTP 400"},
		},
		{
			name:  "not found",
			args:  []string{"show", "key_nope"},
			route: "GET /apikey/keys/key_nope", status: 404,
			body:       `{"error":{"code":"not_found","message":"no key key_nope"}}`,
			wantStderr: []string{"no key key_nope (not_found, HTTP 404)"},
		},
		{
			name:  "caddy's own error shape",
			args:  []string{"license"},
			route: "GET /apikey/license", status: 404,
			body:       `{"error":"resource not found: /apikey/license"}`,
			wantStderr: []string{"Error: resource not found: /apikey/license (HTTP 404; is keygate's admin API"},
		},
		{
			name:  "not JSON",
			args:  []string{"revoke-user", "U"},
			route: "DELETE /apikey/users/U", status: 502,
			body:       "bad gateway\x1b[2J",
			wantStderr: []string{"Error: bad gateway?[2J (HTTP 502)"},
		},
		{
			name:  "empty body",
			args:  []string{"revoke", "key_1"},
			route: "DELETE /apikey/keys/key_1", status: 500,
			wantStderr: []string{"Error: Internal Server Error (HTTP 500)"},
		},
		{
			name:  "json mode still reports on stderr",
			args:  []string{"audit", "--json"},
			route: "GET /apikey/audit", status: 403,
			body:       `{"error":{"code":"forbidden","message":"nope"}}`,
			wantStderr: []string{"nope (forbidden, HTTP 403)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAdmin(t, map[string]reply{tt.route: {tt.status, tt.body}})
			res := runCLI(t, "", append(tt.args, "--address", f.addr())...)
			wantCode(t, res, exitRefused)
			for _, want := range tt.wantStderr {
				if !strings.Contains(res.stderr, want) {
					t.Errorf("stderr: got %q, want it to contain %q", res.stderr, want)
				}
			}
			if res.stdout != "" {
				t.Errorf("stdout: got %q, want nothing", res.stdout)
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	res := runCLI(t, "", "license", "--address", addr)
	wantCode(t, res, exitRefused)
	for _, want := range []string{"cannot reach the admin endpoint at " + addr, "--address"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr: got %q, want it to contain %q", res.stderr, want)
		}
	}
}

func TestUnixSocket(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "kg") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("unix sockets unavailable: %v", err)
	}
	f := &fakeAdmin{replies: map[string]reply{"GET /apikey/license": {200, `{"limit":null,"in_use":2}`}}}
	f.srv = httptest.NewUnstartedServer(f)
	f.srv.Listener = ln
	f.srv.Start()
	t.Cleanup(f.srv.Close)

	for _, addr := range []string{"unix/" + sock, "unix/" + sock + "|0222"} {
		res := runCLI(t, "", "license", "--address", addr)
		wantCode(t, res, exitOK)
		if want := "2 active key(s) in use; no license limit.\n"; res.stdout != want {
			t.Errorf("stdout: got %q, want %q", res.stdout, want)
		}
	}
	for _, req := range f.requests() {
		if req.Origin != "" {
			t.Errorf("Origin over a unix socket: got %q, want none (as caddycmd.AdminAPIRequest)", req.Origin)
		}
	}
}

func TestMintOutput(t *testing.T) {
	t.Parallel()
	createArgs := []string{"create", "--name", "mx-int", "--user", "MXINTADM", "--rights", "assets:read"}
	tests := []struct {
		name       string
		args       []string
		route      string
		wantStdout []string
		notStdout  []string
		wantJSON   bool
	}{
		{
			name:  "create human",
			args:  createArgs,
			route: "POST /apikey/keys",
			wantStdout: []string{
				"Created key key_7Hs2.\n", "\nAPI key: " + testKey + "\n",
				"shown only once", "user:          MXINTADM\n", "expires_at:    never\n",
			},
		},
		{
			name:  "rotate human",
			args:  []string{"rotate", "key_7Hs2", "--grace", "24h"},
			route: "POST /apikey/keys/key_7Hs2/rotate",
			wantStdout: []string{
				"Rotated key key_7Hs2.\n", "\nAPI key: " + testKey + "\n", "shown only once",
				"The previous secret keeps working for 24h.\n",
			},
		},
		{
			name:       "rotate human without grace",
			args:       []string{"rotate", "key_7Hs2"},
			route:      "POST /apikey/keys/key_7Hs2/rotate",
			wantStdout: []string{"The previous secret no longer works.\n"},
		},
		{
			name:     "create json",
			args:     append(slices.Clone(createArgs), "--json"),
			route:    "POST /apikey/keys",
			wantJSON: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAdmin(t, map[string]reply{tt.route: {201, mintJSON}})
			res := runCLI(t, "", append(tt.args, "--address", f.addr())...)
			wantCode(t, res, exitOK)
			if tt.wantJSON {
				jsonEqual(t, res.stdout, mintJSON)
				if !strings.Contains(res.stdout, "\n  \"key\": ") {
					t.Errorf("stdout: got %q, want indented JSON", res.stdout)
				}
			}
			for _, want := range tt.wantStdout {
				if !strings.Contains(res.stdout, want) {
					t.Errorf("stdout: got %q, want it to contain %q", res.stdout, want)
				}
			}
			if n := strings.Count(res.stdout, testKey); n != 1 {
				t.Errorf("stdout shows the key %d times, want once", n)
			}
		})
	}
}

func TestOutFile(t *testing.T) {
	t.Parallel()
	createArgs := []string{"create", "--name", "mx-int", "--user", "MXINTADM", "--rights", "assets:read"}
	tests := []struct {
		name  string
		args  []string
		route string
		json  bool
	}{
		{name: "create", args: createArgs, route: "POST /apikey/keys"},
		{name: "rotate", args: []string{"rotate", "key_7Hs2"}, route: "POST /apikey/keys/key_7Hs2/rotate"},
		{name: "create json", args: append(slices.Clone(createArgs), "--json"), route: "POST /apikey/keys", json: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "mx-int.apikey")
			f := newFakeAdmin(t, map[string]reply{tt.route: {201, mintJSON}})
			res := runCLI(t, "", append(tt.args, "--out", out, "--address", f.addr())...)
			wantCode(t, res, exitOK)

			st, err := os.Stat(out)
			if err != nil {
				t.Fatal(err)
			}
			if got := st.Mode().Perm(); got != 0o600 {
				t.Errorf("mode: got %v, want 0600", got)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := string(b), testKey+"\n"; got != want {
				t.Errorf("file: got %q, want %q", got, want)
			}
			if strings.Contains(res.stdout+res.stderr, testKey) {
				t.Errorf("the key was printed: stdout %q stderr %q", res.stdout, res.stderr)
			}
			if tt.json {
				var m map[string]any
				if err := json.Unmarshal([]byte(res.stdout), &m); err != nil {
					t.Fatalf("stdout: got %q, want JSON: %v", res.stdout, err)
				}
				if _, ok := m["key"]; ok || m["id"] != "key_7Hs2" {
					t.Errorf("stdout: got %v, want the key object without key", m)
				}
			} else if res.stdout != "key_7Hs2\n" {
				t.Errorf("stdout: got %q, want only the id", res.stdout)
			}
		})
	}
}

func TestOutFileRefusals(t *testing.T) {
	t.Parallel()
	createArgs := []string{"create", "--name", "mx-int", "--user", "MXINTADM", "--rights", "assets:read"}
	tests := []struct {
		name     string
		args     []string
		existing bool // the --out file exists already
		symlink  bool // the --out file is a dangling symlink
		noDir    bool // the --out directory does not exist
		status   int  // the server's answer
		wantCode int
		wantErr  string
		wantReqs int
	}{
		{name: "create existing file", args: createArgs, existing: true, status: 201, wantCode: exitUsage, wantErr: "already exists; refusing to overwrite"},
		{name: "rotate existing file", args: []string{"rotate", "key_7Hs2"}, existing: true, status: 200, wantCode: exitUsage, wantErr: "already exists"},
		{name: "dangling symlink", args: createArgs, symlink: true, status: 201, wantCode: exitUsage, wantErr: "already exists"},
		{name: "missing directory", args: createArgs, noDir: true, status: 201, wantCode: exitUsage, wantErr: "nothing was sent"},
		{name: "server refuses", args: createArgs, status: 409, wantCode: exitRefused, wantErr: "license_exhausted", wantReqs: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			out := filepath.Join(dir, "k.apikey")
			switch {
			case tt.existing:
				if err := os.WriteFile(out, []byte("precious\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			case tt.symlink:
				if err := os.Symlink(filepath.Join(dir, "target"), out); err != nil {
					t.Fatal(err)
				}
			case tt.noDir:
				out = filepath.Join(dir, "missing", "k.apikey")
			}
			body := mintJSON
			if tt.status >= 400 {
				body = `{"error":{"code":"license_exhausted","message":"license full"}}`
			}
			f := newFakeAdmin(t, map[string]reply{
				"POST /apikey/keys":                 {tt.status, body},
				"POST /apikey/keys/key_7Hs2/rotate": {tt.status, body},
			})
			res := runCLI(t, "", append(tt.args, "--out", out, "--address", f.addr())...)
			wantCode(t, res, tt.wantCode)
			if !strings.Contains(res.stderr, tt.wantErr) {
				t.Errorf("stderr: got %q, want it to contain %q", res.stderr, tt.wantErr)
			}
			if got := len(f.requests()); got != tt.wantReqs {
				t.Errorf("requests: got %d, want %d", got, tt.wantReqs)
			}
			switch {
			case tt.existing:
				if b, _ := os.ReadFile(out); string(b) != "precious\n" {
					t.Errorf("existing file: got %q, want it untouched", b)
				}
			case tt.symlink:
				if _, err := os.Stat(filepath.Join(dir, "target")); !os.IsNotExist(err) {
					t.Errorf("symlink target was created: %v", err)
				}
			default:
				if _, err := os.Lstat(out); !os.IsNotExist(err) {
					t.Errorf("--out file left behind: %v", err)
				}
			}
		})
	}
}

func TestHumanOutput(t *testing.T) {
	t.Parallel()
	revoked := strings.Replace(keyJSON, `"revoked_at":null`, `"revoked_at":"2026-11-24T08:00:00Z"`, 1)
	revoked = strings.Replace(revoked, `"status":"active"`, `"status":"revoked"`, 1)
	tests := []struct {
		name       string
		args       []string
		replies    map[string]reply
		wantStdout string
		wantStderr string
	}{
		{
			name:    "show",
			args:    []string{"show", "key_7Hs2"},
			replies: map[string]reply{"GET /apikey/keys/key_7Hs2": {200, keyJSON}},
			wantStdout: "id:            key_7Hs2\n" +
				"name:          mx-int\n" +
				"user:          MXINTADM\n" +
				"rights:        assets:read,workorders:write\n" +
				"status:        active\n" +
				"start:         kg_4Fq9\n" +
				"imported:      false\n" +
				"created_at:    2026-11-23T10:00:00Z\n" +
				"created_by:    local\n" +
				"expires_at:    2026-12-23T10:00:00Z\n" +
				"last_used_at:  never\n" +
				"rate:          100/1m\n" +
				"quota:         10000/month\n" +
				"allowed_ips:   anywhere\n" +
				"environments:  none (handlers without an environment)\n",
		},
		{
			name:    "revoke",
			args:    []string{"revoke", "key_7Hs2"},
			replies: map[string]reply{"DELETE /apikey/keys/key_7Hs2": {200, revoked}},
			wantStdout: "Revoked key key_7Hs2.\n\n" +
				"id:            key_7Hs2\n" +
				"name:          mx-int\n" +
				"user:          MXINTADM\n" +
				"rights:        assets:read,workorders:write\n" +
				"status:        revoked\n" +
				"start:         kg_4Fq9\n" +
				"imported:      false\n" +
				"created_at:    2026-11-23T10:00:00Z\n" +
				"created_by:    local\n" +
				"expires_at:    2026-12-23T10:00:00Z\n" +
				"revoked_at:    2026-11-24T08:00:00Z\n" +
				"last_used_at:  never\n" +
				"rate:          100/1m\n" +
				"quota:         10000/month\n" +
				"allowed_ips:   anywhere\n" +
				"environments:  none (handlers without an environment)\n",
		},
		{
			name:       "revoke-user",
			args:       []string{"revoke-user", "MXINTADM"},
			replies:    map[string]reply{"DELETE /apikey/users/MXINTADM": {200, `{"revoked":3}`}},
			wantStdout: "Revoked 3 key(s) of user MXINTADM.\n",
		},
		{
			name: "list",
			args: []string{"list"},
			replies: map[string]reply{"GET /apikey/keys": {200, `{"keys":[` + keyJSON + `,` +
				`{"id":"key_2","name":"batch\tjob","user":"MAXADMIN","rights":["*:write"],"start":"kg_zz","status":"revoked","expires_at":null,"last_used_at":"2026-11-22T23:59:30.5Z"}` +
				`],"next":"c2"}`}},
			wantStdout: "ID        NAME       USER      STATUS   START    RIGHTS                        EXPIRES            LAST USED\n" +
				"key_7Hs2  mx-int     MXINTADM  active   kg_4Fq9  assets:read,workorders:write  2026-12-23 10:00Z  never\n" +
				"key_2     batch?job  MAXADMIN  revoked  kg_zz    *:write                       never              2026-11-22 23:59Z\n",
			wantStderr: "More keys: run again with --cursor c2, or use --all.\n",
		},
		{
			name:       "list empty",
			args:       []string{"list", "--status", "expired"},
			replies:    map[string]reply{"GET /apikey/keys": {200, `{"keys":[],"next":null}`}},
			wantStdout: "No keys found.\n",
		},
		{
			name: "usage",
			args: []string{"usage", "key_7Hs2"},
			replies: map[string]reply{"GET /apikey/keys/key_7Hs2/usage": {200,
				`{"id":"key_7Hs2","days":[{"date":"2026-11-22","requests":7},{"date":"2026-11-23","requests":12345}]}`}},
			wantStdout: "DATE        REQUESTS\n" +
				"2026-11-22         7\n" +
				"2026-11-23     12345\n" +
				"TOTAL          12352\n",
		},
		{
			name: "usage by area",
			args: []string{"usage", "key_7Hs2", "--by", "area"},
			replies: map[string]reply{"GET /apikey/keys/key_7Hs2/usage": {200,
				`{"id":"key_7Hs2","days":[{"date":"2026-11-22","requests":7,"by":{"assets":7}},{"date":"2026-11-23","requests":12345,"by":{"assets":12000,"workorders":345}}]}`}},
			wantStdout: "DATE        REQUESTS  assets  workorders\n" +
				"2026-11-22         7       7           0\n" +
				"2026-11-23     12345   12000         345\n" +
				"TOTAL          12352   12007         345\n",
		},
		{
			name: "report by status",
			args: []string{"report", "--by", "status"},
			replies: map[string]reply{"GET /apikey/usage": {200,
				`{"keys":[{"id":"key_7Hs2","name":"mx-int","user":"MXINTADM","requests":12,"by":{"2xx":11,"5xx":1}}],"total":12,"by":{"2xx":11,"5xx":1}}`}},
			wantStdout: "ID        NAME    USER      REQUESTS  2XX  5XX\n" +
				"key_7Hs2  mx-int  MXINTADM  12        11   1\n" +
				"                  total     12        11   1\n",
		},
		{
			name:       "license",
			args:       []string{"license"},
			replies:    map[string]reply{"GET /apikey/license": {200, `{"limit":100,"in_use":9}`}},
			wantStdout: "9 of 100 active keys in use (91 available).\n",
		},
		{
			name:       "license unlimited",
			args:       []string{"license"},
			replies:    map[string]reply{"GET /apikey/license": {200, `{"limit":null,"in_use":9}`}},
			wantStdout: "9 active key(s) in use; no license limit.\n",
		},
		{
			name: "audit",
			args: []string{"audit"},
			replies: map[string]reply{"GET /apikey/audit": {200, `{"events":[` +
				`{"at":"2026-11-23T10:00:00Z","actor":"local","action":"create","key_id":"key_7Hs2","details":{"name":"mx-int"}},` +
				`{"at":"2026-11-23T11:30:00Z","actor":"key_root","action":"revoke_user","key_id":"","details":"user MXINTADM"}` +
				`],"next":"e2"}`}},
			wantStdout: "AT                 ACTOR     ACTION       KEY       DETAILS\n" +
				"2026-11-23 10:00Z  local     create       key_7Hs2  {\"name\":\"mx-int\"}\n" +
				"2026-11-23 11:30Z  key_root  revoke_user  -         user MXINTADM\n",
			wantStderr: "More events: run again with --cursor e2.\n",
		},
		{
			name: "events failed",
			args: []string{"events", "--failed", "--limit", "1"},
			replies: map[string]reply{"GET /apikey/events": {200, `{"deliveries":[` +
				`{"id":"dlv_1","event_id":"evt_1","type":"key.revoked","target":"https://hooks.example/k","key":{"id":"key_7Hs2"},` +
				`"created_at":"2026-11-23T10:00:00Z","next_at":"2026-11-23T10:04:00Z","attempts":3,"last_error":"HTTP 503"}],"total":2}`}},
			wantStdout: "CREATED            TYPE         EVENT  TARGET                   ATTEMPTS  NEXT               LAST ERROR\n" +
				"2026-11-23 10:00Z  key.revoked  evt_1  https://hooks.example/k  3         2026-11-23 10:04Z  HTTP 503\n",
			wantStderr: "1 of 2 shown; use --limit for more.\n",
		},
		{
			name:       "no events",
			args:       []string{"events"},
			replies:    map[string]reply{"GET /apikey/events": {200, `{"deliveries":[],"total":0}`}},
			wantStdout: "No pending webhook deliveries.\n",
		},
		{
			name: "areas",
			args: []string{"areas"},
			replies: map[string]reply{"GET /apikey/areas": {200, `{"areas":[` +
				`{"name":"assets","paths":["/maximo/oslc/os/mxasset*","/maximo/api/os/mxasset*"],"level":null,"graphql_fields":[]},` +
				`{"name":"scripts","paths":["/maximo/oslc/script/*"],"level":"write","graphql_fields":[]},` +
				`{"name":"workorders","paths":["/mce/api/wo*"],"level":null,"graphql_fields":["workOrder","workOrders"]}]}`}},
			wantStdout: "AREA        LEVEL       PATHS                                             GRAPHQL FIELDS\n" +
				"assets      read/write  /maximo/oslc/os/mxasset* /maximo/api/os/mxasset*  -\n" +
				"scripts     write       /maximo/oslc/script/*                             -\n" +
				"workorders  read/write  /mce/api/wo*                                      workOrder,workOrders\n",
		},
		{
			name:       "no areas",
			args:       []string{"areas"},
			replies:    map[string]reply{"GET /apikey/areas": {200, `{"areas":[]}`}},
			wantStdout: "No areas are configured; add area lines to the apikey app.\n",
		},
		{
			name:    "whoami",
			args:    []string{"whoami"},
			replies: map[string]reply{"GET /apikey/whoami": {200, `{"id":"local","name":"local","user":"","rights":["keys:admin"]}`}},
			wantStdout: "id:      local\n" +
				"name:    local\n" +
				"user:    -\n" +
				"rights:  keys:admin\n",
		},
		{
			name:       "import",
			args:       []string{"import", "--name", "legacy", "--user", "U", "--rights", "assets:read", "--apikey", "k"},
			replies:    map[string]reply{"POST /apikey/keys/import": {201, keyJSON}},
			wantStdout: "Imported key key_7Hs2.\n\nid:            key_7Hs2\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAdmin(t, tt.replies)
			res := runCLI(t, "", append(tt.args, "--address", f.addr())...)
			wantCode(t, res, exitOK)
			if strings.HasSuffix(tt.name, "import") {
				if !strings.HasPrefix(res.stdout, tt.wantStdout) {
					t.Errorf("stdout: got\n%s\nwant it to start with\n%s", res.stdout, tt.wantStdout)
				}
			} else if res.stdout != tt.wantStdout {
				t.Errorf("stdout: got\n%s\nwant\n%s", res.stdout, tt.wantStdout)
			}
			if res.stderr != tt.wantStderr {
				t.Errorf("stderr: got %q, want %q", res.stderr, tt.wantStderr)
			}
		})
	}
}

func TestJSONOutput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		args  []string
		route string
		body  string
	}{
		{name: "show", args: []string{"show", "key_7Hs2"}, route: "GET /apikey/keys/key_7Hs2", body: keyJSON},
		{name: "revoke", args: []string{"revoke", "key_7Hs2"}, route: "DELETE /apikey/keys/key_7Hs2", body: keyJSON},
		{name: "revoke-user", args: []string{"revoke-user", "U"}, route: "DELETE /apikey/users/U", body: `{"revoked":0}`},
		{name: "list", args: []string{"list"}, route: "GET /apikey/keys", body: `{"keys":[` + keyJSON + `],"next":"abc"}`},
		{name: "usage", args: []string{"usage", "k"}, route: "GET /apikey/keys/k/usage", body: `{"id":"k","days":[{"date":"2026-11-23","requests":1}]}`},
		{name: "license", args: []string{"license"}, route: "GET /apikey/license", body: `{"limit":null,"in_use":0}`},
		{name: "audit", args: []string{"audit"}, route: "GET /apikey/audit", body: `{"events":[],"next":null}`},
		{name: "events", args: []string{"events"}, route: "GET /apikey/events", body: `{"deliveries":[],"total":0}`},
		{name: "areas", args: []string{"areas"}, route: "GET /apikey/areas", body: `{"areas":[{"name":"assets","paths":["/a*"],"level":null,"graphql_fields":[]}]}`},
		{name: "whoami", args: []string{"whoami"}, route: "GET /apikey/whoami", body: `{"id":"local","name":"local","user":"","rights":["keys:admin"]}`},
		{name: "import", args: []string{"import", "--name", "n", "--user", "U", "--rights", "a:read", "--apikey", "k"}, route: "POST /apikey/keys/import", body: keyJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAdmin(t, map[string]reply{tt.route: {200, tt.body}})
			res := runCLI(t, "", append(tt.args, "--json", "--address", f.addr())...)
			wantCode(t, res, exitOK)
			var want bytes.Buffer
			if err := json.Indent(&want, []byte(tt.body), "", "  "); err != nil {
				t.Fatal(err)
			}
			want.WriteByte('\n')
			if res.stdout != want.String() {
				t.Errorf("stdout: got\n%s\nwant\n%s", res.stdout, want.String())
			}
		})
	}
}

func TestListAll(t *testing.T) {
	t.Parallel()
	page := func(id, next string) string {
		n := "null"
		if next != "" {
			n = `"` + next + `"`
		}
		return `{"keys":[{"id":"` + id + `","name":"n","user":"U","rights":["a:read"],"status":"active"}],"next":` + n + `}`
	}
	replies := map[string]reply{
		"GET /apikey/keys?limit=1&user=U":           {200, page("key_1", "c2")},
		"GET /apikey/keys?cursor=c2&limit=1&user=U": {200, page("key_2", "c3")},
		"GET /apikey/keys?cursor=c3&limit=1&user=U": {200, page("key_3", "")},
	}
	tests := []struct {
		name  string
		json  bool
		check func(t *testing.T, res result)
	}{
		{name: "table", check: func(t *testing.T, res result) {
			for _, id := range []string{"key_1", "key_2", "key_3"} {
				if !strings.Contains(res.stdout, "\n"+id+" ") {
					t.Errorf("stdout: got %q, want a row for %s", res.stdout, id)
				}
			}
			if res.stderr != "" {
				t.Errorf("stderr: got %q, want no cursor hint", res.stderr)
			}
		}},
		{name: "json", json: true, check: func(t *testing.T, res result) {
			var got struct {
				Keys []struct {
					ID string `json:"id"`
				} `json:"keys"`
				Next *string `json:"next"`
			}
			if err := json.Unmarshal([]byte(res.stdout), &got); err != nil {
				t.Fatalf("stdout: got %q: %v", res.stdout, err)
			}
			var ids []string
			for _, k := range got.Keys {
				ids = append(ids, k.ID)
			}
			if want := []string{"key_1", "key_2", "key_3"}; !slices.Equal(ids, want) || got.Next != nil {
				t.Errorf("got ids %v next %v, want %v and null", ids, got.Next, want)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAdmin(t, replies)
			args := []string{"list", "--all", "--user", "U", "--limit", "1", "--address", f.addr()}
			if tt.json {
				args = append(args, "--json")
			}
			res := runCLI(t, "", args...)
			wantCode(t, res, exitOK)
			if got := len(f.requests()); got != 3 {
				t.Errorf("requests: got %d, want 3", got)
			}
			tt.check(t, res)
		})
	}
}

func TestListAllStopsOnRepeatedCursor(t *testing.T) {
	t.Parallel()
	f := newFakeAdmin(t, map[string]reply{"GET /apikey/keys": {200, `{"keys":[],"next":"same"}`}})
	res := runCLI(t, "", "list", "--all", "--address", f.addr())
	wantCode(t, res, exitRefused)
	if !strings.Contains(res.stderr, `cursor "same" twice`) {
		t.Errorf("stderr: got %q", res.stderr)
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "no subcommand", args: nil, want: "revoke-user"},
		{name: "help flag", args: []string{"create", "--help"}, want: "--expires-in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := runCLI(t, "", tt.args...)
			wantCode(t, res, exitOK)
			if !strings.Contains(res.stdout, tt.want) {
				t.Errorf("stdout: got %q, want it to contain %q", res.stdout, tt.want)
			}
		})
	}
}

// TestCaddyExit checks the exit codes as caddycmd.Main will see them: nil
// exits 0, a plain error 1, and caddycmd's exitError carries any other code.
func TestCaddyExit(t *testing.T) {
	t.Parallel()
	cmd := &cobra.Command{Use: "x"}
	if err := caddyExit(cmd, exitOK); err != nil {
		t.Errorf("exit 0: got %v, want nil", err)
	}
	err := caddyExit(cmd, exitRefused)
	if err == nil || reflect.TypeOf(err).String() == "*caddycmd.exitError" {
		t.Errorf("exit 1: got %T %v, want a plain error", err, err)
	}
	err = caddyExit(cmd, exitUsage)
	v := reflect.ValueOf(err)
	if err == nil || v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		t.Fatalf("exit 2: got %T %v, want *caddycmd.exitError", err, err)
	}
	code := v.Elem().FieldByName("ExitCode")
	if !code.IsValid() || code.Int() != exitUsage {
		t.Errorf("exit 2: got %T %+v, want ExitCode 2", err, err)
	}
}

func TestRegistered(t *testing.T) {
	t.Parallel()
	c, ok := caddycmd.Commands()["apikey"]
	if !ok {
		t.Fatal("the apikey command is not registered")
	}
	cmd := &cobra.Command{Use: "apikey"}
	c.CobraFunc(cmd)
	var got []string
	for _, sub := range cmd.Commands() {
		got = append(got, sub.Name())
	}
	want := []string{"areas", "audit", "create", "events", "import", "license", "list", "report", "revoke", "revoke-user", "rotate", "show", "update", "usage", "user", "user-limits", "whoami"}
	if !slices.Equal(got, want) {
		t.Errorf("subcommands: got %v, want %v", got, want)
	}
	for _, name := range []string{"address", "config", "adapter", "json"} {
		if cmd.PersistentFlags().Lookup(name) == nil {
			t.Errorf("missing persistent flag --%s", name)
		}
	}
}

func TestUserCommands(t *testing.T) {
	const current = `{"user":"MX INT","active_keys":3,"rate":{"limit":600,"per":"1m"},"quota":{"limit":1000,"period":"day"}}`
	tests := []struct {
		name   string
		args   []string
		want   []string // "METHOD path body", in order
		stdout string
	}{
		{name: "show", args: []string{"user", "MX INT"}, want: []string{"GET /apikey/users/MX%20INT "},
			stdout: "user:         MX INT\nactive keys:  3\nshared rate:  600/1m\nshared quota: 1000/day\n"},
		{name: "set both", args: []string{"user-limits", "MX INT", "--rate", "10/1s", "--quota", "5000/month"},
			want: []string{`PUT /apikey/users/MX%20INT/limits {"quota":{"limit":5000,"period":"month"},"rate":{"limit":10,"per":"1s"}}`}},
		{name: "rate only keeps the quota", args: []string{"user-limits", "MX INT", "--rate", "10/1s"},
			want: []string{"GET /apikey/users/MX%20INT ", `PUT /apikey/users/MX%20INT/limits {"quota":{"limit":1000,"period":"day"},"rate":{"limit":10,"per":"1s"}}`}},
		{name: "clear the rate", args: []string{"user-limits", "MX INT", "--rate", "none"},
			want: []string{"GET /apikey/users/MX%20INT ", `PUT /apikey/users/MX%20INT/limits {"quota":{"limit":1000,"period":"day"},"rate":null}`}},
		{name: "clear both", args: []string{"user-limits", "MX INT", "--rate", "none", "--quota", "none"},
			want: []string{"DELETE /apikey/users/MX%20INT/limits "}},
		{name: "delete", args: []string{"user-limits", "MX INT", "--delete"},
			want: []string{"DELETE /apikey/users/MX%20INT/limits "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAdmin(t, map[string]reply{
				"GET /apikey/users/MX%20INT":           {200, current},
				"PUT /apikey/users/MX%20INT/limits":    {200, current},
				"DELETE /apikey/users/MX%20INT/limits": {200, current},
			})
			res := runCLI(t, "", append(tt.args, "--address", f.addr())...)
			wantCode(t, res, exitOK)
			var got []string
			for _, r := range f.requests() {
				body := r.Body
				if body != "" {
					var v any
					if err := json.Unmarshal([]byte(body), &v); err != nil {
						t.Fatal(err)
					}
					b, _ := json.Marshal(v) // sorted keys
					body = string(b)
				}
				got = append(got, r.Method+" "+r.Path+" "+body)
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if tt.stdout != "" && res.stdout != tt.stdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", res.stdout, tt.stdout)
			}
		})
	}
	for _, bad := range [][]string{
		{"user-limits", "U"},
		{"user-limits", "U", "--delete", "--rate", "1/1s"},
		{"user-limits", "U", "--rate", "fast"},
	} {
		res := runCLI(t, "", append(bad, "--address", "127.0.0.1:1")...)
		wantCode(t, res, exitUsage)
	}
}
