package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// standard renders the usual test config: Maximo areas, a credential for
// MXINTADM, logs with the example's filters written to files in dir.
func standard(be *backend, appExtra, handlerBody string) func(int, int, string) string {
	return func(adminPort, sitePort int, dir string) string {
		return fmt.Sprintf(`{
	admin 127.0.0.1:%[1]d
	log default {
		output file %[3]s/keygate.log
		level DEBUG
		format filter {
			wrap json
			fields {
				request>headers>Apikey delete
				request>headers>Authorization delete
				request>uri query {
					delete apikey
				}
			}
		}
	}
	apikey {
		storage file %[3]s/keys.db
		%[4]s
		upstream_credential MXINTADM maximo-native-secret-for-mxintadm
		%[6]s
	}
}

http://127.0.0.1:%[2]d {
	log {
		output file %[3]s/access.log
		format filter {
			wrap json
			fields {
				request>headers>Apikey delete
				request>headers>Authorization delete
				request>uri query {
					delete apikey
				}
			}
		}
	}
	handle /keygate/* {
		apikey_admin
	}
	handle {
		apikey {
			%[7]s
		}
		reverse_proxy %[5]s {
			header_up X-Run-As-User {apikey.user}
			header_up X-Maximo-Apikey {apikey.upstream_credential}
		}
	}
}
`, adminPort, sitePort, dir, maximoAreas, be.addr(), appExtra, handlerBody)
	}
}

func TestProxyPassesScrubsAndIdentifies(t *testing.T) {
	be := newBackend(t)
	in := start(t, standard(be, "", "bearer"))
	k := in.createKey(map[string]any{"name": "mx-int", "user": "MXINTADM", "rights": []string{"assets:read", "workorders:write"}})

	assetURL := in.siteURL + "/maximo/oslc/os/mxapiasset?lean=1&oslc.select=assetnum,status"
	tests := []struct {
		name   string
		url    string
		header http.Header
	}{
		{"header", assetURL, hdr("apikey", k.Key)},
		{"header mixed case", assetURL, hdr("APIKEY", k.Key)},
		{"query", assetURL + "&apikey=" + url.QueryEscape(k.Key), nil},
		{"query first", in.siteURL + "/maximo/oslc/os/mxapiasset?apikey=" + k.Key + "&lean=1", nil},
		{"bearer", assetURL, hdr("Authorization", "Bearer "+k.Key)},
		{"header and same query", assetURL + "&apikey=" + k.Key, hdr("apikey", k.Key)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := call(t, "GET", tc.url, tc.header)
			if code != 200 {
				t.Fatalf("got status %d (%s), want 200", code, body)
			}
			got := be.last()
			if strings.Contains(fmt.Sprint(got.Header), k.Key) || strings.Contains(got.RawQuery, k.Key) {
				t.Fatalf("backend received the key: header %v query %q", got.Header, got.RawQuery)
			}
			if got.Header.Get("Apikey") != "" || got.Header.Get("Authorization") != "" {
				t.Fatalf("backend received apikey/Authorization headers: %v", got.Header)
			}
			if strings.Contains(got.RawQuery, "apikey") {
				t.Fatalf("backend query still names apikey: %q", got.RawQuery)
			}
			if !strings.Contains(got.RawQuery, "lean=1") {
				t.Fatalf("backend query lost other parameters: %q", got.RawQuery)
			}
			if u := got.Header.Get("X-Run-As-User"); u != "MXINTADM" {
				t.Fatalf("X-Run-As-User: got %q, want MXINTADM", u)
			}
			if c := got.Header.Get("X-Maximo-Apikey"); c != "maximo-native-secret-for-mxintadm" {
				t.Fatalf("upstream credential: got %q, want the configured one", c)
			}
		})
	}
}

func TestUnauthorizedBodiesAreIdentical(t *testing.T) {
	be := newBackend(t)
	in := start(t, standard(be, "", ""))
	revoked := in.createKey(map[string]any{"name": "revoked", "user": "U1", "rights": []string{"assets:read"}})
	if code := in.adminJSON("DELETE", "/keys/"+revoked.ID, nil, nil); code != 200 {
		t.Fatalf("revoke: got %d, want 200", code)
	}
	expired := in.createKey(map[string]any{"name": "expired", "user": "U1", "rights": []string{"assets:read"}, "expires_in": "1s"})
	valid := in.createKey(map[string]any{"name": "valid", "user": "U1", "rights": []string{"assets:read"}})
	other := in.createKey(map[string]any{"name": "other", "user": "U1", "rights": []string{"assets:read"}})
	time.Sleep(1100 * time.Millisecond) // let "expired" expire (expiry has second resolution)

	// An unknown key with a valid checksum: a real key of another store.
	unknown := strings.Replace(valid.Key, valid.Key[3:7], "ZZZZ", 1)
	asset := in.siteURL + "/maximo/oslc/os/mxapiasset"
	before := be.count()
	cases := []struct {
		name   string
		url    string
		header http.Header
	}{
		{"missing", asset, nil},
		{"malformed", asset, hdr("apikey", "kg_notavalidkey")},
		{"bad checksum", asset, hdr("apikey", valid.Key[:len(valid.Key)-1]+flip(valid.Key[len(valid.Key)-1]))},
		{"unknown", asset, hdr("apikey", unknown)},
		{"revoked", asset, hdr("apikey", revoked.Key)},
		{"expired", asset, hdr("apikey", expired.Key)},
		{"ambiguous header+query", asset + "?apikey=" + other.Key, hdr("apikey", valid.Key)},
		{"ambiguous two headers", asset, http.Header{"Apikey": {valid.Key, other.Key}}},
	}
	var first string
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body, h := call(t, "GET", tc.url, tc.header)
			if code != 401 {
				t.Fatalf("got status %d, want 401", code)
			}
			if h.Get("WWW-Authenticate") != `ApiKey realm="keygate"` {
				t.Fatalf("WWW-Authenticate: got %q", h.Get("WWW-Authenticate"))
			}
			if first == "" {
				first = body
			}
			if body != first {
				t.Fatalf("401 body differs:\n got %q\nwant %q", body, first)
			}
		})
	}
	if !strings.Contains(first, `"invalid_api_key"`) {
		t.Fatalf("401 body %q lacks the invalid_api_key code", first)
	}
	if n := be.count() - before; n != 0 {
		t.Fatalf("backend received %d rejected requests, want 0", n)
	}
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func TestRightsAreEnforced(t *testing.T) {
	be := newBackend(t)
	in := start(t, standard(be, "", ""))
	reader := in.createKey(map[string]any{"name": "reader", "user": "MXINTADM", "rights": []string{"assets:read"}})
	writer := in.createKey(map[string]any{"name": "writer", "user": "MXINTADM", "rights": []string{"workorders:write"}})
	rec := "/maximo/oslc/os/mxapiasset/_QkVERk9SRC8xMDAx"
	cases := []struct {
		name   string
		method string
		path   string
		key    string
		header []string
		want   int
	}{
		{"read GET", "GET", rec, reader.Key, nil, 200},
		{"read GET upper-case path", "GET", "/MAXIMO/OSLC/OS/MXAPIASSET", reader.Key, nil, 200},
		{"read HEAD", "HEAD", rec, reader.Key, nil, 200},
		{"read POST", "POST", rec, reader.Key, nil, 403},
		{"read DELETE", "DELETE", rec, reader.Key, nil, 403},
		{"read GET override PATCH", "GET", rec, reader.Key, []string{"X-HTTP-Method-Override", "PATCH"}, 403},
		{"read GET x-method-override", "GET", rec, reader.Key, []string{"X-Method-Override", "DELETE"}, 403},
		{"read GET _method", "GET", rec + "?_method=DELETE", reader.Key, nil, 403},
		{"read in other area", "GET", "/maximo/oslc/os/mxapiwodetail", reader.Key, nil, 403},
		{"dot-dot escape", "GET", "/maximo/oslc/os/mxapiasset/../mxapiwodetail", reader.Key, nil, 400},
		{"encoded slash escape", "GET", "/maximo/oslc/os/mxapiasset%2F..%2Fmxapiwodetail", reader.Key, nil, 400},
		{"servlet path parameter escape", "GET", "/maximo/oslc/os/mxapiasset/..;/mxapiwodetail", reader.Key, nil, 400},
		{"IIS backslash escape", "GET", "/maximo/oslc/os/mxapiasset%5c..%5cmxapiwodetail", reader.Key, nil, 400},
		{"invalid path without a key", "GET", "/maximo/oslc/os/mxapiasset/..;/mxapiwodetail", "", nil, 400},
		{"double slash", "GET", "/maximo//oslc/os/mxapiasset", reader.Key, nil, 200},
		{"area-less path", "GET", "/maximo/oslc/os/mxapipo", writer.Key, nil, 403},
		{"root path", "GET", "/", writer.Key, nil, 403},
		{"write POST override PATCH", "POST", "/maximo/oslc/os/mxapiwodetail/_V08xMDAx", writer.Key, []string{"X-Method-Override", "PATCH"}, 200},
		{"write GET", "GET", "/maximo/oslc/os/mxwo", writer.Key, nil, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := hdr(append([]string{"apikey", tc.key}, tc.header...)...)
			code, body, _ := call(t, tc.method, in.siteURL+tc.path, h)
			if code != tc.want {
				t.Fatalf("got status %d (%s), want %d", code, body, tc.want)
			}
			if code == 403 && !strings.Contains(body, `"forbidden"`) {
				t.Fatalf("403 body %q lacks the forbidden code", body)
			}
		})
	}
}

func TestRequireUpstreamCredential(t *testing.T) {
	be := newBackend(t)
	in := start(t, standard(be, "", "require_upstream_credential"))
	with := in.createKey(map[string]any{"name": "with", "user": "MXINTADM", "rights": []string{"assets:read"}})
	without := in.createKey(map[string]any{"name": "without", "user": "JDOE", "rights": []string{"assets:read"}})
	asset := in.siteURL + "/maximo/oslc/os/mxapiasset"
	if code, body, _ := call(t, "GET", asset, hdr("apikey", with.Key)); code != 200 {
		t.Fatalf("user with credential: got %d (%s), want 200", code, body)
	}
	if code, body, _ := call(t, "GET", asset, hdr("apikey", without.Key)); code != 403 {
		t.Fatalf("user without credential: got %d (%s), want 403", code, body)
	}
}

func TestRotateRevokeUserAndLicense(t *testing.T) {
	be := newBackend(t)
	in := start(t, standard(be, "license 4", ""))
	asset := in.siteURL + "/maximo/oslc/os/mxapiasset"
	status := func(key string) int {
		code, _, _ := call(t, "GET", asset, hdr("apikey", key))
		return code
	}

	k := in.createKey(map[string]any{"name": "a", "user": "JDOE", "rights": []string{"assets:read"}})
	if got := status(k.Key); got != 200 {
		t.Fatalf("new key: got %d, want 200", got)
	}
	var rot createdKey
	if code := in.adminJSON("POST", "/keys/"+k.ID+"/rotate", map[string]any{}, &rot); code != 200 {
		t.Fatalf("rotate: got %d, want 200", code)
	}
	if got := status(k.Key); got != 401 {
		t.Fatalf("old key right after rotate: got %d, want 401", got)
	}
	if got := status(rot.Key); got != 200 {
		t.Fatalf("new secret: got %d, want 200", got)
	}

	// With grace both work until it ends.
	var rot2 createdKey
	if code := in.adminJSON("POST", "/keys/"+k.ID+"/rotate", map[string]any{"grace": "2s"}, &rot2); code != 200 {
		t.Fatalf("rotate with grace: got %d, want 200", code)
	}
	if a, b := status(rot.Key), status(rot2.Key); a != 200 || b != 200 {
		t.Fatalf("during grace: old %d, new %d, want 200 and 200", a, b)
	}
	time.Sleep(2100 * time.Millisecond)
	if a, b := status(rot.Key), status(rot2.Key); a != 401 || b != 200 {
		t.Fatalf("after grace: old %d, new %d, want 401 and 200", a, b)
	}

	// revoke-user kills all of a user's keys.
	k2 := in.createKey(map[string]any{"name": "b", "user": "JDOE", "rights": []string{"assets:read"}})
	keep := in.createKey(map[string]any{"name": "c", "user": "ASMITH", "rights": []string{"assets:read"}})
	var res struct {
		Revoked int `json:"revoked"`
	}
	if code := in.adminJSON("DELETE", "/users/JDOE", nil, &res); code != 200 || res.Revoked != 2 {
		t.Fatalf("revoke-user: got %d revoked=%d, want 200 and 2", code, res.Revoked)
	}
	if a, b, c := status(rot2.Key), status(k2.Key), status(keep.Key); a != 401 || b != 401 || c != 200 {
		t.Fatalf("after revoke-user: %d %d %d, want 401 401 200", a, b, c)
	}

	// Licence: 4 active allowed; 1 active now (keep).
	for i := 0; i < 3; i++ {
		in.createKey(map[string]any{"name": fmt.Sprint("l", i), "user": "X", "rights": []string{"assets:read"}})
	}
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if code := in.adminJSON("POST", "/keys", map[string]any{"name": "over", "user": "X", "rights": []string{"assets:read"}}, &e); code != 409 || e.Error.Code != "license_exhausted" {
		t.Fatalf("over licence: got %d %q, want 409 license_exhausted", code, e.Error.Code)
	}
	var lic struct {
		Limit *int `json:"limit"`
		InUse int  `json:"in_use"`
	}
	if code := in.adminJSON("GET", "/license", nil, &lic); code != 200 || lic.Limit == nil || *lic.Limit != 4 || lic.InUse != 4 {
		t.Fatalf("license: got %d %+v, want limit 4 in_use 4", code, lic)
	}

	// Nothing secret at rest or in the logs.
	in.stop()
	for _, secret := range []string{k.Key, rot.Key, rot2.Key, k2.Key, keep.Key} {
		if found := grepFiles(t, in.dir, secret); len(found) > 0 {
			t.Fatalf("a key was found in %v", found)
		}
		if strings.Contains(in.logs(), secret) {
			t.Fatalf("a key was found in keygate's output")
		}
	}
	if _, err := os.Stat(filepath.Join(in.dir, "keys.db")); err != nil {
		t.Fatalf("store file: %v", err)
	}
}

func TestLogsNeverContainTheKey(t *testing.T) {
	be := newBackend(t)
	in := start(t, standard(be, "", "bearer"))
	k := in.createKey(map[string]any{"name": "logs", "user": "MXINTADM", "rights": []string{"assets:read"}})
	asset := in.siteURL + "/maximo/oslc/os/mxapiasset"
	call(t, "GET", asset, hdr("apikey", k.Key))
	call(t, "GET", asset+"?apikey="+k.Key+"&lean=1", nil)
	call(t, "GET", asset, hdr("Authorization", "Bearer "+k.Key))
	call(t, "POST", asset, hdr("apikey", k.Key))                    // 403
	call(t, "GET", in.siteURL+"/nowhere?apikey="+k.Key, nil)        // 403
	call(t, "GET", asset, hdr("apikey", k.Key[:len(k.Key)-2]+"xx")) // 401 malformed
	be.srv.Close()                                                  // upstream errors are logged with the request
	call(t, "GET", asset, hdr("apikey", k.Key))
	in.stop()
	for _, f := range []string{"access.log", "keygate.log"} {
		b, err := os.ReadFile(filepath.Join(in.dir, f))
		if err != nil {
			t.Fatalf("reading %s: %v", f, err)
		}
		if len(b) == 0 {
			t.Fatalf("%s is empty; the test proves nothing", f)
		}
	}
	if found := grepFiles(t, in.dir, k.Key); len(found) > 0 {
		t.Fatalf("the key was found in %v", found)
	}
	if strings.Contains(in.logs(), k.Key) {
		t.Fatal("the key was found in keygate's stdout/stderr")
	}
	if !strings.Contains(readFile(t, filepath.Join(in.dir, "access.log")), "mxapiasset") {
		t.Fatal("access.log has no request lines")
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReloadDropsNoRequest(t *testing.T) {
	be := newBackend(t)
	in := start(t, standard(be, "", ""))
	k := in.createKey(map[string]any{"name": "reload", "user": "MXINTADM", "rights": []string{"assets:read"}})
	cfg := readFile(t, in.config)
	// Every request must get a 200. A connection-level error (the kernel
	// resetting a connection queued on the old listener while Caddy hands
	// its socket over) never reached keygate and is retried, as clients
	// retry idempotent requests; an HTTP answer other than 200 is a drop.
	stop := make(chan struct{})
	var ok, bad, retried atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				var resp *http.Response
				var err error
				for attempt := 0; attempt < 5; attempt++ {
					req, _ := http.NewRequest("GET", in.siteURL+"/maximo/oslc/os/mxapiasset", nil)
					req.Header.Set("apikey", k.Key)
					if resp, err = http.DefaultClient.Do(req); err == nil {
						break
					}
					retried.Add(1)
				}
				if err != nil {
					bad.Add(1)
					t.Logf("request failed 5 times: %v", err)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					if bad.Add(1) <= 3 {
						t.Logf("request answered %d %s", resp.StatusCode, b)
					}
					continue
				}
				ok.Add(1)
			}
		}()
	}
	for i := 0; i < 5; i++ {
		req, _ := http.NewRequest("POST", "http://"+in.adminAddr+"/load", strings.NewReader(cfg))
		req.Header.Set("Content-Type", "text/caddyfile")
		req.Header.Set("Cache-Control", "must-revalidate") // force a reload of an identical config
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("reload %d: status %d", i, resp.StatusCode)
		}
		time.Sleep(200 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if bad.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("during reloads: %d ok, %d failed; want 0 failed", ok.Load(), bad.Load())
	}
	t.Logf("%d requests served across 5 reloads, none failed (%d connection-level retries)", ok.Load(), retried.Load())
}
