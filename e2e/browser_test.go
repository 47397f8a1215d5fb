package e2e

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserConsole drives the web console in headless Chromium against
// the real binary: sign in, create a key and read it from the shown-once
// dialog, use it through the proxy, rotate, revoke, watch the licence bar,
// read the API documentation page and try an operation, sign out, and sign
// in as a keys:self user who cannot see another user's key. It saves
// screenshots of the main screens in e2e/screenshots/ (KEYGATE_UPDATE_DOCS=1
// also copies the key list to docs/console.png).
func TestBrowserConsole(t *testing.T) {
	be := newBackend(t)
	in := start(t, standard(be, "license 10", ""))
	admin := in.createKey(map[string]any{"name": "console-admin", "user": "ADMIN", "rights": []string{"keys:admin", "assets:read"}})
	other := in.createKey(map[string]any{"name": "mx-workorders", "user": "MXINTADM", "rights": []string{"workorders:write"},
		"rate": map[string]any{"limit": 100, "per": "1m"}})
	jdoe := in.createKey(map[string]any{"name": "jdoe-console", "user": "JDOE", "rights": []string{"keys:self", "assets:read"}})
	in.createKey(map[string]any{"name": "jdoe-report", "user": "JDOE", "rights": []string{"assets:read"}, "expires_in": "720h"})
	asset := in.siteURL + "/maximo/oslc/os/mxapiasset"
	ui := in.siteURL + "/keygate/ui"

	b := newBrowser(t)

	// Sign in: a wrong key is refused with a message, the admin key works.
	b.navigate(ui) // redirected to ui/
	b.waitFor("the sign-in form", `location.pathname === '/keygate/ui/' && document.querySelector('#signin-key').getClientRects().length > 0`)
	b.typeInto("#signin-key", "kg_notavalidkey")
	b.click("#signin-submit")
	b.waitText("#signin-error", "was not accepted")
	b.typeInto("#signin-key", admin.Key)
	b.click("#signin-submit")
	b.waitText("#license-text", "4 of 10 in use")
	b.waitText("#keys-body", "mx-workorders")
	b.waitText("#who-text", "console-admin (ADMIN) · keys:admin")
	if got := evalJS[string](b, `sessionStorage.getItem('keygate.console.key')`); got != admin.Key {
		t.Fatalf("sessionStorage: got %q, want the admin key", got)
	}
	if got := evalJS[string](b, `document.cookie + '|' + localStorage.length`); got != "|0" {
		t.Fatalf("the key must live in sessionStorage only; cookie|localStorage.length = %q", got)
	}

	// Filters.
	b.typeInto("#f-user", "JDOE")
	b.click("#filters button[type=submit]")
	b.waitFor("the JDOE filter", `document.querySelectorAll('#keys-body tr').length === 2 && !document.querySelector('#keys-body').innerText.includes('mx-workorders')`)
	b.typeInto("#f-name", "no-such-key")
	b.click("#filters button[type=submit]")
	b.waitText("#keys-empty", "No keys match these filters")
	b.click("#filters-clear")
	b.waitText("#keys-body", "mx-workorders")

	// Create: the server's validation message is shown at the field.
	b.click("#new-key")
	b.waitFor("the create form, focused", `document.activeElement && document.activeElement.id === 'n-name'`)
	b.typeInto("#n-name", "mx-asset-reader")
	b.typeInto("#n-user", "MXINTADM")
	b.typeInto("#n-description", "Asset reads for the nightly sync")
	// The rights editor offers the configured areas (GET /areas), also
	// those no key uses yet, and no free-text area field.
	areas := evalJS[[]string](b, `[...document.querySelectorAll('#rights-body input[value="write"]')].map((i) => i.name.slice(6))`)
	if got := strings.Join(areas, ","); got != "assets,locations,workorders" {
		t.Fatalf("areas offered to keys:admin: got %s, want assets,locations,workorders (the configured areas)", got)
	}
	if got := b.text("#rights-body"); !strings.Contains(got, "/maximo/oslc/os/mxapilocations*") {
		t.Fatalf("rights editor does not show the areas' paths:\n%s", got)
	}
	if b.visible("#add-area") {
		t.Fatalf("free-text area field shown although the configured areas are known")
	}
	b.click(`#rights-body input[name="right:assets"][value="read"]`)
	evalJS[string](b, `(() => { const s = document.querySelector('#n-expiry'); s.value = 'date'; s.dispatchEvent(new Event('change')); document.querySelector('#n-expires-date').value = '2020-01-31'; return ''; })()`)
	b.click("#new-submit")
	b.waitText("#n-expires-error", "not in the future")
	b.waitText("#new-error", "not in the future")
	b.screenshot("create-form-server-error", true)
	evalJS[string](b, `(() => { const s = document.querySelector('#n-expiry'); s.value = ''; s.dispatchEvent(new Event('change')); return ''; })()`)
	b.typeInto("#n-rate", "100")
	b.typeInto("#n-quota", "10000")
	b.typeInto("#n-allowed-ips", "127.0.0.0/8, ::1")
	b.screenshot("create-form", true)
	b.click("#new-submit")

	// The shown-once dialog.
	b.waitFor("the shown-once dialog", `document.querySelector('#secret-dialog').open && document.querySelector('#secret-value').value !== ''`)
	secret := evalJS[string](b, `document.querySelector('#secret-value').value`)
	if !strings.HasPrefix(secret, "kg_") {
		t.Fatalf("shown-once dialog: got key %q, want a kg_ key", secret)
	}
	if id := evalJS[string](b, `document.activeElement.id`); id != "secret-value" {
		t.Fatalf("focus in the shown-once dialog: got #%s, want #secret-value", id)
	}
	b.waitText("#secret-warning", "cannot be shown again")
	b.waitText("#secret-download", "Download mx-asset-reader.apikey")
	b.screenshot("shown-once-dialog", false)
	b.click("#secret-download")
	if got := b.waitDownload("mx-asset-reader.apikey"); got != secret+"\n" {
		t.Fatalf("downloaded file: got %q, want the key and a newline", got)
	}
	// Admitted requests to assets, by the new key and by every key: the
	// usage pages are checked against them.
	keyAssets, allAssets := 0, 0
	for range 3 {
		if code, body, _ := call(t, "GET", asset, hdr("apikey", secret)); code != http.StatusOK {
			t.Fatalf("the new key through the proxy: got %d (%s), want 200", code, body)
		}
		keyAssets++
		allAssets++
	}
	// Closing asks first; "Go back" keeps the dialog open.
	b.click("#secret-close")
	b.waitFor("the close confirmation", `!document.querySelector('#secret-confirm').hidden`)
	b.click("#secret-confirm-no")
	if !evalJS[bool](b, `document.querySelector('#secret-dialog').open`) {
		t.Fatalf("the shown-once dialog closed on \"Go back\"")
	}
	b.click("#secret-close")
	b.click("#secret-confirm-yes")
	b.waitFor("the dialog to close", `!document.querySelector('#secret-dialog').open`)
	if v := evalJS[string](b, `document.querySelector('#secret-value').value`); v != "" {
		t.Fatalf("the key stayed in the page after closing the dialog")
	}

	// Key detail with usage chart and audit trail.
	b.waitText("#detail-title", "mx-asset-reader")
	b.waitText("#detail-facts", "100 requests per 1m")
	b.waitText("#detail-facts", "10000 requests per month")
	b.waitText("#detail-facts", "127.0.0.0/8, ::1/128")
	b.waitText("#usage-total", "3 requests in the last 30 days")
	b.waitFor("a bar in the usage chart", `[...document.querySelectorAll('#usage svg rect.bar')].some((r) => +r.getAttribute('height') > 0)`)
	// Under it, the same 30 days by area: all in assets.
	if got, want := areaBars(b, "#key-area-chart"), fmt.Sprintf("assets=%d", keyAssets); got != want {
		t.Fatalf("the key's requests by area: got %s, want %s", got, want)
	}
	b.waitText("#audit-body", "create")
	// The audit details read as text, not JSON.
	b.waitText("#audit-body", "rate: 100 per 1m")
	b.waitText("#audit-body", "quota: 10000 per month")
	if got := evalJS[string](b, `document.querySelector('#audit-body').textContent`); strings.Contains(got, `{"`) {
		t.Fatalf("the audit column shows raw JSON: %q", got)
	}
	b.screenshot("key-detail", true)
	keyID := evalJS[string](b, `decodeURIComponent(location.hash.slice('#/keys/'.length))`)

	// The licence bar counts the new key.
	b.click("#nav-keys")
	b.waitText("#license-text", "5 of 10 in use")
	b.click(fmt.Sprintf(`#keys-body tr[data-id=%q] a`, keyID))
	b.waitText("#detail-title", "mx-asset-reader")

	// Edit the allowed addresses: from elsewhere the key gets 403, at once.
	b.click("#detail-policy")
	b.waitFor("the policy fields", `document.querySelector('#policy-allowed-ips') && document.querySelector('#policy-allowed-ips').value === '127.0.0.0/8, ::1/128'`)
	evalJS[string](b, `(() => { document.querySelector('#policy-allowed-ips').value = '10.0.0.1/8'; return ''; })()`)
	b.click("#confirm-ok")
	b.waitText("#confirm-error", "did you mean 10.0.0.0/8?")
	evalJS[string](b, `(() => { document.querySelector('#policy-allowed-ips').value = '192.0.2.0/24'; return ''; })()`)
	b.click("#confirm-ok")
	b.waitText("#detail-facts", "192.0.2.0/24")
	if code, body, _ := call(t, "GET", asset, hdr("apikey", secret)); code != http.StatusForbidden {
		t.Fatalf("the key from outside its new allowed_ips: got %d (%s), want 403", code, body)
	}
	b.click("#detail-policy")
	b.waitFor("the policy fields", `document.querySelector('#policy-allowed-ips') && document.querySelector('#policy-allowed-ips').value === '192.0.2.0/24'`)
	evalJS[string](b, `(() => { document.querySelector('#policy-allowed-ips').value = ''; return ''; })()`)
	b.click("#confirm-ok")
	b.waitText("#detail-facts", "anywhere")
	b.waitText("#audit-body", "update")

	// The run-as user's page: active keys and shared limits.
	b.click("#detail-user-link")
	b.waitText("#user-title", "Run-as user MXINTADM")
	b.waitText("#user-facts", "Shared quota")
	b.typeInto("#u-quota", "5000")
	evalJS[string](b, `(() => { document.querySelector('#u-quota-period').value = 'day'; return ''; })()`)
	b.click("#u-save")
	b.waitText("#user-facts", "5000 requests per day")
	var user struct {
		Quota *struct{ Limit int64 } `json:"quota"`
	}
	if code := in.adminJSON("GET", "/users/MXINTADM", nil, &user); code != 200 || user.Quota == nil || user.Quota.Limit != 5000 {
		t.Fatalf("GET /users/MXINTADM after saving in the console: %d %+v", code, user)
	}
	if code, _, h := call(t, "GET", asset, hdr("apikey", secret)); code != http.StatusOK || h.Get("RateLimit-Limit") == "" {
		t.Fatalf("under the user's quota: got %d and RateLimit-Limit %q, want 200 and the header", code, h.Get("RateLimit-Limit"))
	}
	keyAssets++
	allAssets++
	evalJS[string](b, `(() => { document.querySelector('#u-quota').value = ''; return ''; })()`)
	b.click("#u-save")
	b.waitText("#user-facts", "Shared quota")
	b.waitFor("the cleared quota", `[...document.querySelectorAll('#user-facts dd')].every((d) => !d.textContent.includes('5000'))`)
	b.screenshot("user-page", true)
	evalJS[string](b, `(() => { history.back(); return ""; })()`)
	b.waitText("#detail-title", "mx-asset-reader")

	// Requests in a second area by another key, and one more in assets by
	// the admin key, for the Usage page's charts.
	workorders := 0
	for range 2 {
		if code, body, _ := call(t, "GET", in.siteURL+"/maximo/oslc/os/mxapiwodetail", hdr("apikey", other.Key)); code != http.StatusOK {
			t.Fatalf("work orders through the proxy: got %d (%s), want 200", code, body)
		}
		workorders++
	}
	if code, body, _ := call(t, "GET", asset, hdr("apikey", admin.Key)); code != http.StatusOK {
		t.Fatalf("assets with the admin key through the proxy: got %d (%s), want 200", code, body)
	}
	allAssets++

	// The licence report: the key's requests so far, the charts by area
	// and by answer class, and the CSV.
	b.click("#nav-usage")
	b.waitFor("the report row", fmt.Sprintf(`document.querySelector('#report-body tr[data-id=%q]')`, keyID))
	if got, want := evalJS[string](b, fmt.Sprintf(`document.querySelector('#report-body tr[data-id=%q] td.num').textContent`, keyID)), fmt.Sprint(keyAssets); got != want {
		t.Fatalf("requests of the new key in the report: got %s, want %s", got, want)
	}
	b.waitFor("the report's total", fmt.Sprintf(`document.querySelector('#report-total').textContent.startsWith('%d requests by')`, allAssets+workorders))
	// One bar per area with requests, the most first; locations has none.
	if got, want := areaBars(b, "#area-chart"), fmt.Sprintf("assets=%d workorders=%d", allAssets, workorders); got != want {
		t.Fatalf("the Usage page's requests per area: got %s, want %s", got, want)
	}
	if got := evalJS[string](b, `document.querySelector('#area-chart svg').getAttribute('role') + ': ' + document.querySelector('#area-chart svg').getAttribute('aria-label')`); !strings.HasPrefix(got, "img: Requests per area from ") || !strings.HasSuffix(got, fmt.Sprintf(": assets %d, workorders %d.", allAssets, workorders)) {
		t.Fatalf("the area chart's accessible name: got %q", got)
	}
	// Every request was answered 200 by the backend.
	b.waitFor("the answer classes", `document.querySelector('#status-chart rect.status-bar')`)
	classes := evalJS[string](b, `[...document.querySelectorAll('#status-chart rect.status-bar')].map((r) => r.dataset.class + '=' + r.dataset.count).join(' ')`)
	if want := fmt.Sprintf("2xx=%d 3xx=0 4xx=0 5xx=0", allAssets+workorders); classes != want {
		t.Fatalf("the Usage page's answer classes: got %s, want %s", classes, want)
	}
	b.screenshot("usage-report", true)
	// A range without requests: the empty state.
	evalJS[string](b, `(() => { document.querySelector('#r-from').value = '2020-01-01'; document.querySelector('#r-to').value = '2020-01-31'; return ''; })()`)
	b.click("#r-show")
	b.waitText("#area-chart", "No requests in this range")
	b.waitText("#status-chart", "No requests in this range")
	b.waitFor("an empty report", `document.querySelector('#report-total').textContent.startsWith('0 requests by')`)
	evalJS[string](b, `(() => { document.querySelector('#r-from').value = ''; document.querySelector('#r-to').value = ''; return ''; })()`)
	b.click("#r-show")
	b.waitFor("the report again", fmt.Sprintf(`document.querySelector('#report-total').textContent.startsWith('%d requests by') && document.querySelector('#area-chart rect.area-bar')`, allAssets+workorders))
	b.click("#r-csv")
	rows, err := csv.NewReader(strings.NewReader(b.waitDownload("keygate-usage.csv"))).ReadAll()
	if err != nil || len(rows) < 2 || strings.Join(rows[0], ",") != "id,name,user,requests" {
		t.Fatalf("downloaded report: %q, %v", rows, err)
	}
	b.click(fmt.Sprintf(`#report-body tr[data-id=%q] a`, keyID))
	b.waitText("#detail-title", "mx-asset-reader")

	// Rotate: the old key stops working at once.
	b.click("#detail-rotate")
	b.waitText("#confirm-message", "stops working at once")
	b.click("#confirm-ok")
	b.waitFor("the new key", fmt.Sprintf(`document.querySelector('#secret-dialog').open && !['', %s].includes(document.querySelector('#secret-value').value)`, jsString(secret)))
	rotated := evalJS[string](b, `document.querySelector('#secret-value').value`)
	b.waitText("#secret-title", "The new key for mx-asset-reader")
	if code, _, _ := call(t, "GET", asset, hdr("apikey", secret)); code != http.StatusUnauthorized {
		t.Fatalf("the old key after rotation: got %d, want 401", code)
	}
	if code, body, _ := call(t, "GET", asset, hdr("apikey", rotated)); code != http.StatusOK {
		t.Fatalf("the rotated key: got %d (%s), want 200", code, body)
	}
	b.click("#secret-close")
	b.click("#secret-confirm-yes")
	b.waitFor("the dialog to close", `!document.querySelector('#secret-dialog').open`)
	b.waitText("#audit-body", "rotate")

	// Revoke.
	b.click("#detail-revoke")
	b.waitText("#confirm-message", "get 401 from now on")
	b.click("#confirm-ok")
	b.waitFor("the revoked badge", `document.querySelector('#detail-title .badge-revoked')`)
	if code, _, _ := call(t, "GET", asset, hdr("apikey", rotated)); code != http.StatusUnauthorized {
		t.Fatalf("the revoked key: got %d, want 401", code)
	}
	b.click("#nav-keys")
	b.waitText("#license-text", "4 of 10 in use")
	b.waitFor("the revoked row", fmt.Sprintf(`document.querySelector('#keys-body tr[data-id=%q] .badge-revoked')`, keyID))
	list := b.screenshot("key-list", true)
	if os.Getenv("KEYGATE_UPDATE_DOCS") == "1" {
		copyFile(t, list, filepath.Join("..", "docs", "console.png"))
	}
	b.do(chromedp.EmulateViewport(390, 844))
	b.screenshot("key-list-narrow", true)
	b.do(chromedp.EmulateViewport(1280, 900))
	b.noProblems("console")

	// API documentation: Swagger UI, preauthorized with the console's key;
	// try an operation against the live API.
	b.navigate(ui + "/docs.html")
	b.waitFor("Swagger UI", `document.querySelector('.swagger-ui .info .title')`)
	b.waitText(".swagger-ui .info .title", "keygate admin API")
	b.waitFor("the Authorize button", `document.querySelector('.swagger-ui .btn.authorize')`)
	b.waitFor("the operations", `document.querySelector('#operations-reports-getLicense')`)
	b.screenshot("api-docs", false)
	b.click("#operations-reports-getLicense .opblock-summary-control")
	b.click("#operations-reports-getLicense .try-out__btn")
	b.click("#operations-reports-getLicense .execute")
	b.waitText("#operations-reports-getLicense .live-responses-table", `"in_use": 4`)
	b.screenshot("api-docs-try-it", false)
	b.noProblems("API documentation")

	// Sign out forgets the key.
	b.navigate(ui + "/")
	b.waitText("#who-text", "console-admin")
	b.click("#signout")
	b.waitFor("the sign-in form", `document.querySelector('#view-signin').hidden === false`)
	if got := evalJS[int](b, `sessionStorage.length`); got != 0 {
		t.Fatalf("sessionStorage after sign-out: %d items, want 0", got)
	}

	// A keys:self user sees only their own keys and is offered only what
	// they may grant.
	b.typeInto("#signin-key", jdoe.Key)
	b.click("#signin-submit")
	b.waitText("#keys-body", "jdoe-report")
	b.waitText("#who-text", "keys:self")
	if txt := b.text("#keys-body"); strings.Contains(txt, "mx-workorders") || strings.Contains(txt, "console-admin") {
		t.Fatalf("keys:self user sees other users' keys:\n%s", txt)
	}
	if b.visible("#revoke-user-open") {
		t.Fatalf("keys:self user is offered \"revoke all keys of a user\"")
	}
	b.click("#new-key")
	b.waitFor("the create form", `document.activeElement && document.activeElement.id === 'n-name'`)
	if got := evalJS[string](b, `document.querySelector('#n-user').value + (document.querySelector('#n-user').readOnly ? ' (read-only)' : '')`); got != "JDOE (read-only)" {
		t.Fatalf("run-as user for keys:self: got %q, want JDOE (read-only)", got)
	}
	offered := evalJS[[]string](b, `[...document.querySelectorAll('#rights-body input, #admin-rights input')].filter((i) => i.value !== 'none').map((i) => i.value === 'read' || i.value === 'write' ? i.name.slice(6) + ':' + i.value : i.value)`)
	if got := strings.Join(offered, ","); got != "assets:read,keys:self" {
		t.Fatalf("rights offered to keys:self: got %s, want assets:read,keys:self", got)
	}
	evalJS[string](b, fmt.Sprintf(`location.hash = '#/keys/' + %s`, jsString(other.ID)))
	b.waitText("#detail-error", "could not be loaded")
	b.noProblems("keys:self console")
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// areaBars reads the bars of the area chart in box from the page, in their
// order, as "area=count …"; each bar's written count must match its
// data-count.
func areaBars(b *browserTab, box string) string {
	b.t.Helper()
	b.waitFor("the bars of "+box, fmt.Sprintf(`document.querySelector(%s)`, jsString(box+" rect.area-bar")))
	bars := evalJS[[][]string](b, fmt.Sprintf(`[...document.querySelectorAll(%s)].map((r) => [r.dataset.area, r.dataset.count,
		[...r.ownerSVGElement.querySelectorAll('text.bar-count')].find((t) => t.dataset.area === r.dataset.area).textContent])`, jsString(box+" rect.area-bar")))
	var out []string
	for _, bar := range bars {
		if bar[1] != bar[2] {
			b.fail("%s: the bar of %s has data-count %s but reads %q", box, bar[0], bar[1], bar[2])
		}
		out = append(out, bar[0]+"="+bar[1])
	}
	return strings.Join(out, " ")
}
