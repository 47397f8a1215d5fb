package e2e

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Usage breakdowns by area and by answer class (GET /keys/{id}/usage?by=,
// GET /usage?by=, keygate apikey usage --by) with the real binary: counted
// exactly, unflushed counts included, flushed exactly once on a graceful
// stop. Requests keygate refuses (401, 403, 429) are in no breakdown: the
// Gate counts a request, and its parts, only once it has admitted it
// (keystore.Gate.Judge).

// usagePartsBackend is a Maximo stand-in whose answer depends on the last
// segment of the path: …/notfound gets 404 (Maximo's error body), …/boom
// 500, …/hangup has its connection closed unanswered (Caddy answers 502),
// anything else 200.
func usagePartsBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		b.mu.Lock()
		b.got = append(b.got, received{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, RequestURI: r.RequestURI})
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:] {
		case "notfound":
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]any{"Error": map[string]string{"message": "BMXAA8727E - not found", "statusCode": "404"}})
		case "boom":
			w.WriteHeader(http.StatusInternalServerError)
			json.NewEncoder(w).Encode(map[string]any{"Error": map[string]string{"message": "BMXAA0000E - internal error", "statusCode": "500"}})
		case "hangup":
			c, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				panic(err)
			}
			c.Close()
		default:
			json.NewEncoder(w).Encode(map[string]any{"member": []map[string]string{{"assetnum": "11430"}}})
		}
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// usageParts is what a key's usage should be: its requests, split by area
// and by answer class.
type usageParts struct {
	total  int64
	area   map[string]int64
	status map[string]int64
}

// usagePartsClass is an HTTP status's class, as the breakdown names it.
func usagePartsClass(code int) string {
	if code >= 100 && code < 600 {
		return strconv.Itoa(code/100) + "xx"
	}
	return "other"
}

// usagePartsRefused reports whether a status is a refusal by keygate: the
// stand-in backend never answers 401, 403 or 429.
func usagePartsRefused(code int) bool {
	return code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusTooManyRequests
}

// send makes one request with key and adds its answer to p: a request
// keygate refused adds nothing, an admitted one adds to its area and to
// the class of the status the client got. want is the status the request
// is meant to get, so that every class the test counts really occurs.
func (p *usageParts) send(t *testing.T, method, url, key, area string, want int) {
	t.Helper()
	code, body, _ := call(t, method, url, hdr("apikey", key))
	if code != want {
		t.Fatalf("%s %s: got %d (%.200s), want %d", method, url, code, body, want)
	}
	if usagePartsRefused(code) {
		return
	}
	if p.area == nil {
		p.area, p.status = map[string]int64{}, map[string]int64{}
	}
	p.total++
	p.area[area]++
	p.status[usagePartsClass(code)]++
}

// usagePartsDays is GET /keys/{id}/usage[?by=]. By is a pointer to tell a
// missing "by" from an empty one.
type usagePartsDays struct {
	ID   string `json:"id"`
	Days []struct {
		Date     string            `json:"date"`
		Requests int64             `json:"requests"`
		By       *map[string]int64 `json:"by"`
	} `json:"days"`
}

// usagePartsRead reads key id's usage split by by ("" for none) over the
// default range and sums it over the days (a test crossing UTC midnight
// still adds up). It fails on a malformed answer: a day without "by" when
// split, or with one when not, or a quiet day with parts.
func (in *instance) usagePartsRead(id, by string) (total int64, parts map[string]int64) {
	in.t.Helper()
	path := "/keys/" + id + "/usage"
	if by != "" {
		path += "?by=" + by
	}
	var u usagePartsDays
	if code := in.adminJSON("GET", path, nil, &u); code != 200 {
		in.t.Fatalf("GET %s: got status %d, want 200", path, code)
	}
	if u.ID != id || len(u.Days) < 28 {
		in.t.Fatalf("GET %s: got id %q and %d days, want %q and the last 30 days", path, u.ID, len(u.Days), id)
	}
	parts = map[string]int64{}
	for _, d := range u.Days {
		total += d.Requests
		switch {
		case by == "" && d.By != nil:
			in.t.Fatalf("GET %s: %s has a \"by\" without by=", path, d.Date)
		case by == "":
		case d.By == nil:
			in.t.Fatalf("GET %s: %s has no \"by\" (want {} on a quiet day)", path, d.Date)
		case d.Requests == 0 && len(*d.By) != 0:
			in.t.Fatalf("GET %s: quiet day %s has parts %v", path, d.Date, *d.By)
		default:
			for name, n := range *d.By {
				parts[name] += n
			}
		}
	}
	return total, parts
}

// usagePartsCheck checks that key id's usage, plain and split both ways,
// is exactly want. Counts only grow: a read above want fails at once. One
// below is read again for a while, since a request's class is counted when
// its answer is done, which the client can see a moment before.
func (in *instance) usagePartsCheck(stage, id string, want usageParts) {
	in.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		total, _ := in.usagePartsRead(id, "")
		areaTotal, area := in.usagePartsRead(id, "area")
		statusTotal, status := in.usagePartsRead(id, "status")
		got := fmt.Sprintf("total %d; by area: total %d, %v; by status: total %d, %v", total, areaTotal, area, statusTotal, status)
		wantS := fmt.Sprintf("total %d; by area: total %d, %v; by status: total %d, %v", want.total, want.total, want.area, want.total, want.status)
		if got == wantS {
			return
		}
		above := total > want.total || areaTotal > want.total || statusTotal > want.total
		for _, pair := range [][2]map[string]int64{{area, want.area}, {status, want.status}} {
			for name, n := range pair[0] {
				above = above || n > pair[1][name]
			}
		}
		if above || time.Now().After(deadline) {
			in.t.Fatalf("%s: usage of %s:\n got  %s\n want %s", stage, id, got, wantS)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// usagePartsReport is GET /usage?by=.
type usagePartsReport struct {
	Keys []struct {
		ID       string           `json:"id"`
		Requests int64            `json:"requests"`
		By       map[string]int64 `json:"by"`
	} `json:"keys"`
	Total int64            `json:"total"`
	By    map[string]int64 `json:"by"`
}

// usagePartsCheckReport checks the licence report split by area and by
// status (JSON) and by area (CSV) against want, a key id → its usage: the
// keys' rows, and the report's sums over all its rows.
func (in *instance) usagePartsCheckReport(stage string, want map[string]usageParts) {
	in.t.Helper()
	for _, by := range []string{"area", "status"} {
		var rep usagePartsReport
		if code := in.adminJSON("GET", "/usage?by="+by, nil, &rep); code != 200 {
			in.t.Fatalf("%s: GET /usage?by=%s: got status %d, want 200", stage, by, code)
		}
		sum, sumBy := int64(0), map[string]int64{}
		seen := 0
		for _, row := range rep.Keys {
			sum += row.Requests
			for name, n := range row.By {
				sumBy[name] += n
			}
			w, ok := want[row.ID]
			if !ok {
				continue
			}
			seen++
			wantBy := w.area
			if by == "status" {
				wantBy = w.status
			}
			if row.Requests != w.total || !maps.Equal(row.By, wantBy) || row.By == nil {
				in.t.Fatalf("%s: GET /usage?by=%s: row of %s: got %d %v, want %d %v", stage, by, row.ID, row.Requests, row.By, w.total, wantBy)
			}
		}
		if seen != len(want) {
			in.t.Fatalf("%s: GET /usage?by=%s: %d of the %d keys in the report: %+v", stage, by, seen, len(want), rep)
		}
		if rep.Total != sum || !maps.Equal(rep.By, sumBy) {
			in.t.Fatalf("%s: GET /usage?by=%s: report total %d %v, want the rows' sums %d %v", stage, by, rep.Total, rep.By, sum, sumBy)
		}
	}

	// CSV: id,name,user,requests, then one column per area in name order.
	resp, err := http.Get("http://" + in.adminAddr + "/apikey/usage?by=area&format=csv")
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		in.t.Fatalf("%s: GET /usage?by=area&format=csv: got %d %q, want 200 text/csv", stage, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	records, err := csv.NewReader(resp.Body).ReadAll()
	if err != nil {
		in.t.Fatalf("%s: CSV report: %v", stage, err)
	}
	areas := map[string]bool{}
	for _, w := range want {
		for name := range w.area {
			areas[name] = true
		}
	}
	wantHeader := append([]string{"id", "name", "user", "requests"}, slices.Sorted(maps.Keys(areas))...)
	if len(records) == 0 || !slices.Equal(records[0], wantHeader) {
		in.t.Fatalf("%s: CSV report header: got %q, want %q", stage, records, wantHeader)
	}
	seen := 0
	for _, rec := range records[1:] {
		w, ok := want[rec[0]]
		if !ok {
			continue
		}
		seen++
		wantRec := []string{rec[0], rec[1], rec[2], strconv.FormatInt(w.total, 10)}
		for _, name := range wantHeader[4:] {
			wantRec = append(wantRec, strconv.FormatInt(w.area[name], 10))
		}
		if !slices.Equal(rec, wantRec) {
			in.t.Fatalf("%s: CSV report row: got %q, want %q", stage, rec, wantRec)
		}
	}
	if seen != len(want) {
		in.t.Fatalf("%s: CSV report: %d of the %d keys: %q", stage, seen, len(want), records)
	}
}

// usagePartsCLI checks keygate apikey usage --by area: a column per area,
// the TOTAL line's cells the key's requests and its areas' counts.
func (in *instance) usagePartsCLI(id string, want usageParts) {
	in.t.Helper()
	out, err := exec.Command(keygateBin, "apikey", "usage", id, "--by", "area", "--address", in.adminAddr).CombinedOutput()
	if err != nil {
		in.t.Fatalf("keygate apikey usage --by area: %v\n%s", err, out)
	}
	var header, total []string
	for line := range strings.Lines(string(out)) {
		switch f := strings.Fields(line); {
		case len(f) > 0 && f[0] == "DATE":
			header = f
		case len(f) > 0 && f[0] == "TOTAL":
			total = f
		}
	}
	names := slices.Sorted(maps.Keys(want.area))
	wantHeader := append([]string{"DATE", "REQUESTS"}, names...)
	wantTotal := []string{"TOTAL", strconv.FormatInt(want.total, 10)}
	for _, name := range names {
		wantTotal = append(wantTotal, strconv.FormatInt(want.area[name], 10))
	}
	if !slices.Equal(header, wantHeader) || !slices.Equal(total, wantTotal) {
		in.t.Fatalf("keygate apikey usage --by area: got %q / %q, want %q / %q; output:\n%s", header, total, wantHeader, wantTotal, out)
	}
}

// usageByAreaAndStatus is the test, on the store render (a standard render
// turned to a store) configures.
func usageByAreaAndStatus(t *testing.T, store func(func(int, int, string) string) func(int, int, string) string, env ...string) {
	be := usagePartsBackend(t)
	// No periodic flush while the test runs: until the instance stops,
	// every count is this instance's unflushed one.
	in := start(t, store(standard(be, "flush_interval 1h", "")), env...)
	k := in.createKey(map[string]any{"name": "parts", "user": "MXINTADM", "rights": []string{"assets:read", "workorders:read"}})
	limited := in.createKey(map[string]any{"name": "parts-limited", "user": "MXINTADM", "rights": []string{"assets:read"},
		"rate": map[string]any{"limit": 2, "per": "1h"}})
	assets, workorders := in.siteURL+"/maximo/oslc/os/mxapiasset", in.siteURL+"/maximo/oslc/os/mxapiwodetail"

	var pk, pl usageParts
	// Admitted: answered by the backend (2xx, 404, 500) or by Caddy when
	// the backend hangs up (502).
	for range 5 {
		pk.send(t, "GET", assets, k.Key, "assets", 200)
	}
	for range 2 {
		pk.send(t, "GET", assets+"/notfound", k.Key, "assets", 404)
	}
	pk.send(t, "GET", assets+"/boom", k.Key, "assets", 500)
	for range 3 {
		pk.send(t, "GET", workorders, k.Key, "workorders", 200)
	}
	pk.send(t, "GET", workorders+"/notfound", k.Key, "workorders", 404)
	for range 2 {
		pk.send(t, "GET", workorders+"/hangup", k.Key, "workorders", 502)
	}
	// Refused by keygate: a write with read rights, an area the key lacks,
	// a corrupted key; and the limited key's requests beyond its rate.
	pk.send(t, "POST", assets, k.Key, "assets", 403)
	pk.send(t, "GET", workorders, k.Key[:len(k.Key)-1]+flip(k.Key[len(k.Key)-1]), "workorders", 401)
	pk.send(t, "GET", in.siteURL+"/maximo/oslc/os/mxapilocations", k.Key, "locations", 403)
	for _, want := range []int{200, 200, 429, 429} {
		pl.send(t, "GET", assets, limited.Key, "assets", want)
	}

	// Unflushed.
	in.usagePartsCheck("before any flush", k.ID, pk)
	in.usagePartsCheck("before any flush", limited.ID, pl)
	in.usagePartsCheckReport("before any flush", map[string]usageParts{k.ID: pk, limited.ID: pl})
	in.usagePartsCLI(k.ID, pk)

	// A bad breakdown is a 400 with a JSON error.
	for _, path := range []string{"/keys/" + k.ID + "/usage?by=bogus", "/keys/" + k.ID + "/usage?by=", "/usage?by=bogus", "/usage?by="} {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if code := in.adminJSON("GET", path, nil, &e); code != 400 || e.Error.Code != "invalid_request" || e.Error.Message == "" {
			t.Fatalf("GET %s: got %d %+v, want 400 invalid_request with a message", path, code, e)
		}
	}

	// SIGTERM flushes everything once; the restarted instance reads it
	// back from the store alone.
	in.usageStop()
	in.usageRestart()
	in.usagePartsCheck("after SIGTERM and restart", k.ID, pk)
	in.usagePartsCheck("after SIGTERM and restart", limited.ID, pl)
	in.usagePartsCheckReport("after SIGTERM and restart", map[string]usageParts{k.ID: pk, limited.ID: pl})

	// Stored and unflushed counts together: more requests, then the backend
	// goes down and Caddy answers 502.
	for range 2 {
		pk.send(t, "GET", workorders, k.Key, "workorders", 200)
	}
	pk.send(t, "GET", assets+"/notfound", k.Key, "assets", 404)
	be.srv.Close()
	if c, err := net.DialTimeout("tcp", be.addr(), time.Second); err == nil {
		c.Close()
		t.Fatalf("the backend still accepts connections after Close")
	}
	for range 3 {
		pk.send(t, "GET", assets, k.Key, "assets", 502)
	}
	in.usagePartsCheck("stored and unflushed", k.ID, pk)
	in.usagePartsCheckReport("stored and unflushed", map[string]usageParts{k.ID: pk, limited.ID: pl})
	in.usagePartsCLI(k.ID, pk)

	in.usageStop()
	in.usageRestart()
	in.usagePartsCheck("after a second SIGTERM and restart", k.ID, pk)
	in.usagePartsCheck("after a second SIGTERM and restart", limited.ID, pl)
	in.usagePartsCheckReport("after a second SIGTERM and restart", map[string]usageParts{k.ID: pk, limited.ID: pl})
	t.Logf("key: %+v; limited key: %+v", pk, pl)
}

func TestUsageByAreaAndStatusBolt(t *testing.T) {
	usageByAreaAndStatus(t, func(render func(int, int, string) string) func(int, int, string) string { return render })
}

func TestUsageByAreaAndStatusPostgres(t *testing.T) {
	dsn := usageDatabase(t)
	usageByAreaAndStatus(t, func(render func(int, int, string) string) func(int, int, string) string {
		return usageOnPostgres(t, render, dsn)
	}, "KEYGATE_USAGE_DSN="+dsn)
}
