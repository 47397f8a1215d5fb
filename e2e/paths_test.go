package e2e

import (
	"strings"
	"testing"
)

// TestPathsAsTheBackendReadsThem drives step 0 through the real binary: the
// backend receives exactly the canonical path that was judged, the query
// byte for byte less the key, and nothing at all for a refused path.
func TestPathsAsTheBackendReadsThem(t *testing.T) {
	be := newBackend(t)
	in := start(t, standard(be, "area scripts /maximo/oslc/script/* {\n\t\t\tlevel write\n\t\t}", ""))
	reader := in.createKey(map[string]any{"name": "reader", "user": "MXINTADM", "rights": []string{"assets:read", "scripts:read"}})
	writer := in.createKey(map[string]any{"name": "writer", "user": "MXINTADM", "rights": []string{"assets:write", "scripts:write"}})

	forwarded := []struct{ target, wantURI string }{
		{"/maximo//oslc/os//mxapiasset/_QkVERk9SRC8xMDAx", "/maximo/oslc/os/mxapiasset/_QkVERk9SRC8xMDAx"},
		{"/maximo/oslc/os/mxapiasset/caf%C3%A9?lean=1", "/maximo/oslc/os/mxapiasset/caf%C3%A9?lean=1"},
		{"/maximo/oslc/os/mxapiasset/a%20b", "/maximo/oslc/os/mxapiasset/a%20b"},
		{`/maximo/oslc/os/mxapiasset?apikey=` + reader.Key + `&oslc.where=description=%22a;b%22&lean=1`, `/maximo/oslc/os/mxapiasset?oslc.where=description=%22a;b%22&lean=1`},
		{`/maximo/oslc/os/mxapiasset?a=%2a+x&&apikey=` + reader.Key + `&c=;`, `/maximo/oslc/os/mxapiasset?a=%2a+x&&c=;`},
	}
	for _, f := range forwarded {
		code, body, _ := call(t, "GET", in.siteURL+f.target, hdr("apikey", reader.Key))
		if code != 200 {
			t.Errorf("%s: got %d %s, want 200", f.target, code, body)
			continue
		}
		if got := be.last().RequestURI; got != f.wantURI {
			t.Errorf("%s: backend received %q, want %q", f.target, got, f.wantURI)
		}
	}

	before := be.count()
	for _, target := range []string{
		"/maximo/oslc/os/mxapiasset/..;/mxapiwodetail",
		"/maximo/oslc/os/mxapiasset/..;x=1/mxapiwodetail",
		"/maximo/oslc/os/mxapiasset/%2e%2e;/mxapiwodetail",
		"/maximo/oslc/os/mxapiasset;/..;/mxapiwodetail",
		"/maximo/oslc/os/mxapiasset%5c..%5cmxapiwodetail",
		"/maximo/oslc/os/mxapiasset/%252e%252e/mxapiwodetail",
		"/maximo/oslc/os/mxapiasset/%c0%ae%c0%ae/mxapiwodetail",
		"/maximo/oslc/os/mxapiasset/..;/../script/RUNME",
	} {
		for _, key := range []string{reader.Key, writer.Key} {
			code, body, _ := call(t, "POST", in.siteURL+target, hdr("apikey", key))
			if code != 400 || !strings.Contains(body, `"invalid_path"`) {
				t.Errorf("%s: got %d %s, want 400 invalid_path", target, code, body)
			}
		}
	}
	if n := be.count() - before; n != 0 {
		t.Errorf("the backend received %d refused requests", n)
	}

	// A script runs on a GET: the area is level write.
	if code, body, _ := call(t, "GET", in.siteURL+"/maximo/oslc/script/RUNME", hdr("apikey", reader.Key)); code != 403 {
		t.Errorf("GET of a script with scripts:read: got %d %s, want 403", code, body)
	}
	if code, body, _ := call(t, "GET", in.siteURL+"/maximo/oslc/script/RUNME", hdr("apikey", writer.Key)); code != 200 {
		t.Errorf("GET of a script with scripts:write: got %d %s, want 200", code, body)
	}
	// .NET's method override is judged.
	if code, body, _ := call(t, "GET", in.siteURL+"/maximo/oslc/os/mxapiasset", hdr("apikey", reader.Key, "X-HTTP-Method", "DELETE")); code != 403 {
		t.Errorf("X-HTTP-Method: DELETE with a read key: got %d %s, want 403", code, body)
	}
	// An h2c upgrade goes on as plain HTTP/1.1.
	code, body, _ := call(t, "GET", in.siteURL+"/maximo/oslc/os/mxapiasset", hdr("apikey", reader.Key, "Connection", "Upgrade, HTTP2-Settings", "Upgrade", "h2c", "HTTP2-Settings", "AAMAAABkAAQAAP__"))
	if code != 200 {
		t.Fatalf("h2c upgrade request: got %d %s, want 200 over HTTP/1.1", code, body)
	}
	if got := be.last().Header; got.Get("Upgrade") != "" || got.Get("Http2-Settings") != "" {
		t.Errorf("the backend was offered an h2c upgrade: %v", got)
	}
}
