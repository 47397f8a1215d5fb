package caddymodule

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/keygate/keygate/keystore/reqpath"
)

// forwarded runs the handler on a raw request target and returns what the
// next handler received (nil when the request was refused) and, for a
// refusal, an error holding the status and body.
func (rig *benchRig) forwarded(t *testing.T, method, target string, header http.Header) (*http.Request, error) {
	t.Helper()
	r, _ := caddyRequest("/")
	r.Method = method
	u, err := r.URL.Parse(target)
	if err != nil {
		t.Fatalf("%s: %v", target, err)
	}
	r.URL, r.RequestURI = u, target
	r.Header.Set("apikey", rig.key)
	for k, v := range header {
		r.Header[k] = v
	}
	var got *http.Request
	next := caddyhttp.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) error { got = r; return nil })
	w := httptest.NewRecorder()
	if err := rig.h.ServeHTTP(w, r, next); err != nil {
		return got, err
	}
	if got == nil {
		return nil, fmt.Errorf("%d %s", w.Code, w.Body.String())
	}
	return got, nil
}

func TestHandlerForwardsTheJudgedPath(t *testing.T) {
	rig := newBenchRig(t, benchOptions{})
	for target, want := range map[string]string{
		"/maximo//oslc/os/mxasset//_QkVERk9SRC8xMDAx?lean=1": "/maximo/oslc/os/mxasset/_QkVERk9SRC8xMDAx?lean=1",
		"/maximo/oslc/os/mxasset/caf%C3%A9":                  "/maximo/oslc/os/mxasset/caf%C3%A9",
		"/maximo/oslc/os/mxasset/a%20b":                      "/maximo/oslc/os/mxasset/a%20b",
	} {
		got, err := rig.forwarded(t, "GET", target, nil)
		if err != nil || got == nil {
			t.Errorf("%s: refused: %v", target, err)
			continue
		}
		if uri := got.URL.RequestURI(); uri != want {
			t.Errorf("%s: forwarded %q, want %q", target, uri, want)
		}
	}
	for _, target := range []string{
		"/maximo/oslc/os/mxasset/..;/mxwo",
		"/maximo/oslc/os/mxasset%5c..%5cmxwo",
		"/maximo/oslc/os/mxasset/%2e%2e/mxwo",
	} {
		got, err := rig.forwarded(t, "GET", target, nil)
		if got != nil || err == nil || !strings.HasPrefix(err.Error(), "400 ") || !strings.Contains(err.Error(), `"invalid_path"`) {
			t.Errorf("%s: forwarded=%v err=%v, want 400 invalid_path", target, got != nil, err)
		}
	}
}

func TestHandlerAllowPathChars(t *testing.T) {
	rig := newBenchRig(t, benchOptions{})
	rig.h.policy.Paths = reqpath.Options{AllowSemicolon: true}
	if got, err := rig.forwarded(t, "GET", "/maximo/oslc/os/mxasset;jsessionid=1/x", nil); err != nil || got == nil {
		t.Fatalf("with ; allowed: refused: %v", err)
	}
	if got, _ := rig.forwarded(t, "GET", "/maximo/oslc/os/mxasset/..;/mxwo", nil); got != nil {
		t.Fatal("with ; allowed, ..; still must not pass")
	}
}

func TestHandlerStripsH2CUpgrade(t *testing.T) {
	rig := newBenchRig(t, benchOptions{})
	got, err := rig.forwarded(t, "GET", "/maximo/oslc/os/mxasset", http.Header{
		"Connection": {"Upgrade, HTTP2-Settings, keep-alive"}, "Upgrade": {"h2c"}, "Http2-Settings": {"AAMAAABkAAQAAP__"},
	})
	if err != nil || got == nil {
		t.Fatalf("refused: %v", err)
	}
	if got.Header.Get("Upgrade") != "" || got.Header.Get("Http2-Settings") != "" || got.Header.Get("Connection") != "keep-alive" {
		t.Fatalf("h2c upgrade forwarded: %v", got.Header)
	}
	got, err = rig.forwarded(t, "GET", "/maximo/oslc/os/mxasset", http.Header{
		"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}, "Sec-Websocket-Version": {"13"},
	})
	if err != nil || got == nil || got.Header.Get("Upgrade") != "websocket" || got.Header.Get("Connection") != "Upgrade" {
		t.Fatalf("websocket upgrade not forwarded: err %v", err)
	}
	// A WebSocket upgrade is judged as its GET: outside the key's areas it is refused.
	if got, _ := rig.forwarded(t, "GET", "/maximo/oslc/os/mxwo", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}); got != nil {
		t.Fatal("websocket upgrade outside the key's area forwarded")
	}
}

func TestLevelWriteArea(t *testing.T) {
	rig := newBenchRig(t, benchOptions{})
	if err := rig.h.app.areas.RequireWrite("assets"); err != nil {
		t.Fatal(err)
	}
	got, err := rig.forwarded(t, "GET", "/maximo/oslc/os/mxasset", nil)
	if got != nil || err == nil || !strings.Contains(err.Error(), "write access") {
		t.Fatalf("GET in a level write area with a read key: forwarded=%v err=%v, want 403 (no write access)", got != nil, err)
	}
}

func TestXHTTPMethodOverride(t *testing.T) {
	rig := newBenchRig(t, benchOptions{})
	if got, _ := rig.forwarded(t, "GET", "/maximo/oslc/os/mxasset", http.Header{"X-Http-Method": {"DELETE"}}); got != nil {
		t.Fatal("X-HTTP-Method: DELETE with a read key forwarded")
	}
}
