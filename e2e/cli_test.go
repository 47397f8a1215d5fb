package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// cli runs `keygate apikey …` against in's admin endpoint and returns
// stdout, stderr and the exit code.
func (in *instance) cli(args ...string) (string, string, int) {
	in.t.Helper()
	cmd := exec.Command(keygateBin, append(append([]string{"apikey"}, args...), "--address", in.adminAddr)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		in.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// TestCLIAdminKeyManagesThroughSite creates an admin key with the CLI on the
// local admin endpoint, then manages keys with it through apikey_admin on
// the site, and checks the CLI's files, output and exit codes.
func TestCLIAdminKeyManagesThroughSite(t *testing.T) {
	be := newBackend(t)
	in := start(t, standard(be, "license 10", ""))

	out := filepath.Join(in.dir, "admin.apikey")
	stdout, stderr, code := in.cli("create", "--name", "ops-admin", "--user", "OPS", "--rights", "keys:admin", "--out", out)
	if code != 0 {
		t.Fatalf("create: exit %d: %s", code, stderr)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: got %v, want 0600", fi.Mode().Perm())
	}
	raw, _ := os.ReadFile(out)
	adminKey := strings.TrimSpace(string(raw))
	if !strings.HasPrefix(adminKey, "kg_") || strings.Contains(stdout, adminKey) {
		t.Fatalf("--out: file holds %q, stdout %q; want the key only in the file", adminKey, stdout)
	}
	// Refuses to overwrite, exit 2, nothing created.
	before := in.licenseInUse()
	if _, _, code := in.cli("create", "--name", "again", "--user", "OPS", "--rights", "keys:admin", "--out", out); code != 2 {
		t.Fatalf("create onto an existing file: exit %d, want 2", code)
	}
	if after := in.licenseInUse(); after != before {
		t.Fatalf("a key was created although --out was refused: in_use %d → %d", before, after)
	}

	// The admin key works on the site mount.
	site := in.siteURL + "/keygate"
	var k createdKey
	if code := doJSON(t, "POST", site+"/keys", hdr("apikey", adminKey),
		map[string]any{"name": "via-site", "user": "MXINTADM", "rights": []string{"assets:read"}}, &k); code != 201 {
		t.Fatalf("create through the site: got %d, want 201", code)
	}
	if code, body, _ := call(t, "GET", in.siteURL+"/maximo/oslc/os/mxapiasset", hdr("apikey", k.Key)); code != 200 {
		t.Fatalf("new key: got %d (%s), want 200", code, body)
	}
	var list struct {
		Keys []map[string]any `json:"keys"`
	}
	if code := doJSON(t, "GET", site+"/keys?user=MXINTADM", hdr("apikey", adminKey), nil, &list); code != 200 || len(list.Keys) != 1 {
		t.Fatalf("list through the site: got %d with %d keys, want 200 and 1", code, len(list.Keys))
	}
	// whoami names the calling key on the site, "local" on the admin endpoint.
	var who struct {
		ID, Name, User string
		Rights         []string
	}
	if code := doJSON(t, "GET", site+"/whoami", hdr("apikey", adminKey), nil, &who); code != 200 ||
		who.Name != "ops-admin" || who.User != "OPS" || strings.Join(who.Rights, ",") != "keys:admin" || !strings.HasPrefix(who.ID, "key_") {
		t.Fatalf("whoami through the site: got %d %+v, want ops-admin (OPS) with keys:admin", code, who)
	}
	if stdout, stderr, code := in.cli("whoami"); code != 0 || !strings.Contains(stdout, "local") || !strings.Contains(stdout, "keys:admin") {
		t.Fatalf("whoami: exit %d %q %s", code, stdout, stderr)
	}
	// areas lists the configured areas; an unknown one is refused naming them.
	if stdout, stderr, code := in.cli("areas"); code != 0 || !strings.Contains(stdout, "/maximo/oslc/os/mxapilocations*") ||
		!strings.Contains(stdout, "workorders") || !strings.Contains(stdout, "assets") {
		t.Fatalf("areas: exit %d %q %s", code, stdout, stderr)
	}
	if _, stderr, code := in.cli("create", "--name", "x", "--user", "U", "--rights", "billing:read"); code != 1 ||
		!strings.Contains(stderr, "configured areas: assets, locations, workorders") {
		t.Fatalf("unknown area: exit %d %q, want 1 naming the configured areas", code, stderr)
	}

	// A proxy key is not an admin key; a bad key gets the proxy's 401.
	if code, body, _ := call(t, "GET", site+"/keys", hdr("apikey", k.Key)); code != 403 || !strings.Contains(body, "forbidden") {
		t.Fatalf("non-admin key on the admin API: got %d %s, want 403 forbidden", code, body)
	}
	_, proxy401, _ := call(t, "GET", in.siteURL+"/maximo/oslc/os/mxapiasset", hdr("apikey", "kg_bogus"))
	if code, body, _ := call(t, "GET", site+"/keys", hdr("apikey", "kg_bogus")); code != 401 || body != proxy401 {
		t.Fatalf("bad key on the admin API: got %d %q, want 401 with the proxy's body %q", code, body, proxy401)
	}

	// CLI show / revoke / usage / json / refusals.
	if stdout, _, code := in.cli("show", k.ID, "--json"); code != 0 || !json.Valid([]byte(stdout)) || !strings.Contains(stdout, k.ID) {
		t.Fatalf("show --json: exit %d %q", code, stdout)
	}
	if _, stderr, code := in.cli("show", "key_doesnotexist"); code != 1 || !strings.Contains(stderr, "not_found") {
		t.Fatalf("show missing: exit %d %q, want 1 with not_found", code, stderr)
	}
	if _, _, code := in.cli("create", "--name", "x", "--user", "U", "--rights", "assets:read", "--rate", "fast"); code != 2 {
		t.Fatalf("bad --rate: exit %d, want 2", code)
	}
	if _, stderr, code := in.cli("revoke", k.ID); code != 0 {
		t.Fatalf("revoke: exit %d %s", code, stderr)
	}
	if code, _, _ := call(t, "GET", in.siteURL+"/maximo/oslc/os/mxapiasset", hdr("apikey", k.Key)); code != 401 {
		t.Fatalf("revoked key: got %d, want 401", code)
	}
	stdout, _, code = in.cli("license")
	if code != 0 || !strings.Contains(stdout, "of 10") {
		t.Fatalf("license: exit %d %q", code, stdout)
	}
	stdout, _, code = in.cli("audit", "--key", k.ID)
	if code != 0 || !strings.Contains(stdout, "revoke") || !strings.Contains(stdout, "create") {
		t.Fatalf("audit: exit %d %q, want create and revoke", code, stdout)
	}
}

func (in *instance) licenseInUse() int {
	in.t.Helper()
	var lic struct {
		InUse int `json:"in_use"`
	}
	in.adminJSON("GET", "/license", nil, &lic)
	return lic.InUse
}
