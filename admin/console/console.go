// Package console is keygate's web console and API documentation page
// (docs/design.md §4 "Web console"): plain HTML, CSS and JavaScript with no build
// step, embedded in the binary, and Swagger UI vendored from npm for the
// documentation page (see THIRD_PARTY.md).
//
// # Mounting
//
// Handler serves paths relative to the admin mount, under "/ui": "/ui"
// (redirected to "ui/"), "/ui/" (the console), "/ui/app.js",
// "/ui/docs.html", … The caller strips the mount prefix, as it does for the
// admin API, and serves these paths without authentication: the assets hold
// no data. The console then calls the admin API relative to its own
// location (the mount is location.pathname without "/ui/…"), sending the
// admin key the user signed in with in the apikey header. The key is kept
// in the tab's sessionStorage only.
//
// # Security
//
// Every response carries a strict Content-Security-Policy (CSP) that allows
// only the console's own scripts, styles and connections, no inline script
// or style, and no framing, plus nosniff and no-referrer. Assets are
// revalidated on every load (ETag) so an upgrade never leaves a stale
// script in a browser.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

// ContentSecurityPolicy is the CSP sent with every console response.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

//go:embed assets
var assets embed.FS

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

var (
	loadOnce sync.Once
	files    map[string]*asset // by path below assets/, e.g. "app.js"
)

// load reads the embedded files once and computes their ETags.
func load() {
	files = map[string]*asset{}
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(p))
		switch path.Ext(p) {
		case "", ".txt":
			ct = "text/plain; charset=utf-8"
		case ".js":
			ct = "text/javascript; charset=utf-8"
		}
		if ct == "" {
			ct = "application/octet-stream"
		}
		files[strings.TrimPrefix(p, "assets/")] = &asset{
			body:        b,
			contentType: ct,
			etag:        `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
		}
		return nil
	})
	if err != nil {
		panic("console: reading embedded assets: " + err.Error())
	}
}

// Handler returns the console handler. It answers GET and HEAD for paths
// under "/ui/" (mount already stripped) and 404 for anything else.
func Handler() http.Handler {
	loadOnce.Do(load)
	return http.HandlerFunc(serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", ContentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed: the console serves GET and HEAD", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	if p == "/ui" {
		// Relative, so it is right whatever the mount is (http.Redirect
		// would make it absolute from the stripped path).
		hd.Set("Location", "ui/")
		w.WriteHeader(http.StatusMovedPermanently)
		return
	}
	name, ok := strings.CutPrefix(p, "/ui/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	if name == "" {
		name = "index.html"
	}
	a := files[name]
	if a == nil || name != path.Clean(name) {
		http.NotFound(w, r)
		return
	}
	hd.Set("Content-Type", a.contentType)
	hd.Set("Cache-Control", "no-cache")
	hd.Set("ETag", a.etag)
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
}
