package reqpath

import (
	"errors"
	"net/url"
	"path"
	"strings"
	"testing"
)

// parse reads a request target the way Go's HTTP server does and returns
// the two forms the caller hands to Canonical.
func parse(t testing.TB, target string) (escaped, decoded string, ok bool) {
	t.Helper()
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return "", "", false
	}
	return u.EscapedPath(), u.Path, true
}

func TestCanonicalRefuses(t *testing.T) {
	for _, target := range []string{
		"/maximo/oslc/os/mxasset/..;/mxwo",
		"/maximo/oslc/os/mxasset/..;x=1/mxwo",
		"/maximo/oslc/os/mxasset/%2e%2e;/mxwo",
		"/maximo/oslc/os/mxasset/.;/..;/mxwo",
		"/maximo/oslc/os/mxasset;/..;/mxwo",
		"/maximo/oslc/os/mxasset;jsessionid=1",
		"/maximo/oslc/os/mxasset%3b/x",
		"/maximo/oslc/os/mxasset%3B/x",
		"/maximo/oslc/os/mxasset/../mxwo",
		"/maximo/oslc/os/mxasset/./x",
		"/maximo/oslc/os/mxasset/%2e%2e/mxwo",
		"/maximo/oslc/os/mxasset/%2E%2E/mxwo",
		"/maximo/oslc/os/mxasset/.%2E/mxwo",
		"/maximo/oslc/os/mxasset/%2e/x",
		"/maximo/oslc/os/mxasset/..",
		"/maximo/oslc/os/mxasset/.",
		"/maximo/oslc/os/mxasset/..%20/mxwo", // Windows trims trailing spaces
		"/maximo/oslc/os/mxasset/.%20%20/x",
		"/maximo/oslc/os/mxasset%5c..%5cmxwo",
		"/maximo/oslc/os/mxasset%5C..%5Cmxwo",
		`/maximo/oslc/os/mxasset\..\mxwo`,
		"/maximo/oslc/os/mxasset%2f..%2fmxwo",
		"/maximo/oslc/os/mxasset%2F..%2Fmxwo",
		"/maximo/oslc/os/mxasset/%252e%252e/mxwo",
		"/maximo/oslc/os/mxasset/%25",
		"/maximo/oslc/os/mxasset/%00",
		"/maximo/oslc/os/mxasset/a%00b",
		"/maximo/oslc/os/mxasset/a%0Ab",
		"/maximo/oslc/os/mxasset/a%09b",
		"/maximo/oslc/os/mxasset/a%7Fb",
		"/maximo/oslc/os/mxasset/%c0%ae%c0%ae/mxwo",
		"/maximo/oslc/os/mxasset/%C0%AE/x",
		"/maximo/oslc/os/mxasset/%e0%80%ae/x",
		"/maximo/oslc/os/mxasset/%ff",
		"/maximo/oslc/os/mxasset/%ef%bc%8e%ef%bc%8e/mxwo", // fullwidth ．．
		"/maximo/oslc/os/mxasset/%ef%bc%8fmxwo",           // fullwidth ／
		"/maximo/oslc/os/mxasset/%e2%80%a5/mxwo",          // two-dot leader
		"/maximo/oslc/os/mxasset//..//mxwo",
		"/maximo/oslc/os/mxasset/%2e%2e%2fmxwo",
		"*",
	} {
		escaped, decoded, ok := parse(t, target)
		if !ok {
			continue // Go's server refuses it before any handler runs
		}
		if e, d, err := Canonical(escaped, decoded, Options{}); err == nil {
			t.Errorf("%s: accepted as %q (%q)", target, e, d)
		} else if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: error %v is not ErrInvalid", target, err)
		}
	}
}

func TestCanonicalKeepsLegitimatePaths(t *testing.T) {
	for _, tc := range []struct{ target, escaped, decoded string }{
		{"/maximo/oslc/os/mxasset", "/maximo/oslc/os/mxasset", "/maximo/oslc/os/mxasset"},
		{"/maximo/oslc/os/mxasset/", "/maximo/oslc/os/mxasset/", "/maximo/oslc/os/mxasset/"},
		{"/maximo/oslc/os/mxasset/_QkVERk9SRC8xMDAx", "/maximo/oslc/os/mxasset/_QkVERk9SRC8xMDAx", "/maximo/oslc/os/mxasset/_QkVERk9SRC8xMDAx"},
		{"/maximo/oslc/os/mxasset/a%20b", "/maximo/oslc/os/mxasset/a%20b", "/maximo/oslc/os/mxasset/a b"},
		{"/maximo/oslc/os/mxasset/caf%C3%A9", "/maximo/oslc/os/mxasset/caf%C3%A9", "/maximo/oslc/os/mxasset/café"},
		{"/maximo/oslc/os/mxasset/café", "/maximo/oslc/os/mxasset/caf%C3%A9", "/maximo/oslc/os/mxasset/café"},
		{"/mce/api/rest/v1/asset(Example%20City)", "/mce/api/rest/v1/asset%28Example%20City%29", "/mce/api/rest/v1/asset(Example City)"},
		{"/mce/api/rest/v1/asset(pk=1)", "/mce/api/rest/v1/asset%28pk=1%29", "/mce/api/rest/v1/asset(pk=1)"},
		{"/maximo/oslc/os/mxasset/...", "/maximo/oslc/os/mxasset/...", "/maximo/oslc/os/mxasset/..."},
		{"/maximo/oslc/os/mxasset/a.b/..c", "/maximo/oslc/os/mxasset/a.b/..c", "/maximo/oslc/os/mxasset/a.b/..c"},
		{"//maximo///oslc/os//mxasset", "/maximo/oslc/os/mxasset", "/maximo/oslc/os/mxasset"},
		{"/maximo/oslc/os/mxasset//a%20b", "/maximo/oslc/os/mxasset/a%20b", "/maximo/oslc/os/mxasset/a b"},
		{"/", "/", "/"},
	} {
		escaped, decoded, ok := parse(t, tc.target)
		if !ok {
			t.Fatalf("%s: Go does not parse it", tc.target)
		}
		e, d, err := Canonical(escaped, decoded, Options{})
		if err != nil {
			t.Errorf("%s: refused: %v", tc.target, err)
			continue
		}
		// Go may pick its own escaping of an unchanged path; what matters
		// is that both forms agree and match what was expected.
		if d != tc.decoded {
			t.Errorf("%s: decoded %q, want %q", tc.target, d, tc.decoded)
		}
		if un, _ := url.PathUnescape(e); un != d {
			t.Errorf("%s: escaped %q does not decode to %q", tc.target, e, d)
		}
		if e != tc.escaped && e != escaped {
			t.Errorf("%s: escaped %q, want %q", tc.target, e, tc.escaped)
		}
	}
}

func TestCanonicalOptions(t *testing.T) {
	semi := Options{AllowSemicolon: true}
	for target, want := range map[string]bool{
		"/maximo/oslc/os/mxasset;jsessionid=1/x": true,
		"/maximo/oslc/os/mxasset%3Bx":            true,
		"/maximo/oslc/os/mxasset/..;/mxwo":       false,
		"/maximo/oslc/os/mxasset/.;x/mxwo":       false,
		"/maximo/oslc/os/mxasset/%2e%2e;x=1/":    false,
		"/maximo/oslc/os/mxasset/a%2Fb":          false,
	} {
		e, d, _ := parse(t, target)
		if _, _, err := Canonical(e, d, semi); (err == nil) != want {
			t.Errorf("AllowSemicolon %s: err %v, want accepted=%v", target, err, want)
		}
	}
	slash := Options{AllowEncodedSlash: true}
	for target, want := range map[string]bool{
		"/maximo/oslc/os/mxasset/a%2Fb":        true,
		"/maximo/oslc/os/mxasset%2F..%2Fmxwo":  false,
		"/maximo/oslc/os/mxasset/%2E%2E%2Fx":   false,
		"/maximo/oslc/os/mxasset;x/a%2Fb":      false,
		"/maximo/oslc/os/mxasset/%252F":        false,
		"/maximo/oslc/os/mxasset%2F%2E%2Fmxwo": false,
	} {
		e, d, _ := parse(t, target)
		if _, _, err := Canonical(e, d, slash); (err == nil) != want {
			t.Errorf("AllowEncodedSlash %s: err %v, want accepted=%v", target, err, want)
		}
	}
}

func TestCanonicalSaysWhy(t *testing.T) {
	e, d, _ := parse(t, "/maximo/oslc/os/mxasset/..;/mxwo")
	_, _, err := Canonical(e, d, Options{})
	if err == nil || !strings.Contains(err.Error(), ";") {
		t.Fatalf("error %v does not name the semicolon", err)
	}
}

func TestCanonicalUnchangedPathDoesNotAllocate(t *testing.T) {
	const p = "/maximo/oslc/os/mxapiwodetail/_V09SSy8xMDAx"
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, err := Canonical(p, p, Options{}); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations, want 0", allocs)
	}
}

func BenchmarkCanonicalMaximoPath(b *testing.B) {
	const p = "/maximo/oslc/os/mxapiwodetail/_V09SSy8xMDAx"
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Canonical(p, p, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// servletPath is a reference model of how a servlet container maps a raw
// request URI to the path it dispatches: drop ";params" from every
// segment, percent-decode, read "\" as "/" (as some containers do when
// allowed), merge empty segments and resolve dot segments. ok is false
// when the container would refuse the request (".." above the root).
func servletPath(raw string) (string, bool) {
	segs := strings.Split(raw, "/")
	for i, s := range segs {
		if j := strings.IndexByte(s, ';'); j >= 0 {
			segs[i] = s[:j]
		}
	}
	dec, err := url.PathUnescape(strings.Join(segs, "/"))
	if err != nil {
		return "", false
	}
	return resolve(strings.ReplaceAll(dec, `\`, "/"))
}

// iisPath models IIS: "\" and "%5C" are "/", and a path may be decoded
// twice (by IIS and by the application).
func iisPath(raw string) (string, bool) {
	dec, err := url.PathUnescape(raw)
	if err != nil {
		return "", false
	}
	if twice, err := url.PathUnescape(dec); err == nil {
		dec = twice
	}
	return resolve(strings.ReplaceAll(dec, `\`, "/"))
}

func resolve(p string) (string, bool) {
	var out []string
	for _, s := range strings.Split(p, "/") {
		switch s {
		case "", ".":
		case "..":
			if len(out) == 0 {
				return "", false
			}
			out = out[:len(out)-1]
		default:
			out = append(out, s)
		}
	}
	return "/" + strings.Join(out, "/"), true
}

// FuzzCanonicalVsBackends is the differential test of step 0: for any raw
// path Canonical accepts, a servlet container and IIS must both read the
// forwarded path as the very path that was judged (path.Clean of the
// decoded canonical path, as area matching uses it).
func FuzzCanonicalVsBackends(f *testing.F) {
	for _, s := range []string{
		"/maximo/oslc/os/mxasset/..;/mxwo", "/maximo/oslc/os/mxasset/%2e%2e;/mxwo",
		"/maximo/oslc/os/mxasset%5c..%5cmxwo", "/a/%252e%252e/b", "/a//b", "/a/b;c/../d",
		"/mce/api/rest/v1/asset(Example%20City)", "/maximo/oslc/os/mxasset/_QkVERk9SRC8xMDAx",
		"/a/%c0%ae%c0%ae/b", "/a/.%2e/b", "/a/caf%C3%A9", "/a/%ef%bc%8e%ef%bc%8e/b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		escaped, decoded, ok := parse(t, target)
		if !ok || !strings.HasPrefix(target, "/") {
			return
		}
		ce, cd, err := Canonical(escaped, decoded, Options{})
		if err != nil {
			return
		}
		judged := path.Clean(cd)
		if un, uerr := url.PathUnescape(ce); uerr != nil || un != cd {
			t.Fatalf("%q: forwarded %q does not decode to the judged %q", target, ce, cd)
		}
		for name, model := range map[string]func(string) (string, bool){"servlet": servletPath, "IIS": iisPath} {
			got, ok := model(ce)
			if !ok {
				continue // the backend refuses it: nothing reached
			}
			if got != judged && got != judged+"/" && got+"/" != judged {
				t.Fatalf("%q: judged %q, forwarded %q, %s reads %q", target, judged, ce, name, got)
			}
		}
	})
}
