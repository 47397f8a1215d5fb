package caddymodule

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// The fuzz targets below run their seed corpus (f.Add and
// testdata/fuzz/<Name>) as ordinary tests; .ci/fuzz runs them with -fuzz
// for a bounded time.

// fuzzSources are the handler configurations FuzzExtract picks from.
var fuzzSources = []KeySources{
	{},
	{Bearer: true},
	{Headers: []string{"X-API-Key", "apikey"}, Query: []string{"api_key", "apikey"}, Bearer: true},
	{Headers: []string{"api-key"}, DisableQuery: true},
	{Query: []string{"key"}, Bearer: true},
}

// readFuzzRequest builds a request the way net/http's server would from a
// raw query string and raw header lines ("\n"-separated).
func readFuzzRequest(rawQuery, headers string) (*http.Request, bool) {
	target := "/maximo/oslc/os/mxapiasset"
	if rawQuery != "" {
		target += "?" + rawQuery
	}
	raw := "GET " + target + " HTTP/1.1\r\nHost: keygate.test\r\n"
	for _, line := range strings.Split(headers, "\n") {
		if line = strings.TrimSuffix(line, "\r"); line != "" {
			raw += line + "\r\n"
		}
	}
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw + "\r\n")))
	if err != nil {
		return nil, false
	}
	return r, true
}

// refDecode is url.QueryUnescape, keeping undecodable input as it is.
func refDecode(s string) string {
	if d, err := url.QueryUnescape(s); err == nil {
		return d
	}
	return s
}

// refCandidates lists, independently of extract, every key value the
// request carries in the configured places: headers by case-insensitive
// name, "Authorization: Bearer", and query parameters split on '&' and ';'
// whose decoded name is configured.
func refCandidates(ks KeySources, r *http.Request) []string {
	headers, query := ks.Headers, ks.Query
	if len(headers) == 0 {
		headers = []string{"apikey"}
	}
	if len(query) == 0 {
		query = []string{"apikey"}
	}
	if ks.DisableQuery {
		query = nil
	}
	var out []string
	for name, vals := range r.Header {
		for _, h := range headers {
			if strings.EqualFold(name, h) {
				out = append(out, vals...)
				break
			}
		}
	}
	if ks.Bearer {
		for _, v := range r.Header.Values("Authorization") {
			if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
				out = append(out, strings.TrimSpace(v[7:]))
			}
		}
	}
	for _, seg := range strings.FieldsFunc(r.URL.RawQuery, func(c rune) bool { return c == '&' }) {
		name, value, _ := strings.Cut(seg, "=")
		for _, q := range query {
			if refDecode(name) == q {
				out = append(out, refDecode(value))
			}
		}
	}
	return out
}

// FuzzExtract checks key extraction and scrubbing on requests built from a
// fuzzed query string and header lines: every key the request carries in a
// configured place is found (more than one distinct value is ambiguous),
// and after scrub no configured header, no Authorization that carried the
// key and no query parameter whose decoded name is configured remains.
func FuzzExtract(f *testing.F) {
	const key = "kg_4Fq9Zr1x0TbAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	seeds := []struct {
		query, headers string
	}{
		{"lean=1", "apikey: " + key},
		{"apikey=" + key + "&lean=1", ""},
		{"lean=1;apikey=" + key, ""},
		{"%61pikey=" + key, ""},
		{"api%6Bey=" + key + "&apikey=other", ""},
		{"apikey=" + url.QueryEscape(key+"+/") + "&apikey=" + key, ""},
		{"apikey", ""},
		{"apikey=&apikey=", ""},
		{"a=1&&;;apikey=x;&b=2", ""},
		{"api+key=" + key, ""},
		{"apikey%3D" + key, ""},
		{"apikey=%zz", ""},
		{"_method=DELETE&apikey=" + key, "X-HTTP-Method-Override: PATCH"},
		{"", "APIKEY: " + key + "\napikey: " + key},
		{"", "ApiKey: a\nAPIKEY: b"},
		{"", "Authorization: Bearer " + key},
		{"", "authorization: bEaReR   " + key + "  "},
		{"", "Authorization: Basic dXNlcjpwYXNz\nAuthorization: Bearer " + key},
		{"", "X-API-Key: " + key + "\nx-api-key: " + key},
		{"api_key=" + key, "X-Api-Key: " + key + "\nAuthorization: Bearer " + key},
		{"key=" + key, "Api-Key: " + key},
		{"apikey=" + key, "apikey: " + key + "\nAuthorization: Bearer other"},
		{"apikey=" + key + "#frag", ""},
		{"ap%69key=1&apikey=1", ""},
		{"%2561pikey=" + key, ""},
	}
	for _, s := range seeds {
		for cfg := range len(fuzzSources) {
			f.Add(s.query, s.headers, uint8(cfg))
		}
	}
	f.Fuzz(func(t *testing.T, rawQuery, headers string, cfg uint8) {
		ks := fuzzSources[int(cfg)%len(fuzzSources)]
		r, ok := readFuzzRequest(rawQuery, headers)
		if !ok {
			return
		}
		x := ks.extractor()
		var ex extraction
		want := refCandidates(ks, r)
		x.extract(r, &ex)

		if ex.found != (len(want) > 0) {
			t.Fatalf("query %q headers %q: found=%v, reference candidates %q", r.URL.RawQuery, r.Header, ex.found, want)
		}
		distinct := map[string]bool{}
		for _, v := range want {
			distinct[v] = true
		}
		if ex.ambiguous != (len(distinct) > 1) {
			t.Fatalf("query %q headers %q: ambiguous=%v, reference candidates %q", r.URL.RawQuery, r.Header, ex.ambiguous, want)
		}
		if ex.found && !ex.ambiguous && !distinct[ex.key] {
			t.Fatalf("query %q headers %q: key %q is none of the candidates %q", r.URL.RawQuery, r.Header, ex.key, want)
		}

		x.scrub(r, &ex)
		for name := range r.Header {
			for _, h := range x.headers {
				if strings.EqualFold(name, h) {
					t.Fatalf("header %q survived the scrub: %q", name, r.Header)
				}
			}
		}
		if ex.inBearer && len(r.Header.Values("Authorization")) > 0 {
			t.Fatalf("Authorization survived the scrub although it carried the key: %q", r.Header)
		}
		for _, seg := range strings.FieldsFunc(r.URL.RawQuery, func(c rune) bool { return c == '&' }) {
			name, _, _ := strings.Cut(seg, "=")
			if d, err := url.QueryUnescape(name); err == nil && x.isQueryName(d) {
				t.Fatalf("query %q still carries key parameter %q after the scrub", r.URL.RawQuery, seg)
			}
		}
		if r.RequestURI != r.URL.RequestURI() && ex.inQuery {
			t.Fatalf("RequestURI %q does not match the scrubbed URL %q", r.RequestURI, r.URL.RequestURI())
		}
		// What the backend receives must parse and keep the path.
		u, err := url.ParseRequestURI(r.URL.RequestURI())
		if err != nil {
			t.Fatalf("scrubbed request URI %q does not parse: %v", r.URL.RequestURI(), err)
		}
		if u.Path != "/maximo/oslc/os/mxapiasset" {
			t.Fatalf("scrub changed the path to %q", u.Path)
		}
	})
}

// FuzzCaddyfile adapts arbitrary apikey global option and handler blocks:
// the parsers must never panic, and what they accept must be JSON that
// decodes into the module types.
func FuzzCaddyfile(f *testing.F) {
	f.Add("storage file /var/lib/keygate/keys.db\nprefix kg\nlicense 100\narea assets /maximo/oslc/os/mxapiasset*", "header apikey\nquery apikey\nbearer", "")
	f.Add("storage postgres {env.KEYGATE_DATABASE_URL} {\n\tmax_conns 10\n\tpoll_interval 5s\n}", "require_upstream_credential", "/keygate")
	f.Add("cache {\n\tsize 10\n\tnegative_ttl 1s\n\tmax_concurrent_lookups 8\n}\nfailed_attempts off", "query off", "")
	f.Add("failed_attempts 10/1m\ndefault_rate 100/1m\ndefault_quota 10000/month\nflush_interval 10s", "header", "a b")
	f.Add("upstream_credential MXINTADM {env.X}\nupstream_credential MXINTADM y", "bearer x", "")
	f.Add("area\narea a\narea a /x\narea a /y", "unknown", "")
	f.Add("storage file\nstorage postgres\nstorage", "query", "")
	f.Add("cache {\n\tcache {\n\t}\n}", "header {\n}", "")
	f.Add("prefix toolongprefix_\nlicense -1\nlicense x", "require_upstream_credential extra", "")
	f.Add("default_rate 0/0s\ndefault_quota 1/week\nfailed_attempts /\nflush_interval -1s", "", "{")
	f.Add("storage file /tmp/x {\n\tmax_conns 1\n}", "", "")
	f.Add("}\n{", "}\n}", "}")
	f.Fuzz(func(t *testing.T, global, handler, adminMount string) {
		cf := fmt.Sprintf("{\n\tapikey {\n%s\n\t}\n}\n\n:8080 {\n\thandle /keygate/* {\n\t\tapikey_admin %s\n\t}\n\thandle {\n\t\tapikey {\n%s\n\t\t}\n\t\trespond 200\n\t}\n}\n",
			global, adminMount, handler)
		out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), map[string]any{"filename": "Caddyfile"})
		if err != nil {
			return
		}
		var cfg struct {
			Apps map[string]json.RawMessage `json:"apps"`
		}
		if err := json.Unmarshal(out, &cfg); err != nil {
			t.Fatalf("adapted config is not JSON: %v\n%s", err, out)
		}
		if raw, ok := cfg.Apps["apikey"]; ok {
			var app App
			if err := json.Unmarshal(raw, &app); err != nil {
				t.Fatalf("apikey app JSON %s does not decode: %v", raw, err)
			}
		}
	})
}
