package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

var update = flag.Bool("update", false, "rewrite the expected JSON of testdata/*.caddyfiletest")

func adapt(t *testing.T, caddyfile string) ([]byte, error) {
	t.Helper()
	adapter := caddyconfig.GetAdapter("caddyfile")
	out, _, err := adapter.Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	return out, err
}

func indentJSON(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "\t"); err != nil {
		t.Fatalf("indenting %s: %v", b, err)
	}
	return buf.String()
}

// TestCaddyfileGolden adapts testdata/*.caddyfiletest (Caddyfile, a line of
// dashes, expected JSON) and compares. Run with -update to rewrite.
func TestCaddyfileGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			in, want, ok := strings.Cut(string(raw), "\n----------\n")
			if !ok {
				t.Fatalf("%s: no ---------- separator", f)
			}
			out, err := adapt(t, in)
			if err != nil {
				t.Fatalf("adapting: %v", err)
			}
			got := indentJSON(t, out)
			if *update {
				os.WriteFile(f, []byte(in+"\n----------\n"+got+"\n"), 0o644)
				return
			}
			if strings.TrimSpace(got) != strings.TrimSpace(want) {
				t.Fatalf("adapted JSON differs\n got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// shippedCaddyfiles are the configurations users start from.
var shippedCaddyfiles = []string{"../Caddyfile.example", "../examples/Caddyfile.demo", "../packaging/Caddyfile"}

// TestShippedConfigVariablesDocumented: every environment variable a shipped
// configuration reads ({$VAR}, {$VAR:default}, {env.VAR}, also in comments)
// is listed in the README and in docs/configuration.md.
func TestShippedConfigVariablesDocumented(t *testing.T) {
	varRE := regexp.MustCompile(`\{(?:\$|env\.)([A-Za-z_][A-Za-z0-9_]*)`)
	var docs []string
	for _, f := range []string{"../README.md", "../docs/configuration.md"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	for _, f := range shippedCaddyfiles {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		vars := varRE.FindAllStringSubmatch(string(raw), -1)
		if len(vars) == 0 {
			t.Fatalf("%s reads no environment variable; the pattern is wrong", f)
		}
		for _, m := range vars {
			for i, d := range docs {
				if !strings.Contains(d, "`"+m[1]+"`") {
					t.Errorf("%s reads %s, which %s does not list", f, m[1], []string{"README.md", "docs/configuration.md"}[i])
				}
			}
		}
	}
}

// TestShippedCaddyfilesAdapt adapts the files users start from.
func TestShippedCaddyfilesAdapt(t *testing.T) {
	for _, f := range shippedCaddyfiles {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out, err := adapt(t, string(raw))
			if err != nil {
				t.Fatalf("adapting %s: %v", f, err)
			}
			var cfg struct {
				Apps map[string]json.RawMessage `json:"apps"`
			}
			if err := json.Unmarshal(out, &cfg); err != nil {
				t.Fatal(err)
			}
			if _, ok := cfg.Apps["apikey"]; !ok {
				t.Fatalf("%s: no apikey app in the adapted config", f)
			}
			if !bytes.Contains(out, []byte(`"handler":"apikey"`)) || !bytes.Contains(out, []byte(`"handler":"apikey_admin"`)) {
				t.Fatalf("%s: apikey or apikey_admin handler missing", f)
			}
		})
	}
}

// TestExampleSeparatesConsole: in Caddyfile.example the console (apikey_admin)
// has a server of its own, so the proxied backend never shares its origin,
// and the admin endpoint is a unix socket of mode 0600.
func TestExampleSeparatesConsole(t *testing.T) {
	raw, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	out, err := adapt(t, string(raw))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Admin struct {
			Listen string `json:"listen"`
		} `json:"admin"`
		Apps struct {
			HTTP struct {
				Servers map[string]json.RawMessage `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cfg.Admin.Listen, "unix/") || !strings.HasSuffix(cfg.Admin.Listen, "|0600") {
		t.Errorf("admin listen: got %q, want a unix socket of mode 0600", cfg.Admin.Listen)
	}
	consoles := 0
	for name, srv := range cfg.Apps.HTTP.Servers {
		admin := bytes.Contains(srv, []byte(`"handler":"apikey_admin"`))
		proxy := bytes.Contains(srv, []byte(`"handler":"reverse_proxy"`))
		if admin && proxy {
			t.Errorf("server %s serves the console and proxies the backend: one origin", name)
		}
		if admin {
			consoles++
		}
	}
	if consoles != 1 {
		t.Errorf("servers with apikey_admin: got %d, want 1", consoles)
	}
}

func TestCaddyfileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		global  string
		site    string
		wantErr string
	}{
		{name: "unknown option", global: "apikey {\n bogus 1\n}", wantErr: `unknown apikey option "bogus"`},
		{name: "duplicate area", global: "apikey {\n area a /x*\n area a /y*\n}", wantErr: "area a is defined twice"},
		{name: "area without paths", global: "apikey {\n area a\n}", wantErr: "area a has no paths"},
		{name: "repeated prefix", global: "apikey {\n prefix kg\n prefix xx\n}", wantErr: "prefix: repeated subdirective"},
		{name: "bad duration", global: "apikey {\n flush_interval soon\n}", wantErr: `flush_interval: "soon" is not a positive duration`},
		{name: "bad license", global: "apikey {\n license many\n}", wantErr: `license: "many" is not a non-negative whole number`},
		{name: "bad storage", global: "apikey {\n storage redis x\n}", wantErr: `storage type "redis" is unknown`},
		{name: "bad rate", global: "apikey {\n default_rate 10perminute\n}", wantErr: "must look like 100/1m"},
		{name: "bad quota", global: "apikey {\n default_quota 10/year\n}", wantErr: "must look like 10000/month"},
		{name: "unknown handler option", global: "apikey {\n}", site: "apikey {\n nope\n}", wantErr: `unknown apikey handler option "nope"`},
		{name: "unknown cache option", global: "apikey {\n cache {\n  huge 1\n }\n}", wantErr: `unknown cache option "huge"`},
		{name: "graphql without path", global: "apikey {\n graphql {\n  default a\n }\n}", wantErr: "graphql needs the endpoint's path"},
		{name: "graphql unknown area", global: "apikey {\n area assets /a*\n graphql /g {\n  field asets asset\n }\n}", wantErr: `Caddyfile:5: graphql maps root fields to area "asets"`},
		{name: "graphql field twice", global: "apikey {\n area a /a*\n area b /b*\n graphql /g {\n  field a x\n  field b x\n }\n}", wantErr: "x"},
		{name: "graphql unknown option", global: "apikey {\n graphql /g {\n  fields a x\n }\n}", wantErr: `unknown graphql option "fields"`},
		{name: "graphql bad max_body", global: "apikey {\n area a /a*\n graphql /g {\n  field a x\n  max_body lots\n }\n}", wantErr: `max_body "lots"`},
		{name: "graphql empty", global: "apikey {\n graphql /g {\n }\n}", wantErr: "maps no root fields"},
		{name: "bad area level", global: "apikey {\n area s /maximo/oslc/script* {\n  level admin\n }\n}", wantErr: `level "admin" is unknown`},
		{name: "unknown area option", global: "apikey {\n area s /x* {\n  mode write\n }\n}", wantErr: `area s: unknown option "mode"`},
		{name: "bad allow_path_chars", global: "apikey {\n}", site: "apikey {\n allow_path_chars %5C\n}", wantErr: `only ";" and "%2F" can be allowed`},
		{name: "empty allow_path_chars", global: "apikey {\n}", site: "apikey {\n allow_path_chars\n}", wantErr: `allow_path_chars needs`},
		{name: "environment without name", global: "apikey {\n}", site: "apikey {\n environment\n}", wantErr: "environment needs a name"},
		{name: "two environments", global: "apikey {\n}", site: "apikey {\n environment prod test\n}", wantErr: "environment takes one name"},
		{name: "bad environment", global: "apikey {\n}", site: "apikey {\n environment pro/d\n}", wantErr: `environment name "pro/d" may hold only`},
		{name: "bad max_keys_per_user", global: "apikey {\n max_keys_per_user -1\n}", wantErr: `max_keys_per_user: "-1" is not a non-negative whole number`},
		{name: "line number", global: "apikey {\n prefix kg\n\n bogus\n}", wantErr: "Caddyfile:5"},
		{name: "notify without URL", global: "apikey {\n notify {\n  secret x\n }\n}", wantErr: "notify needs the URL"},
		{name: "notify relative URL", global: "apikey {\n license 5\n notify /hook {\n  secret x\n }\n}", wantErr: "the URL must be an absolute http or https URL, at Caddyfile:4"},
		{name: "notify ftp URL", global: "apikey {\n notify ftp://h/x {\n  secret x\n }\n}", wantErr: "absolute http or https URL"},
		{name: "notify two URLs", global: "apikey {\n notify https://a/x https://b/x {\n  secret x\n }\n}", wantErr: "notify takes one URL"},
		{name: "notify without secret", global: "apikey {\n\n notify https://h/x {\n  events key.created\n }\n}", wantErr: "Caddyfile:4: notify https://h/x needs a secret"},
		{name: "notify without block", global: "apikey {\n notify https://h/x\n}", wantErr: "needs a secret"},
		{name: "notify unknown event", global: "apikey {\n notify https://h/x {\n  secret x\n  events key.created key.exploded\n }\n}", wantErr: `is unknown; known events: key.created, key.rotated, key.revoked, key.expiring, key.expired, quota.threshold, license.threshold, at Caddyfile:5`},
		{name: "notify empty events", global: "apikey {\n notify https://h/x {\n  secret x\n  events\n }\n}", wantErr: "events needs at least one event type"},
		{name: "notify bad expiring_within", global: "apikey {\n notify https://h/x {\n  secret x\n  expiring_within soon\n }\n}", wantErr: `expiring_within: "soon" is not a positive duration`},
		{name: "notify repeated secret", global: "apikey {\n notify https://h/x {\n  secret x\n  secret y\n }\n}", wantErr: "notify secret: repeated subdirective"},
		{name: "notify unknown option", global: "apikey {\n notify https://h/x {\n  secret x\n  retries 3\n }\n}", wantErr: `unknown notify option "retries"`},
		{name: "notify URL twice", global: "apikey {\n notify https://h/x {\n  secret x\n }\n notify https://h/x {\n  secret y\n }\n}", wantErr: "notify https://h/x is given twice"},
		{name: "webhooks unknown option", global: "apikey {\n webhooks {\n  retries 3\n }\n}", wantErr: `unknown webhooks option "retries"`},
		{name: "webhooks bad duration", global: "apikey {\n webhooks {\n  timeout forever\n }\n}", wantErr: `timeout: "forever" is not a positive duration`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			site := tc.site
			if site == "" {
				site = "apikey"
			}
			cf := "{\n" + tc.global + "\n}\n:8080 {\n" + site + "\nrespond ok\n}\n"
			_, err := adapt(t, cf)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
