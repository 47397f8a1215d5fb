package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// policyConfig is a config with a trusted proxy (127.0.0.3), a site
// without an environment (the instance's siteURL) and, when prodPort and
// testPort are set, one site per environment.
func policyConfig(be *backend, storage, appExtra string, prodPort, testPort int) func(int, int, string) string {
	return func(adminPort, sitePort int, dir string) string {
		if storage == "" {
			storage = "storage file " + dir + "/keys.db"
		}
		site := func(port int, env string) string {
			opt := ""
			if env != "" {
				opt = "environment " + env
			}
			return fmt.Sprintf(`
http://127.0.0.1:%d {
	handle /keygate/* {
		apikey_admin
	}
	handle {
		apikey {
			%s
		}
		reverse_proxy %s {
			header_up X-Run-As-User {apikey.user}
		}
	}
}
`, port, opt, be.addr())
		}
		cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	servers {
		trusted_proxies static 127.0.0.3/32
	}
	apikey {
		%s
		%s
		%s
	}
}
`, adminPort, storage, maximoAreas, appExtra) + site(sitePort, "")
		if prodPort != 0 {
			cfg += site(prodPort, "prod") + site(testPort, "test")
		}
		return cfg
	}
}

// onBoltAndPostgres runs test once per store; the Postgres run skips when
// KEYGATE_TEST_DATABASE_URL is unset.
func onBoltAndPostgres(t *testing.T, test func(t *testing.T, storage string, env ...string)) {
	t.Run("bolt", func(t *testing.T) { test(t, "") })
	t.Run("postgres", func(t *testing.T) {
		db := newTestDB(t)
		test(t, "storage postgres {env."+pgDSNEnv+"}", pgDSNEnv+"="+db.dsn)
	})
}

// clientFrom is an HTTP client whose connections come from the loopback
// address ip (Linux routes all of 127.0.0.0/8 to lo).
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

func callVia(t *testing.T, c *http.Client, url string, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAllowedIPsByClientAddress(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs the whole of 127.0.0.0/8 on loopback (Linux)")
	}
	onBoltAndPostgres(t, testAllowedIPs)
}

func testAllowedIPs(t *testing.T, storage string, env ...string) {
	be := newBackend(t)
	in := start(t, policyConfig(be, storage, "", 0, 0), env...)
	asset := in.siteURL + "/maximo/oslc/os/mxasset"
	fenced := in.createKey(map[string]any{"name": "fenced", "user": "MXINTADM", "rights": []string{"assets:read"}, "allowed_ips": []string{"127.0.0.2"}})
	behind := in.createKey(map[string]any{"name": "behind-proxy", "user": "MXINTADM", "rights": []string{"assets:read"}, "allowed_ips": []string{"10.9.8.0/24"}})
	from2, from3, from4 := clientFrom("127.0.0.2"), clientFrom("127.0.0.3"), clientFrom("127.0.0.4")

	if code, body := callVia(t, from2, asset, hdr("apikey", fenced.Key)); code != 200 {
		t.Fatalf("from its allowed address: got %d %s, want 200", code, body)
	}
	seen := be.count()
	code, body := callVia(t, from4, asset, hdr("apikey", fenced.Key))
	if code != 403 || errorCode(body) != "forbidden" {
		t.Fatalf("from another address: got %d %s, want 403 forbidden", code, body)
	}
	if be.count() != seen {
		t.Fatal("a request from outside allowed_ips reached the backend")
	}
	if got := in.usageOf(fenced.ID); got != 1 {
		t.Errorf("usage after 1 allowed and 1 refused request: got %d, want 1 (refusals never count)", got)
	}

	// X-Forwarded-For is honoured only from trusted_proxies.
	xff := hdr("apikey", behind.Key, "X-Forwarded-For", "10.9.8.7")
	if code, body := callVia(t, from2, asset, xff); code != 403 {
		t.Errorf("X-Forwarded-For from an untrusted client: got %d %s, want 403 (the header is ignored)", code, body)
	}
	if code, body := callVia(t, from3, asset, xff); code != 200 {
		t.Errorf("X-Forwarded-For from the trusted proxy: got %d %s, want 200", code, body)
	}
	spoof := hdr("apikey", fenced.Key, "X-Forwarded-For", "127.0.0.2")
	if code, body := callVia(t, from3, asset, spoof); code != 200 {
		t.Errorf("trusted proxy forwarding for 127.0.0.2: got %d %s, want 200", code, body)
	}
	if code, body := callVia(t, from4, asset, spoof); code != 403 {
		t.Errorf("untrusted client claiming 127.0.0.2: got %d %s, want 403", code, body)
	}

	// A change applies at once.
	if code := in.adminJSON("PATCH", "/keys/"+fenced.ID, map[string]any{"allowed_ips": []string{"127.0.0.4"}}, nil); code != 200 {
		t.Fatalf("PATCH allowed_ips: got %d", code)
	}
	if code, _ := callVia(t, from2, asset, hdr("apikey", fenced.Key)); code != 403 {
		t.Errorf("old address after PATCH: got %d, want 403", code)
	}
	if code, _ := callVia(t, from4, asset, hdr("apikey", fenced.Key)); code != 200 {
		t.Errorf("new address after PATCH: got %d, want 200", code)
	}

	// Invalid entries are refused naming the entry.
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	code = in.adminJSON("POST", "/keys", map[string]any{"name": "bad", "user": "MXINTADM", "rights": []string{"assets:read"}, "allowed_ips": []string{"127.0.0.2", "10.0.0.1/8"}}, &e)
	if code != 400 || !strings.Contains(e.Error.Message, `"10.0.0.1/8"`) {
		t.Errorf("invalid allowed_ips: got %d %+v, want 400 naming the entry", code, e)
	}
	var shown struct {
		AllowedIPs []string `json:"allowed_ips"`
	}
	in.adminJSON("GET", "/keys/"+fenced.ID, nil, &shown)
	if len(shown.AllowedIPs) != 1 || shown.AllowedIPs[0] != "127.0.0.4/32" {
		t.Errorf("key object allowed_ips: got %v, want [127.0.0.4/32]", shown.AllowedIPs)
	}
}

func TestEnvironmentsOnTwoSites(t *testing.T) {
	be := newBackend(t)
	prodPort, testPort := freePort(t), freePort(t)
	in := start(t, policyConfig(be, "", "", prodPort, testPort))
	prodURL := fmt.Sprintf("http://127.0.0.1:%d/maximo/oslc/os/mxasset", prodPort)
	testURL := fmt.Sprintf("http://127.0.0.1:%d/maximo/oslc/os/mxasset", testPort)
	plainURL := in.siteURL + "/maximo/oslc/os/mxasset"
	prod := in.createKey(map[string]any{"name": "prod", "user": "MXINTADM", "rights": []string{"assets:read"}, "environments": []string{"prod"}})
	both := in.createKey(map[string]any{"name": "both", "user": "MXINTADM", "rights": []string{"assets:read"}, "environments": []string{"prod", "test"}})
	plain := in.createKey(map[string]any{"name": "plain", "user": "MXINTADM", "rights": []string{"assets:read"}})
	_, unknownBody, _ := call(t, "GET", prodURL, hdr("apikey", "kg_unknownunknownunknownunknownun"))

	for _, c := range []struct {
		key  createdKey
		url  string
		want int
	}{
		{prod, prodURL, 200}, {prod, testURL, 401}, {prod, plainURL, 401},
		{both, prodURL, 200}, {both, testURL, 200}, {both, plainURL, 401},
		{plain, plainURL, 200}, {plain, prodURL, 401}, {plain, testURL, 401},
	} {
		code, body, h := call(t, "GET", c.url, hdr("apikey", c.key.Key))
		if code != c.want {
			t.Errorf("%s key at %s: got %d %s, want %d", c.key.ID, c.url, code, body, c.want)
			continue
		}
		if code == 401 && (body != unknownBody || h.Get("WWW-Authenticate") == "") {
			t.Errorf("%s key at %s: the 401 differs from an unknown key's: %q vs %q", c.key.ID, c.url, body, unknownBody)
		}
	}
}

// TestSelfServiceBoundsEndToEnd is the reported defect, through the real
// binary: a limited keys:self key must not mint looser keys, its children
// must die with it, and one user must not take the whole licence.
func TestSelfServiceBoundsEndToEnd(t *testing.T) { onBoltAndPostgres(t, testSelfServiceBounds) }

func testSelfServiceBounds(t *testing.T, storage string, env ...string) {
	be := newBackend(t)
	in := start(t, policyConfig(be, storage, "license 10\n\t\tmax_keys_per_user 4", 0, 0), env...)
	adminAPI := in.siteURL + "/keygate/keys"
	asset := in.siteURL + "/maximo/oslc/os/mxasset"
	parent := in.createKey(map[string]any{"name": "self", "user": "ME", "rights": []string{"keys:self", "assets:read"},
		"rate": map[string]any{"limit": 5, "per": "1m"}, "quota": map[string]any{"limit": 100, "period": "day"}, "expires_in": "1h"})

	type keyObj struct {
		ID        string `json:"id"`
		Key       string `json:"key"`
		Status    string `json:"status"`
		ExpiresAt string `json:"expires_at"`
		Rate      *struct {
			Limit int64  `json:"limit"`
			Per   string `json:"per"`
		} `json:"rate"`
		Quota *struct {
			Limit  int64  `json:"limit"`
			Period string `json:"period"`
		} `json:"quota"`
		Error struct{ Code, Message string } `json:"error"`
	}
	var parentObj keyObj
	in.adminJSON("GET", "/keys/"+parent.ID, nil, &parentObj)

	var child keyObj
	if code := doJSON(t, "POST", adminAPI, hdr("apikey", parent.Key), map[string]any{"name": "child", "user": "ME", "rights": []string{"keys:self", "assets:read"}}, &child); code != 201 {
		t.Fatalf("child: got %d %+v", code, child.Error)
	}
	if child.Rate == nil || child.Rate.Limit != 5 || child.Quota == nil || child.Quota.Limit != 100 || child.ExpiresAt != parentObj.ExpiresAt {
		t.Fatalf("child: rate %+v quota %+v expires %q; want the parent's 5/1m, 100/day, %s", child.Rate, child.Quota, child.ExpiresAt, parentObj.ExpiresAt)
	}
	var refused keyObj
	code := doJSON(t, "POST", adminAPI, hdr("apikey", child.Key), map[string]any{"name": "grandchild", "user": "ME", "rights": []string{"assets:read"}, "expires_in": "87600h"}, &refused)
	if code != 400 || !strings.Contains(refused.Error.Message, "later than this key's own expiry") {
		t.Fatalf("ten-year grandchild: got %d %+v, want 400", code, refused.Error)
	}
	code = doJSON(t, "POST", adminAPI, hdr("apikey", child.Key), map[string]any{"name": "grandchild", "user": "ME", "rights": []string{"assets:read"}, "rate": map[string]any{"limit": 1000, "per": "1s"}}, &refused)
	if code != 400 || !strings.Contains(refused.Error.Message, "looser") {
		t.Fatalf("fast grandchild: got %d %+v, want 400", code, refused.Error)
	}
	var grandchild keyObj
	if code := doJSON(t, "POST", adminAPI, hdr("apikey", child.Key), map[string]any{"name": "grandchild", "user": "ME", "rights": []string{"assets:read"}}, &grandchild); code != 201 {
		t.Fatalf("grandchild: got %d %+v", code, grandchild.Error)
	}
	for _, k := range []keyObj{child, grandchild} {
		if code, body, _ := call(t, "GET", asset, hdr("apikey", k.Key)); code != 200 {
			t.Fatalf("key %s before the revoke: got %d %s", k.ID, code, body)
		}
	}

	// max_keys_per_user 4: ME holds 3; one more, then 409 for everyone.
	var fourth, fifth keyObj
	if code := doJSON(t, "POST", adminAPI, hdr("apikey", child.Key), map[string]any{"name": "fourth", "user": "ME", "rights": []string{"assets:read"}}, &fourth); code != 201 {
		t.Fatalf("fourth key of ME: got %d %+v", code, fourth.Error)
	}
	if code := doJSON(t, "POST", adminAPI, hdr("apikey", child.Key), map[string]any{"name": "fifth", "user": "ME", "rights": []string{"assets:read"}}, &fifth); code != 409 || fifth.Error.Code != "conflict" {
		t.Fatalf("fifth key of ME by keys:self: got %d %+v, want 409 conflict", code, fifth.Error)
	}
	if code := in.adminJSON("POST", "/keys", map[string]any{"name": "fifth", "user": "ME", "rights": []string{"assets:read"}}, &fifth); code != 409 {
		t.Fatalf("fifth key of ME by the local admin: got %d, want 409", code)
	}
	in.createKey(map[string]any{"name": "other", "user": "SOMEONE", "rights": []string{"assets:read"}}) // the licence is not exhausted

	// Revoking the parent revokes its descendants at once.
	if code := in.adminJSON("DELETE", "/keys/"+parent.ID, nil, nil); code != 200 {
		t.Fatalf("revoking the parent: got %d", code)
	}
	for _, k := range []keyObj{child, grandchild, fourth} {
		if code, body, _ := call(t, "GET", asset, hdr("apikey", k.Key)); code != 401 {
			t.Errorf("key %s after its ancestor was revoked: got %d %s, want 401", k.ID, code, body)
		}
		var got keyObj
		in.adminJSON("GET", "/keys/"+k.ID, nil, &got)
		if got.Status != "revoked" {
			t.Errorf("key %s: status %q, want revoked", k.ID, got.Status)
		}
	}
	var audit struct {
		Events []struct {
			Action  string         `json:"action"`
			Details map[string]any `json:"details"`
		} `json:"events"`
	}
	in.adminJSON("GET", "/audit?key="+grandchild.ID, nil, &audit)
	if len(audit.Events) == 0 || audit.Events[0].Action != "revoke" || audit.Events[0].Details["cascade"] != true || audit.Events[0].Details["revoked_with"] != parent.ID {
		t.Errorf("grandchild's audit: %+v, want a cascade revoke with revoked_with %s", audit.Events, parent.ID)
	}
}
