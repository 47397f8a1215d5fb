package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// chromiumPath is the browser the tests drive: $KEYGATE_CHROMIUM, else
// Debian's chromium package. Never a browser downloaded by a tool.
func chromiumPath() string {
	if p := os.Getenv("KEYGATE_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// screenshotDir is where the browser tests save their screenshots (a CI
// artefact; see screenshots/README.md).
const screenshotDir = "screenshots"

// browserTab drives one headless Chromium tab.
type browserTab struct {
	t        *testing.T
	ctx      context.Context
	download string // directory downloads land in
}

// problemsScript runs before any page script (CDP-injected scripts are not
// subject to the page's CSP) and records CSP violations and uncaught errors,
// so the test can assert the console runs cleanly under its own policy.
const problemsScript = `
window.__problems = [];
document.addEventListener('securitypolicyviolation', (e) =>
  window.__problems.push('CSP violation: ' + e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') + ' at ' + e.sourceFile + ':' + e.lineNumber));
window.addEventListener('error', (e) => window.__problems.push('uncaught error: ' + e.message + ' at ' + e.filename + ':' + e.lineno));
window.addEventListener('unhandledrejection', (e) => window.__problems.push('unhandled rejection: ' + (e.reason && e.reason.stack || e.reason)));
`

// newBrowser starts headless Chromium with a fresh profile, or skips the
// test when Chromium is not installed.
func newBrowser(t *testing.T) *browserTab {
	t.Helper()
	exe := chromiumPath()
	if _, err := os.Stat(exe); err != nil {
		t.Skipf("browser tests need Chromium at %s (apt-get install chromium, or set KEYGATE_CHROMIUM): %v", exe, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	b := &browserTab{t: t, ctx: ctx, download: t.TempDir()}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument,
		page.AddScriptToEvaluateOnNewDocumentParams{Source: problemsScript}); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: b.download,
	}); err != nil {
		t.Fatalf("setting the download directory: %v", err)
	}
	b.do(chromedp.EmulateViewport(1280, 900))
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return b
}

// do runs actions, failing the test on error.
func (b *browserTab) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.fail("%v", err)
	}
}

func (b *browserTab) fail(format string, args ...any) {
	b.t.Helper()
	// Save what the page looked like, for the CI artefact.
	name := strings.NewReplacer("/", "_", " ", "_").Replace(b.t.Name())
	if png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot()); err == nil {
		os.WriteFile(filepath.Join(screenshotDir, "failure-"+name+".png"), png, 0o644)
	}
	b.t.Fatalf(format, args...)
}

func (b *browserTab) navigate(url string) {
	b.t.Helper()
	b.do(chromedp.Navigate(url))
}

func (b *browserTab) click(sel string) {
	b.t.Helper()
	b.do(chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// typeInto replaces the value of a text field by typing.
func (b *browserTab) typeInto(sel, text string) {
	b.t.Helper()
	b.do(chromedp.WaitVisible(chromedp.CSS(sel)))
	evalJS[bool](b, fmt.Sprintf(`(() => { document.querySelector(%s).value = ''; return true; })()`, jsString(sel)))
	b.do(chromedp.SendKeys(chromedp.CSS(sel), text))
}

// eval evaluates a JavaScript expression and decodes its value into T.
func evalJS[T any](b *browserTab, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.fail("evaluating %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript condition until it is true (10 s at most).
func (b *browserTab) waitFor(what, cond string) {
	b.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool]("!!("+cond+")"))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.fail("waiting for %s (%s): not true after 10s (last error %v); page text:\n%s", what, cond, err, b.text("body"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitText waits until the element's visible text contains want.
func (b *browserTab) waitText(sel, want string) {
	b.t.Helper()
	b.waitFor(fmt.Sprintf("%s to show %q", sel, want),
		fmt.Sprintf(`(() => { const e = document.querySelector(%s); return e && !e.closest('[hidden]') && e.innerText.includes(%s); })()`, jsString(sel), jsString(want)))
}

// text returns the element's visible text ("" if absent).
func (b *browserTab) text(sel string) string {
	b.t.Helper()
	v, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](
		fmt.Sprintf(`(() => { const e = document.querySelector(%s); return e ? e.innerText : ''; })()`, jsString(sel))))
	return v
}

func (b *browserTab) visible(sel string) bool {
	b.t.Helper()
	return evalJS[bool](b, fmt.Sprintf(`(() => { const e = document.querySelector(%s); return !!e && e.getClientRects().length > 0; })()`, jsString(sel)))
}

// noProblems fails on CSP violations and uncaught errors seen on the page.
func (b *browserTab) noProblems(where string) {
	b.t.Helper()
	probs := evalJS[[]string](b, `window.__problems || []`)
	if len(probs) > 0 {
		b.fail("%s: the page reported problems:\n%s", where, strings.Join(probs, "\n"))
	}
}

// screenshot saves a PNG of the page as screenshots/<name>.png.
func (b *browserTab) screenshot(name string, full bool) string {
	b.t.Helper()
	var png []byte
	var err error
	if full {
		png, err = chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	} else {
		png, err = chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	}
	if err != nil {
		b.fail("screenshot %s: %v", name, err)
	}
	p := filepath.Join(screenshotDir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	return p
}

// waitDownload waits for a finished download named name and returns its content.
func (b *browserTab) waitDownload(name string) string {
	b.t.Helper()
	p := filepath.Join(b.download, name)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if data, err := os.ReadFile(p); err == nil && len(data) > 0 {
			return string(data)
		}
		if time.Now().After(deadline) {
			entries, _ := os.ReadDir(b.download)
			b.fail("download %s did not arrive; the download folder holds %v", name, entries)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func jsString(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}
