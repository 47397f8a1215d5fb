package console

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, method, path string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	Handler().ServeHTTP(w, r)
	return w
}

func TestServe(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		method   string
		path     string
		status   int
		ctype    string
		contains string
		location string
	}{
		{name: "index", method: "GET", path: "/ui/", status: 200, ctype: "text/html", contains: `<script src="app.js" defer></script>`},
		{name: "script", method: "GET", path: "/ui/app.js", status: 200, ctype: "text/javascript", contains: "sessionStorage"},
		{name: "style", method: "GET", path: "/ui/app.css", status: 200, ctype: "text/css"},
		{name: "docs page", method: "GET", path: "/ui/docs.html", status: 200, ctype: "text/html", contains: "swagger-ui-bundle.js"},
		{name: "swagger bundle", method: "GET", path: "/ui/vendor/swagger-ui/swagger-ui-bundle.js", status: 200, ctype: "text/javascript"},
		{name: "swagger licence", method: "GET", path: "/ui/vendor/swagger-ui/LICENSE", status: 200, ctype: "text/plain", contains: "Apache License"},
		{name: "head", method: "HEAD", path: "/ui/", status: 200, ctype: "text/html"},
		{name: "no slash redirects relative", method: "GET", path: "/ui", status: 301, location: "ui/"},
		{name: "unknown", method: "GET", path: "/ui/nope.js", status: 404},
		{name: "dot segments", method: "GET", path: "/ui/vendor/../app.js", status: 404},
		{name: "outside ui", method: "GET", path: "/keys", status: 404},
		{name: "post", method: "POST", path: "/ui/", status: 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := get(t, tc.method, tc.path)
			if w.Code != tc.status {
				t.Fatalf("status: got %d, want %d", w.Code, tc.status)
			}
			if got := w.Header().Get("Content-Security-Policy"); got != ContentSecurityPolicy {
				t.Fatalf("Content-Security-Policy: got %q, want %q", got, ContentSecurityPolicy)
			}
			if got := w.Header().Get("X-Content-Type-Options"); got != "nosniff" {
				t.Fatalf("X-Content-Type-Options: got %q, want nosniff", got)
			}
			if tc.ctype != "" && !strings.HasPrefix(w.Header().Get("Content-Type"), tc.ctype) {
				t.Fatalf("Content-Type: got %q, want %s", w.Header().Get("Content-Type"), tc.ctype)
			}
			if tc.contains != "" && !strings.Contains(w.Body.String(), tc.contains) {
				t.Fatalf("body lacks %q", tc.contains)
			}
			if tc.location != "" && w.Header().Get("Location") != tc.location {
				t.Fatalf("Location: got %q, want %q", w.Header().Get("Location"), tc.location)
			}
		})
	}
}

func TestETagRevalidation(t *testing.T) {
	t.Parallel()
	w := get(t, "GET", "/ui/app.js")
	etag := w.Header().Get("ETag")
	if etag == "" || w.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("got ETag %q, Cache-Control %q; want an ETag and no-cache", etag, w.Header().Get("Cache-Control"))
	}
	w = get(t, "GET", "/ui/app.js", "If-None-Match", etag)
	if w.Code != http.StatusNotModified {
		t.Fatalf("conditional GET: got status %d, want 304", w.Code)
	}
}

// TestNoInlineCode keeps the pages compatible with the CSP: no inline
// scripts, event handler attributes, style elements or style attributes,
// and nothing loaded from another origin.
func TestNoInlineCode(t *testing.T) {
	t.Parallel()
	bad := []struct {
		name string
		re   *regexp.Regexp
	}{
		{"inline script", regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`)},
		{"script without src", regexp.MustCompile(`<script(?:\s(?:[^>s]|s[^r]|sr[^c])*)?>`)},
		{"event handler attribute", regexp.MustCompile(`\son[a-z]+\s*=`)},
		{"style element", regexp.MustCompile(`<style[\s>]`)},
		{"style attribute", regexp.MustCompile(`\sstyle\s*=`)},
		{"remote URL", regexp.MustCompile(`(?:src|href)\s*=\s*"(?:https?:)?//`)},
	}
	pages, err := fs.Glob(assets, "assets/*.html")
	if err != nil || len(pages) == 0 {
		t.Fatalf("no pages found: %v", err)
	}
	for _, p := range pages {
		b, _ := assets.ReadFile(p)
		for _, c := range bad {
			if loc := c.re.FindIndex(b); loc != nil {
				t.Errorf("%s has a %s: %q", p, c.name, b[loc[0]:min(loc[1]+40, len(b))])
			}
		}
	}
}

// TestAppScriptAvoidsInnerHTML keeps data out of the HTML parser: the
// console builds its DOM with textContent only.
func TestAppScriptAvoidsInnerHTML(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"assets/app.js", "assets/docs.js"} {
		b, err := assets.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s uses %s", name, bad)
			}
		}
	}
}
