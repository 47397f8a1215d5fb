//go:build unix

// The Tomcat tests start catalina.sh in its own process group: Unix only.

package e2e

// TestTomcatPathEscapes is the end-to-end proof of "step 0" (the raw-path
// check) against a real servlet container: keygate in front of Debian's
// Tomcat 10 with its default settings, a key holding only assets rights, and
// a corpus of traversal payloads written byte for byte. A payload escapes
// when keygate let it through and the path Tomcat resolved (servlet context
// + servlet path + path info, after Tomcat's own decoding, ;param stripping
// and dot-segment removal) is outside the area the key holds.
//
// Before step 0 landed (main at fa3b88b), 217 of 518 payloads escaped (651
// of 1554 sends), e.g. GET /maximo/oslc/os/mxasset/..;/mxwo with an
// assets:read key reached /maximo/oslc/os/mxwo, and
// /maximo/oslc/os/mxasset/..;/..;/..;/..;/other/ reached another webapp.
// Tomcat itself answered 400 to 381 sends: \ and %5C, %00, overlong UTF-8
// and ".." above the root; those are no escape here, but keygate forwarded
// them (IIS reads \ as /).
//
// Run: .ci/install-tomcat && go test -count=1 -run TestTomcat ./e2e
// (skips without tomcat10 and javac unless KEYGATE_REQUIRE_TOMCAT=1).

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// tomcatAssets are the assets area's patterns (all prefix patterns): the
// ones of maximoAreas plus MCe's asset resource, which Tomcat serves from
// its ROOT application.
var tomcatAssets = []string{"/maximo/oslc/os/mxapiasset", "/maximo/oslc/os/mxasset", "/maximo/api/os/mxapiasset"}

const tomcatMCeAssets = "/mce/api/rest/v1/asset"

func tomcatConfig(tomcatPort int) func(adminPort, sitePort int, dir string) string {
	return func(adminPort, sitePort int, dir string) string {
		return fmt.Sprintf(`{
	admin 127.0.0.1:%[1]d
	apikey {
		storage file %[3]s/keys.db
		%[4]s
		area mce_assets %[6]s*
		area scripts    /maximo/oslc/script*
	}
}

http://127.0.0.1:%[2]d {
	apikey
	reverse_proxy 127.0.0.1:%[5]d
}
`, adminPort, sitePort, dir, maximoAreas, tomcatPort, tomcatMCeAssets)
	}
}

// echo is the echo servlet's answer.
type echo struct {
	Echo        bool    `json:"echo"`
	App         string  `json:"app"`
	Method      string  `json:"method"`
	RequestURI  string  `json:"requestURI"`
	ServletPath string  `json:"servletPath"`
	PathInfo    *string `json:"pathInfo"`
	Resolved    string  `json:"resolved"`
	PayloadID   string  `json:"payloadId"`
}

// insideAssets reports whether a path Tomcat resolved lies in the assets
// areas the test's keys hold. Only ASCII letters fold, as in keygate.
func insideAssets(p string) bool {
	for _, a := range append(tomcatAssets[:len(tomcatAssets):len(tomcatAssets)], tomcatMCeAssets) {
		if len(p) >= len(a) && lowerASCII(p[:len(a)]) == a {
			return true
		}
	}
	return false
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// tomcatCorpus returns the attack payloads: hand-written ones first, then
// generated prefix × traversal token × target combinations. Every payload
// starts inside the assets area as far as a naive path.Clean can tell.
func tomcatCorpus(sitePort int) []string {
	hand := []string{
		// the reported escape and its spellings
		"/maximo/oslc/os/mxasset/..;/mxwo",
		"/maximo/oslc/os/mxasset/..;x=1/mxwo",
		"/maximo/oslc/os/mxasset/..;jsessionid=x/mxwo",
		"/maximo/oslc/os/mxasset/%2e%2e;/mxwo",
		"/maximo/oslc/os/mxasset/%2E%2E;/mxwo",
		"/maximo/oslc/os/mxasset/%2e%2E;/mxwo",
		"/maximo/oslc/os/mxasset/.%2e;/mxwo",
		"/maximo/oslc/os/mxasset/%2e.;/mxwo",
		"/maximo/oslc/os/mxasset/.;/..;/mxwo",
		"/maximo/oslc/os/mxasset/%2e;/..;/mxwo",
		"/maximo/oslc/os/mxasset;/..;/mxwo",
		"/maximo/oslc/os/mxasset;x=1/..;/mxwo",
		"/maximo/oslc/os/mxasset;jsessionid=x/..;/mxwo",
		"/maximo/oslc/os/mxasset/..%3b/mxwo",
		"/maximo/oslc/os/mxasset/..%3B/mxwo",
		"/maximo/oslc/os/mxasset/%2e%2e%3b/mxwo",
		"/maximo/oslc/os/mxasset/..;%2fmxwo",
		"/maximo/oslc/os/mxasset/..;/MXWO",
		"/maximo/oslc/os/mxasset/..;/mxwo?lean=1",
		"/maximo/oslc/os/mxasset/..;/mxwo;x=1",
		"/maximo/oslc/os/mxasset/..;/mxapiwodetail/_V08xMDAx",
		"/maximo/oslc/os/mxapiasset/..;/mxapiwodetail",
		"/maximo/oslc/os/mxapiasset/_QkVERk9SRC8xMDAx/..;/..;/mxwo",
		"/maximo/api/os/mxapiasset/..;/mxapiwodetail",
		// ;params alone (reach the asset, but are refused after step 0)
		"/maximo/oslc/os/mxasset;jsessionid=x",
		"/maximo/oslc/os/mxasset;x=1/_QkVERk9SRC8xMDAx",
		// real and encoded dots keygate itself resolves
		"/maximo/oslc/os/mxasset/../mxwo",
		"/maximo/oslc/os/mxasset/%2e%2e/mxwo",
		"/maximo/oslc/os/mxasset/%2E%2E/mxwo",
		"/maximo/oslc/os/mxasset/.%2e/mxwo",
		"/maximo/oslc/os/mxasset/%2e/..;/mxwo",
		"/maximo/oslc/os/mxasset/%2e%2e%2fmxwo",
		"/maximo/oslc/os/mxasset/%2E%2E%2Fmxwo",
		"/maximo/oslc/os/mxasset/x/..",
		"/maximo/oslc/os/mxasset/..",
		"/maximo/oslc/os/mxasset/%2e%2e",
		"/maximo/oslc/os/mxasset/..;",
		"/maximo/oslc/os/mxasset/..;/",
		"/maximo/oslc/os/mxasset/.;",
		// encoded and raw separators (IIS reads \ and %5C as /)
		"/maximo/oslc/os/mxasset/..%2Fmxwo",
		"/maximo/oslc/os/mxasset/..%2fmxwo",
		"/maximo/oslc/os/mxasset%2F..%2Fmxwo",
		"/maximo/oslc/os/mxasset/..%5Cmxwo",
		"/maximo/oslc/os/mxasset/..%5cmxwo",
		`/maximo/oslc/os/mxasset/..\mxwo`,
		`/maximo/oslc/os/mxasset\..\mxwo`,
		"/maximo/oslc/os/mxasset%5C..%5Cmxwo",
		"/maximo/oslc/os/mxasset/..%2f..%2f..%2f..%2fother/",
		// double encoding, NUL, overlong UTF-8, IIS %u
		"/maximo/oslc/os/mxasset/%252e%252e/mxwo",
		"/maximo/oslc/os/mxasset/%252E%252E%253B/mxwo",
		"/maximo/oslc/os/mxasset/..%252fmxwo",
		"/maximo/oslc/os/mxasset/..%00/mxwo",
		"/maximo/oslc/os/mxasset%00/../mxwo",
		"/maximo/oslc/os/mxasset/%00/..;/mxwo",
		"/maximo/oslc/os/mxasset/%c0%ae%c0%ae/mxwo",
		"/maximo/oslc/os/mxasset/%C0%AE%C0%AE/mxwo",
		"/maximo/oslc/os/mxasset/..%c0%afmxwo",
		"/maximo/oslc/os/mxasset/%e0%80%ae%e0%80%ae/mxwo",
		"/maximo/oslc/os/mxasset/%u002e%u002e/mxwo",
		"/maximo/oslc/os/mxasset/..%u2215mxwo",
		// control bytes, raw and encoded
		"/maximo/oslc/os/mxasset/..\t/mxwo",
		"/maximo/oslc/os/mxasset/..\r/mxwo",
		"/maximo/oslc/os/mxasset/..%09/mxwo",
		"/maximo/oslc/os/mxasset/..%0d/mxwo",
		"/maximo/oslc/os/mxasset/..%0a/mxwo",
		"/maximo/oslc/os/mxasset/..%20/mxwo",
		"/maximo/oslc/os/mxasset/..%7f/mxwo",
		// doubled slashes
		"//maximo/oslc/os/mxasset/..;/mxwo",
		"/maximo//oslc/os/mxasset/..;/mxwo",
		"/maximo/oslc/os/mxasset//..;/mxwo",
		"/maximo/oslc/os/mxasset/..;//mxwo",
		// out of the application: Tomcat's other contexts
		"/maximo/oslc/os/mxasset/..;/..;/..;/..;/other/",
		"/maximo/oslc/os/mxasset/..;/..;/..;/..;/",
		"/maximo/oslc/os/mxasset/..;/..;/..;/..;/mce/api/rest/v1/workorder",
		"/maximo/oslc/os/mxasset/..;/..;/..;/..;/..;/etc/passwd",
		"/maximo/oslc/os/mxasset/..;/../script/foo",
		"/maximo/oslc/os/mxasset/..;/..;/script/foo",
		"/maximo/oslc/os/mxasset/%2e%2e;/%2e%2e;/script/foo",
		"/maximo/oslc/os/mxasset/..;/..;/..;/api/os/mxapiwodetail",
		// MCe
		"/mce/api/rest/v1/asset/..;/workorder",
		"/mce/api/rest/v1/asset(1)/..;/..;/workorder",
		"/mce/api/rest/v1/asset(Example%20City)/..;/..;/..;/..;/..;/maximo/oslc/os/mxwo",
		"/mce/api/rest/v1/asset/%2e%2e;/workorder",
		// case
		"/MAXIMO/oslc/os/mxasset/..;/mxwo",
		"/maximo/oslc/os/MXASSET/..;/mxwo",
		// absolute-form request target
		fmt.Sprintf("http://127.0.0.1:%d/maximo/oslc/os/mxasset/..;/mxwo", sitePort),
	}

	prefixes := []struct {
		p     string
		depth int // segments below /
	}{
		{"/maximo/oslc/os/mxasset/", 4},
		{"/maximo/oslc/os/mxasset;/", 4},
		{"/maximo/oslc/os/mxapiasset/_QkVERk9SRC8xMDAx/", 5},
		{"/maximo/api/os/mxapiasset/x/", 5},
	}
	// Each token is one level up to a servlet container or to IIS.
	tokens := []string{
		"..;/", "..;x=1/", "..;jsessionid=x/", "%2e%2e;/", "%2E%2E;/", ".;/..;/", "%2e;/%2e%2e;/",
		"..%3b/", "..%3B/", "..;%2f", "..%2f", "..%2F", "..%5c", "..%5C", `..\`, "%2e%2e%5c",
		"%252e%252e/", "..%252f", "%c0%ae%c0%ae/", "..%00/", "..;/./", "/..;/", "%2e%2e/",
	}
	targets := []struct {
		keep int // levels below / the target starts at
		rest string
	}{
		{3, "mxwo"},                      // /maximo/oslc/os/mxwo (work orders)
		{3, "mxapiwodetail/_V08xMDAx"},   // /maximo/oslc/os/mxapiwodetail/…
		{2, "script/foo"},                // /maximo/oslc/script/foo (automation scripts)
		{0, "other/"},                    // another application
		{0, "mce/api/rest/v1/workorder"}, // the ROOT application
	}
	all := hand
	for _, pre := range prefixes {
		for _, tok := range tokens {
			for _, tg := range targets {
				all = append(all, pre.p+strings.Repeat(tok, pre.depth-tg.keep)+tg.rest)
			}
		}
	}
	seen := map[string]bool{}
	out := all[:0:0]
	for _, p := range all {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// legitimate paths must reach the echo servlet and resolve as given.
var tomcatLegitimate = []struct {
	method, target, app, resolved string
}{
	{"GET", "/maximo/oslc/os/mxasset", "/maximo", "/maximo/oslc/os/mxasset"},
	{"GET", "/maximo/oslc/os/mxapiasset?lean=1&oslc.select=assetnum,status", "/maximo", "/maximo/oslc/os/mxapiasset"},
	{"GET", "/maximo/oslc/os/mxasset/_QkVERk9SRC8xMDAx", "/maximo", "/maximo/oslc/os/mxasset/_QkVERk9SRC8xMDAx"},
	{"GET", "/maximo/oslc/os/mxapiasset/_QkVERk9SRC8xMDAx?lean=1", "/maximo", "/maximo/oslc/os/mxapiasset/_QkVERk9SRC8xMDAx"},
	{"GET", "/maximo/api/os/mxapiasset/_QkVERk9SRC8xMDAx", "/maximo", "/maximo/api/os/mxapiasset/_QkVERk9SRC8xMDAx"},
	{"GET", "/maximo/oslc/os/mxasset/a%20b", "/maximo", "/maximo/oslc/os/mxasset/a b"},
	{"GET", "/maximo/oslc/os/mxasset/caf%C3%A9", "/maximo", "/maximo/oslc/os/mxasset/café"},
	{"GET", "/maximo/oslc/os/mxasset/caf%c3%a9", "/maximo", "/maximo/oslc/os/mxasset/café"},
	{"GET", "/maximo/oslc/os/mxasset/%E2%82%AC100", "/maximo", "/maximo/oslc/os/mxasset/€100"},
	{"GET", "/maximo/oslc/os/mxasset/1001%2B2", "/maximo", "/maximo/oslc/os/mxasset/1001+2"},
	{"GET", "/maximo/oslc/os/mxasset/a.b", "/maximo", "/maximo/oslc/os/mxasset/a.b"},
	{"GET", "/maximo/oslc/os/mxasset/x..y", "/maximo", "/maximo/oslc/os/mxasset/x..y"},
	{"GET", "/maximo/oslc/os/mxasset//_QkVERk9SRC8xMDAx", "/maximo", "/maximo/oslc/os/mxasset/_QkVERk9SRC8xMDAx"},
	{"GET", "/maximo/oslc/os/MXASSET", "/maximo", "/maximo/oslc/os/MXASSET"},
	{"GET", "/mce/api/rest/v1/asset(Example%20City)", "", "/mce/api/rest/v1/asset(Example City)"},
	{"GET", "/mce/api/rest/v1/asset(pk=1)", "", "/mce/api/rest/v1/asset(pk=1)"},
	{"GET", "/mce/api/rest/v1/asset?$filter=name%20eq%20%27x%27", "", "/mce/api/rest/v1/asset"},
	{"POST", "/maximo/oslc/os/mxasset", "/maximo", "/maximo/oslc/os/mxasset"},
	{"POST", "/maximo/oslc/os/mxapiasset/_QkVERk9SRC8xMDAx?lean=1", "/maximo", "/maximo/oslc/os/mxapiasset/_QkVERk9SRC8xMDAx"},
	{"POST", "/mce/api/rest/v1/asset(pk=1)", "", "/mce/api/rest/v1/asset(pk=1)"},
}

// tomcatSend is one request of the run and what became of it.
type tomcatSend struct {
	id, method, target, key string
	resp                    rawResponse
	echo                    *echo
}

func (s *tomcatSend) label() string { return fmt.Sprintf("%s %q (%s key)", s.method, s.target, s.key) }

func TestTomcatPathEscapes(t *testing.T) {
	tc := startTomcat(t, "ROOT", "maximo", "other")
	in := start(t, tomcatConfig(tc.port))
	keys := map[string]string{
		"read":  in.createKey(map[string]any{"name": "tomcat-read", "user": "MXINTADM", "rights": []string{"assets:read", "mce_assets:read"}}).Key,
		"write": in.createKey(map[string]any{"name": "tomcat-write", "user": "MXINTADM", "rights": []string{"assets:write", "mce_assets:write"}}).Key,
	}
	site := strings.TrimPrefix(in.siteURL, "http://")
	var sitePort int
	fmt.Sscanf(site[strings.LastIndexByte(site, ':')+1:], "%d", &sitePort)

	var sends []*tomcatSend
	for i, l := range tomcatLegitimate {
		key := "read"
		if l.method != "GET" {
			key = "write"
		}
		sends = append(sends, &tomcatSend{id: fmt.Sprintf("legit-%d", i), method: l.method, target: l.target, key: key})
	}
	nLegit := len(sends)
	corpus := tomcatCorpus(sitePort)
	for i, p := range corpus {
		sends = append(sends,
			&tomcatSend{id: fmt.Sprintf("p%d-r", i), method: "GET", target: p, key: "read"},
			&tomcatSend{id: fmt.Sprintf("p%d-wg", i), method: "GET", target: p, key: "write"},
			&tomcatSend{id: fmt.Sprintf("p%d-wp", i), method: "POST", target: p, key: "write"},
		)
	}

	// Send with a few workers; every request has its own connection.
	work := make(chan *tomcatSend)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range work {
				body := ""
				if s.method == "POST" {
					body = `{"description":"e2e"}`
				}
				s.resp = sendRaw(site, s.method, s.target, [][2]string{{"apikey", keys[s.key]}, {"X-Payload-Id", s.id}}, body)
				if s.resp.err == nil && s.resp.status == 200 {
					var e echo
					if json.Unmarshal([]byte(s.resp.body), &e) == nil && e.Echo {
						s.echo = &e
					}
				}
			}
		}()
	}
	for _, s := range sends {
		work <- s
	}
	close(work)
	wg.Wait()

	// Tomcat writes its access log line once the response is out: wait
	// until every request the servlet answered, and a last one sent
	// directly, are in it.
	if code, _, err := tc.get("/maximo/oslc/ready", "last"); err != nil || code != 200 {
		t.Fatalf("direct request to tomcat: %d %v", code, err)
	}
	var reached map[string]int
	for deadline := time.Now().Add(10 * time.Second); ; {
		reached = tc.accessLog()
		missing := 0
		for _, s := range sends {
			if s.echo != nil && reached[s.id] == 0 {
				missing++
			}
		}
		if missing == 0 && reached["last"] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests the echo servlet answered are not in Tomcat's access log", missing)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Legitimate paths: through, to the right place, untouched.
	for _, s := range sends[:nLegit] {
		l := tomcatLegitimate[mustIndex(s.id)]
		switch {
		case s.resp.err != nil:
			t.Errorf("legitimate %s: %v", s.label(), s.resp.err)
		case s.echo == nil:
			t.Errorf("legitimate %s refused: %d %s", s.label(), s.resp.status, clip(s.resp.body))
		case s.echo.App != l.app || s.echo.Resolved != l.resolved || s.echo.Method != l.method:
			t.Errorf("legitimate %s: Tomcat resolved %s %q in app %q, want %s %q in app %q",
				s.label(), s.echo.Method, s.echo.Resolved, s.echo.App, l.method, l.resolved, l.app)
		}
	}

	// The corpus. An escape is grouped by payload and by where Tomcat
	// took it (the same for every method, as a rule).
	var refused, tomcatRefused, inside, escaped int
	var anomalies []string
	refusedBy := map[int]int{}
	tomcatBy := map[int]int{}
	type escapeKey struct{ target, app, resolved, servletPath string }
	escapes := map[escapeKey][]string{}
	escapedPayloads := map[string]bool{}
	for _, s := range sends[nLegit:] {
		switch {
		case s.resp.err != nil && reached[s.id] == 0:
			// keygate (Go's HTTP server) closed the connection without answering.
			refused++
			refusedBy[0]++
		case s.resp.err != nil:
			anomalies = append(anomalies, fmt.Sprintf("%s reached Tomcat but the answer was lost: %v", s.label(), s.resp.err))
		case s.echo != nil && insideAssets(s.echo.Resolved):
			inside++
		case s.echo != nil:
			escaped++
			escapedPayloads[s.target] = true
			k := escapeKey{s.target, s.echo.App, s.echo.Resolved, s.echo.ServletPath}
			escapes[k] = append(escapes[k], s.method+" "+s.key)
		case reached[s.id] > 0 && keygateError(s.resp.body) != "":
			anomalies = append(anomalies, fmt.Sprintf("%s: keygate refused it (%d %s) yet it reached Tomcat", s.label(), s.resp.status, clip(s.resp.body)))
		case reached[s.id] > 0:
			// Forwarded, and Tomcat refused it itself (400, 404, 500…).
			tomcatRefused++
			tomcatBy[s.resp.status]++
		case s.resp.status >= 400 && s.resp.status < 500:
			refused++
			refusedBy[s.resp.status]++
		default:
			anomalies = append(anomalies, fmt.Sprintf("%s: status %d without reaching Tomcat: %s", s.label(), s.resp.status, clip(s.resp.body)))
		}
	}
	if n := reached["-"]; n > 0 {
		t.Logf("Tomcat logged %d requests without an X-Payload-Id (rejected before reading headers)", n)
	}
	nSends := len(sends) - nLegit
	t.Logf("Tomcat path corpus: %d payloads, %d sends (GET with the read key, GET and POST with the write key); %d legitimate requests passed through", len(corpus), nSends, nLegit)
	t.Logf("  refused by keygate, never reached Tomcat:   %4d sends %v (0: connection closed)", refused, refusedBy)
	t.Logf("  forwarded, then refused by Tomcat itself:   %4d sends %v", tomcatRefused, tomcatBy)
	t.Logf("  reached the servlet inside the assets area: %4d sends", inside)
	t.Logf("  ESCAPED the assets area:                    %4d sends, %d of %d payloads", escaped, len(escapedPayloads), len(corpus))
	for _, a := range anomalies {
		t.Error(a)
	}
	if escaped > 0 {
		lines := make([]string, 0, len(escapes))
		for k, how := range escapes {
			lines = append(lines, fmt.Sprintf("%q [%s] -> app %q resolved %q (servlet path %q)", k.target, strings.Join(how, ", "), k.app, k.resolved, k.servletPath))
		}
		sort.Strings(lines)
		t.Errorf("%d of %d payloads (%d of %d sends) escaped the assets area; payload [sends] -> what Tomcat resolved:\n  %s",
			len(escapedPayloads), len(corpus), escaped, nSends, strings.Join(lines, "\n  "))
	}
}

// keygateError returns the code of a keygate JSON error body, or "".
func keygateError(body string) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(body), &e) != nil {
		return ""
	}
	return e.Error.Code
}

func mustIndex(id string) int {
	var i int
	fmt.Sscanf(id, "legit-%d", &i)
	return i
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// catalinaHome is where Debian's tomcat10 package puts Tomcat.
const catalinaHome = "/usr/share/tomcat10"

// tomcat is a Tomcat 10 started by a test, in its own CATALINA_BASE.
type tomcat struct {
	t       *testing.T
	base    string
	port    int
	cmd     *exec.Cmd
	done    chan struct{}
	console *lockedBuffer
}

// tomcatTools finds what the Tomcat tests need: catalina.sh, javac and the
// servlet API jar. Missing tools skip the test, unless KEYGATE_REQUIRE_TOMCAT=1
// (CI) makes them a failure.
func tomcatTools(t *testing.T) (javac, servletAPI string) {
	t.Helper()
	missing := func(what string) {
		msg := what + " is missing; run .ci/install-tomcat (apt-get install tomcat10 default-jdk-headless)"
		if os.Getenv("KEYGATE_REQUIRE_TOMCAT") == "1" {
			t.Fatal(msg + " (KEYGATE_REQUIRE_TOMCAT=1)")
		}
		t.Skip(msg)
	}
	if _, err := os.Stat(filepath.Join(catalinaHome, "bin", "catalina.sh")); err != nil {
		missing("tomcat10 (" + catalinaHome + "/bin/catalina.sh)")
	}
	javac, err := exec.LookPath("javac")
	if err != nil {
		missing("javac")
	}
	for _, p := range []string{catalinaHome + "/lib/servlet-api.jar", "/usr/share/java/tomcat10-servlet-api.jar"} {
		if _, err := os.Stat(p); err == nil {
			return javac, p
		}
	}
	missing("the Tomcat 10 servlet API jar")
	return "", ""
}

// tomcatConfDir is the configuration Debian ships: /usr/share/tomcat10/etc
// (the pristine copy), else /etc/tomcat10.
func tomcatConfDir(t *testing.T) string {
	t.Helper()
	for _, d := range []string{catalinaHome + "/etc", "/etc/tomcat10"} {
		if _, err := os.Stat(filepath.Join(d, "web.xml")); err == nil {
			return d
		}
	}
	t.Fatal("no Tomcat configuration (web.xml) in " + catalinaHome + "/etc or /etc/tomcat10")
	return ""
}

// tomcatServerXML is Debian's server.xml cut down to what the test needs:
// no shutdown port, no AJP, one HTTP connector on loopback with Tomcat's
// default settings (allowBackslash, encodedSolidusHandling, relaxed chars
// and the rest are left unset on purpose), and an unbuffered access log that
// names each request by its X-Payload-Id so the test knows which reached
// Tomcat.
const tomcatServerXML = `<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Listener className="org.apache.catalina.startup.VersionLoggerListener" />
  <Service name="Catalina">
    <Connector port="%d" address="127.0.0.1" protocol="HTTP/1.1" connectionTimeout="20000" />
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false">
        <Valve className="org.apache.catalina.valves.AccessLogValve" directory="logs"
               prefix="access" suffix=".log" rotatable="false" buffered="false"
               pattern="%%{X-Payload-Id}i %%s &quot;%%r&quot;" />
      </Host>
    </Engine>
  </Service>
</Server>
`

// tomcatWebXML maps the echo servlet to /oslc/*, /api/* and the default
// mapping "/" of its application.
const tomcatWebXML = `<?xml version="1.0" encoding="UTF-8"?>
<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="6.0">
  <servlet>
    <servlet-name>echo</servlet-name>
    <servlet-class>EchoServlet</servlet-class>
  </servlet>
  <servlet-mapping><servlet-name>echo</servlet-name><url-pattern>/oslc/*</url-pattern></servlet-mapping>
  <servlet-mapping><servlet-name>echo</servlet-name><url-pattern>/api/*</url-pattern></servlet-mapping>
  <servlet-mapping><servlet-name>echo</servlet-name><url-pattern>/</url-pattern></servlet-mapping>
</web-app>
`

// startTomcat compiles testdata/tomcat/EchoServlet.java, deploys it as the
// webapps named in apps ("ROOT", "maximo", "other"), starts Tomcat on a free
// loopback port and waits until every application answers.
func startTomcat(t *testing.T, apps ...string) *tomcat {
	t.Helper()
	javac, servletAPI := tomcatTools(t)
	base := t.TempDir()
	for _, d := range []string{"conf", "logs", "work", "temp", "webapps", "classes"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := tomcatConfDir(t)
	entries, err := os.ReadDir(conf)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || e.Name() == "server.xml" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(conf, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(base, "conf", e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tc := &tomcat{t: t, base: base, port: freePort(t), console: &lockedBuffer{}}
	if err := os.WriteFile(filepath.Join(base, "conf", "server.xml"), []byte(fmt.Sprintf(tomcatServerXML, tc.port)), 0o644); err != nil {
		t.Fatal(err)
	}

	src, err := filepath.Abs("testdata/tomcat/EchoServlet.java")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(javac, "-nowarn", "-cp", servletAPI, "-d", filepath.Join(base, "classes"), src).CombinedOutput()
	if err != nil {
		t.Fatalf("javac EchoServlet.java: %v\n%s", err, out)
	}
	class, err := os.ReadFile(filepath.Join(base, "classes", "EchoServlet.class"))
	if err != nil {
		t.Fatal(err)
	}
	for _, app := range apps {
		inf := filepath.Join(base, "webapps", app, "WEB-INF")
		if err := os.MkdirAll(filepath.Join(inf, "classes"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(inf, "classes", "EchoServlet.class"), class, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(inf, "web.xml"), []byte(tomcatWebXML), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	cmd := exec.Command(filepath.Join(catalinaHome, "bin", "catalina.sh"), "run")
	cmd.Env = append(os.Environ(),
		"CATALINA_HOME="+catalinaHome, "CATALINA_BASE="+base, "CATALINA_TMPDIR="+filepath.Join(base, "temp"),
		"CATALINA_PID=", "CATALINA_OUT="+filepath.Join(base, "logs", "catalina.out"),
		// A small, quick JVM: the machine is shared and the test is short.
		"CATALINA_OPTS=-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto",
	)
	cmd.Dir = base
	cmd.Stdout, cmd.Stderr = tc.console, tc.console
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tc.cmd = cmd
	tc.done = make(chan struct{})
	go func() { cmd.Wait(); close(tc.done) }()
	t.Cleanup(tc.stop)

	deadline := time.Now().Add(45 * time.Second)
	for _, app := range apps {
		probe := "/" + app + "/oslc/ready"
		if app == "ROOT" {
			probe = "/ready"
		}
		for {
			select {
			case <-tc.done:
				t.Fatalf("tomcat exited at start:\n%s", tc.console.String())
			default:
			}
			code, body, err := tc.get(probe, "probe")
			if err == nil && code == 200 && strings.Contains(body, `"echo":true`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("tomcat did not serve %s within 45s (last: %d %q %v)\n%s", probe, code, body, err, tc.console.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return tc
}

// get asks Tomcat directly, not through keygate.
func (tc *tomcat) get(path, id string) (int, string, error) {
	req, err := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", tc.port, path), nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("X-Payload-Id", id)
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// stop ends Tomcat's process group (catalina.sh execs java, but be sure).
func (tc *tomcat) stop() {
	select {
	case <-tc.done:
		return
	default:
	}
	pgid := tc.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-tc.done:
	case <-time.After(15 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-tc.done
	}
}

// accessLog returns how many times each X-Payload-Id appears in Tomcat's
// access log ("-" for requests Tomcat logged without one).
func (tc *tomcat) accessLog() map[string]int {
	tc.t.Helper()
	f, err := os.Open(filepath.Join(tc.base, "logs", "access.log"))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]int{}
	}
	if err != nil {
		tc.t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		id, _, _ := strings.Cut(sc.Text(), " ")
		seen[id]++
	}
	return seen
}

// rawResponse is what came back for a request written byte for byte.
type rawResponse struct {
	status int
	header http.Header
	body   string
	err    error
}

// sendRaw writes the request line and headers exactly as given (no URL
// cleaning by Go's client) and reads one response.
func sendRaw(addr, method, target string, header [][2]string, body string) rawResponse {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return rawResponse{err: err}
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, addr)
	for _, h := range header {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	if method != "GET" || body != "" {
		fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return rawResponse{err: err}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return rawResponse{err: err}
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: string(rb), err: err}
}
