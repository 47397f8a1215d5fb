package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// startDemo runs examples/Caddyfile.demo unchanged, its ports and key
// directory set through the environment variables it documents.
func startDemo(t *testing.T, env ...string) *instance {
	t.Helper()
	raw, err := os.ReadFile("../examples/Caddyfile.demo")
	if err != nil {
		t.Fatal(err)
	}
	var adminPort, sitePort int
	in := prepare(t, func(a, s int, dir string) string {
		adminPort, sitePort = a, s
		return string(raw)
	})
	in.env = append(in.env,
		fmt.Sprintf("KEYGATE_DEMO_ADMIN=127.0.0.1:%d", adminPort),
		fmt.Sprintf("KEYGATE_DEMO_PORT=%d", sitePort),
		fmt.Sprintf("KEYGATE_DEMO_BACKEND_PORT=%d", freePort(t)),
		"KEYGATE_DEMO_DIR="+t.TempDir())
	in.env = append(in.env, env...)
	in.run()
	return in
}

// TestDemoQuickStart runs examples/Caddyfile.demo — the README's first
// command — on free ports and walks the README's walkthrough.
func TestDemoQuickStart(t *testing.T) {
	in := startDemo(t)

	k := in.createKey(map[string]any{"name": "mx-int", "user": "MXINTADM", "rights": []string{"assets:read", "workorders:write"}})
	code, body, _ := call(t, "GET", in.siteURL+"/maximo/oslc/os/mxapiasset?lean=1&oslc.select=assetnum,status", hdr("apikey", k.Key))
	if code != 200 {
		t.Fatalf("GET assets: got %d (%s), want 200", code, body)
	}
	var got struct {
		Member       []map[string]any `json:"member"`
		ResponseInfo map[string]any   `json:"responseInfo"`
		RunAsUser    string           `json:"runAsUser"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("stand-in answer is not JSON: %v: %s", err, body)
	}
	if len(got.Member) == 0 || got.RunAsUser != "MXINTADM" || got.ResponseInfo["totalCount"] == nil {
		t.Fatalf("stand-in answer lacks Maximo's shape or the run-as user: %s", body)
	}
	if strings.Contains(body, k.Key) {
		t.Fatal("the backend saw the key (it echoes the URL it received)")
	}
	if code, _, _ := call(t, "POST", in.siteURL+"/maximo/oslc/os/mxwo", hdr("apikey", k.Key, "x-method-override", "PATCH")); code != 200 {
		t.Fatalf("write to workorders: got %d, want 200", code)
	}
	if code, _, _ := call(t, "POST", in.siteURL+"/maximo/oslc/os/mxapiasset/_QkVERk9SRC8xMDAx", hdr("apikey", k.Key, "x-method-override", "PATCH")); code != 403 {
		t.Fatalf("write to read-only assets: got %d, want 403", code)
	}
	if code, body, _ := call(t, "GET", in.siteURL+"/keygate/ui/", nil); code != 200 {
		t.Fatalf("web console: got %d (%.80s), want 200", code, body)
	}
	// A browser opening /keygate or /keygate/ is led to the console; an API
	// client still gets the API's 401.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, p := range []string{"/keygate", "/keygate/"} {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", in.siteURL+p, nil)
		req.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, err := resp.Location()
		if resp.StatusCode != http.StatusFound || err != nil || loc.Path != "/keygate/ui/" {
			t.Fatalf("browser GET %s: got %d to %v (%v), want 302 to /keygate/ui/", p, resp.StatusCode, loc, err)
		}
		if code, _, _ := call(t, "GET", in.siteURL+p, hdr("Accept", "application/json")); code != http.StatusUnauthorized {
			t.Fatalf("API GET %s without a key: got %d, want 401", p, code)
		}
	}
}

// TestDemoReadOnlyKeyRESTAndGraphQL is the README walkthrough's GraphQL
// part: one read-only key does a Maintenance Connection REST GET and a
// GraphQL query, and is refused a mutation.
func TestDemoReadOnlyKeyRESTAndGraphQL(t *testing.T) {
	in := startDemo(t)
	k := in.createKey(map[string]any{"name": "mce-read", "user": "MXINTADM", "rights": []string{"assets:read", "workorders:read"}})

	code, body, _ := call(t, "GET", in.siteURL+"/mce/api/rest/v1/assets?code=PUMP-1", hdr("apikey", k.Key))
	if code != 200 || !strings.Contains(body, `"runAsUser":"MXINTADM"`) {
		t.Fatalf("REST GET: got %d %s, want 200 from the stand-in with the run-as user", code, body)
	}
	gql := func(doc string) (int, string) {
		t.Helper()
		b, _ := json.Marshal(map[string]string{"query": doc})
		return postBody(t, in.siteURL+"/mce/api/graphql", "application/json", string(b), hdr("apikey", k.Key))
	}
	if code, body := gql(`{ assets(first: 5) { assetNum description } }`); code != 200 || !strings.Contains(body, `"data"`) {
		t.Fatalf("GraphQL query: got %d %s, want 200 with data", code, body)
	}
	if code, body := gql(`mutation { updateAsset(id: "PUMP-1", status: "DOWN") { assetNum } }`); code != 403 {
		t.Fatalf("GraphQL mutation with a read-only key: got %d %s, want 403", code, body)
	}
	if code, body := gql(`{ people { name } }`); code != 403 {
		t.Fatalf("GraphQL root field of no area: got %d %s, want 403", code, body)
	}
}

// TestDemoLogsNeverHoldTheKey runs the demo at DEBUG, where Caddy logs
// every request it forwards with its headers (the same fields its error log
// records when the backend is down), and sends key-like secrets in every
// header an integration might use beside the key itself: the logs record the
// forwarded requests but no secret and no key.
func TestDemoLogsNeverHoldTheKey(t *testing.T) {
	in := startDemo(t, "KEYGATE_DEMO_LOG_LEVEL=DEBUG")
	k := in.createKey(map[string]any{"name": "mx-int", "user": "MXINTADM", "rights": []string{"assets:read"}})
	secrets := []string{k.Key}
	for _, h := range []string{"X-Api-Key", "Api-Key", "X-Api-Token", "Authorization"} {
		secret := "kg_secretIn" + strings.ReplaceAll(h, "-", "") + "0123456789abcdef"
		secrets = append(secrets, secret)
		if code, body, _ := call(t, "GET", in.siteURL+"/maximo/oslc/os/mxapiasset?lean=1", hdr("apikey", k.Key, h, secret)); code != 200 {
			t.Fatalf("GET with %s: got %d %s, want 200", h, code, body)
		}
	}
	if code, body, _ := call(t, "GET", in.siteURL+"/maximo/oslc/os/mxapiasset?lean=1&apikey="+k.Key, nil); code != 200 {
		t.Fatalf("GET with the key in the query: got %d %s, want 200", code, body)
	}
	// Five forwarded requests are logged (the marker is reverse_proxy's
	// debug line); none holds a secret.
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(in.logs(), "upstream roundtrip") < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("the forwarded requests were not logged at DEBUG; the check below would prove nothing:\n%s", in.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	logs := in.logs()
	if !strings.Contains(logs, "X-Run-As-User") {
		t.Fatalf("the logged requests carry no headers; the check below would prove nothing:\n%s", logs)
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Fatalf("%s is in the demo's logs:\n%s", s, logs)
		}
	}
}

// postBody sends a POST with the given body and returns status and body.
func postBody(t *testing.T, url, ctype, body string, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
