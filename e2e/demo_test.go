package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestDemoQuickStart runs examples/Caddyfile.demo — the README's first
// command — on free ports and walks the README's walkthrough.
func TestDemoQuickStart(t *testing.T) {
	raw, err := os.ReadFile("../examples/Caddyfile.demo")
	if err != nil {
		t.Fatal(err)
	}
	backendPort := freePort(t)
	in := start(t, func(adminPort, sitePort int, dir string) string {
		s := strings.ReplaceAll(string(raw), "localhost:2019", fmt.Sprintf("127.0.0.1:%d", adminPort))
		s = strings.ReplaceAll(s, ":8080", fmt.Sprintf(":%d", sitePort))
		return strings.ReplaceAll(s, "9080", fmt.Sprint(backendPort))
	}, "KEYGATE_DEMO_DIR="+t.TempDir())

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
}
