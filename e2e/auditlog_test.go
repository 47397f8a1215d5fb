package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAuditEventsThroughCaddyLogging: every audit event is also a line of
// logger apikey.audit, which Caddy's own `log` can route to a file (or
// syslog, a SIEM…); no line holds a secret.
func TestAuditEventsThroughCaddyLogging(t *testing.T) {
	be := newBackend(t)
	var auditFile string
	in := start(t, func(adminPort, sitePort int, dir string) string {
		auditFile = filepath.Join(dir, "audit.log")
		return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	log audit {
		include apikey.audit
		output file %s
		format json
	}
	log default {
		exclude apikey.audit
	}
	apikey {
		storage file %s/keys.db
		%s
	}
}

http://127.0.0.1:%d {
	apikey
	reverse_proxy %s
}
`, adminPort, auditFile, dir, maximoAreas, sitePort, be.addr())
	})
	k := in.createKey(map[string]any{"name": "audited", "user": "MXINTADM", "rights": []string{"assets:read"}})
	var rotated createdKey
	if code := in.adminJSON("POST", "/keys/"+k.ID+"/rotate", map[string]any{}, &rotated); code != 200 {
		t.Fatalf("rotate: %d", code)
	}
	if code := in.adminJSON("DELETE", "/keys/"+k.ID, nil, nil); code != 200 {
		t.Fatalf("revoke: %d", code)
	}
	if code := in.adminJSON("PUT", "/users/MXINTADM/limits", map[string]any{"rate": map[string]any{"limit": 5, "per": "1s"}}, nil); code != 200 {
		t.Fatalf("user limits: %d", code)
	}

	type line struct {
		Logger  string         `json:"logger"`
		Msg     string         `json:"msg"`
		Actor   string         `json:"actor"`
		Action  string         `json:"action"`
		KeyID   string         `json:"key_id"`
		Details map[string]any `json:"details"`
	}
	var lines []line
	deadline := time.Now().Add(10 * time.Second)
	for {
		raw, _ := os.ReadFile(auditFile)
		lines = nil
		for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			if l == "" {
				continue
			}
			if strings.Contains(l, k.Key) || strings.Contains(l, rotated.Key) {
				t.Fatalf("an audit line holds a secret: %s", l)
			}
			var v line
			if err := json.Unmarshal([]byte(l), &v); err != nil {
				t.Fatalf("audit line is not JSON: %s", l)
			}
			lines = append(lines, v)
		}
		if len(lines) >= 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var got []string
	for _, l := range lines {
		if l.Logger != "apikey.audit" || l.Actor != "local" {
			t.Errorf("audit line: logger %q actor %q, want apikey.audit and local", l.Logger, l.Actor)
		}
		got = append(got, l.Action)
	}
	if strings.Join(got, ",") != "create,rotate,revoke,set_user_limits" {
		t.Fatalf("audit actions in the log: %v, want create,rotate,revoke,set_user_limits", got)
	}
	if lines[0].KeyID != k.ID || lines[0].Details["name"] != "audited" {
		t.Errorf("create line: %+v", lines[0])
	}
	if strings.Contains(in.stderr.String(), `"logger":"apikey.audit"`) {
		t.Error("the default log still carries apikey.audit although it excludes it")
	}
}
