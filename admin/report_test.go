package admin

import (
	"encoding/csv"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/storetest"
)

func TestUsageReport(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(t *testing.T) keystore.Store) {
		e := newEnv(t, open(t))
		a, _ := e.create(&local, `{"name":"mx-int","user":"MXINTADM","rights":["assets:read"]}`)
		b, _ := e.create(&local, `{"name":"=HYPERLINK(\"http://x\")","user":"REPORTS","rights":["assets:read"]}`)
		c, _ := e.create(&local, `{"name":"idle","user":"MXINTADM","rights":["assets:read"]}`)
		today := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
		if err := e.store.AddUsage(t.Context(), "batch-1", []keystore.UsageDelta{
			{KeyID: a.str("id"), Day: today, Requests: 100, LastUsed: t0},
			{KeyID: a.str("id"), Day: today.AddDate(0, 0, -40), Requests: 1000, LastUsed: t0}, // outside the default range
			{KeyID: b.str("id"), Day: today.AddDate(0, 0, -1), Requests: 5, LastUsed: t0},
			{KeyID: keystore.UserUsageID("MXINTADM"), Day: today, Requests: 100, LastUsed: t0}, // not a key
		}); err != nil {
			t.Fatal(err)
		}
		e.svc.Pending = pendingUsage{a.str("id"): {{KeyID: a.str("id"), Day: today, Requests: 23}}}

		r := e.do(&adminKey, "GET", "/usage", "").want(t, http.StatusOK, "")
		want := map[string]any{"total": float64(128), "keys": []any{
			map[string]any{"id": a.str("id"), "name": "mx-int", "user": "MXINTADM", "requests": float64(123)},
			map[string]any{"id": b.str("id"), "name": `=HYPERLINK("http://x")`, "user": "REPORTS", "requests": float64(5)},
			map[string]any{"id": c.str("id"), "name": "idle", "user": "MXINTADM", "requests": float64(0)},
		}}
		if !reflect.DeepEqual(r.obj, want) {
			t.Fatalf("GET /usage: got %s", r.body)
		}
		r = e.do(&adminKey, "GET", "/usage?user=MXINTADM&from=2026-10-01&to=2026-11-23", "").want(t, http.StatusOK, "")
		if r.obj["total"] != float64(1123) || len(r.obj["keys"].([]any)) != 2 {
			t.Fatalf("GET /usage for one user over 54 days: %s", r.body)
		}

		r = e.do(&adminKey, "GET", "/usage?format=csv", "").want(t, http.StatusOK, "")
		if ct := r.header.Get("Content-Type"); ct != "text/csv; charset=utf-8" || !strings.Contains(r.header.Get("Content-Disposition"), "keygate-usage-2026-10-25-to-2026-11-23.csv") {
			t.Fatalf("CSV headers: %v", r.header)
		}
		rows, err := csv.NewReader(strings.NewReader(string(r.body))).ReadAll()
		if err != nil {
			t.Fatalf("the CSV does not parse: %v\n%s", err, r.body)
		}
		wantRows := [][]string{{"id", "name", "user", "requests"},
			{a.str("id"), "mx-int", "MXINTADM", "123"},
			{b.str("id"), `'=HYPERLINK("http://x")`, "REPORTS", "5"},
			{c.str("id"), "idle", "MXINTADM", "0"}}
		if !reflect.DeepEqual(rows, wantRows) {
			t.Fatalf("CSV rows: got %q, want %q", rows, wantRows)
		}

		// Split by area: per key and for the report; a key without
		// parts has an empty split; another key's parts stay its own.
		if err := e.store.AddUsage(t.Context(), "batch-2", []keystore.UsageDelta{
			{KeyID: keystore.PartUsageID(a.str("id"), keystore.ByArea, "assets"), Day: today, Requests: 80},
			{KeyID: keystore.PartUsageID(a.str("id"), keystore.ByArea, "workorders"), Day: today, Requests: 20},
			{KeyID: keystore.PartUsageID(a.str("id"), keystore.ByStatus, "2xx"), Day: today, Requests: 100},
			{KeyID: keystore.PartUsageID(b.str("id"), keystore.ByArea, "assets"), Day: today.AddDate(0, 0, -1), Requests: 5},
		}); err != nil {
			t.Fatal(err)
		}
		e.svc.Pending = nil
		r = e.do(&adminKey, "GET", "/usage?by=area", "").want(t, http.StatusOK, "")
		want = map[string]any{"total": float64(105), "by": map[string]any{"assets": float64(85), "workorders": float64(20)}, "keys": []any{
			map[string]any{"id": a.str("id"), "name": "mx-int", "user": "MXINTADM", "requests": float64(100), "by": map[string]any{"assets": float64(80), "workorders": float64(20)}},
			map[string]any{"id": b.str("id"), "name": `=HYPERLINK("http://x")`, "user": "REPORTS", "requests": float64(5), "by": map[string]any{"assets": float64(5)}},
			map[string]any{"id": c.str("id"), "name": "idle", "user": "MXINTADM", "requests": float64(0), "by": map[string]any{}},
		}}
		if !reflect.DeepEqual(r.obj, want) {
			t.Fatalf("GET /usage?by=area: got %s", r.body)
		}
		r = e.do(&adminKey, "GET", "/usage?by=area&format=csv", "").want(t, http.StatusOK, "")
		rows, err = csv.NewReader(strings.NewReader(string(r.body))).ReadAll()
		if err != nil {
			t.Fatalf("the CSV does not parse: %v\n%s", err, r.body)
		}
		wantRows = [][]string{{"id", "name", "user", "requests", "assets", "workorders"},
			{a.str("id"), "mx-int", "MXINTADM", "100", "80", "20"},
			{b.str("id"), `'=HYPERLINK("http://x")`, "REPORTS", "5", "5", "0"},
			{c.str("id"), "idle", "MXINTADM", "0", "0", "0"}}
		if !reflect.DeepEqual(rows, wantRows) {
			t.Fatalf("CSV rows by area: got %q, want %q", rows, wantRows)
		}
	})
}

func TestUsageReportErrorsAndScope(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewMemory())
	e.create(&local, `{"name":"mine","user":"ME","rights":["assets:read"]}`)
	e.create(&local, `{"name":"theirs","user":"OTHER","rights":["assets:read"]}`)
	for _, c := range []struct{ query, msg string }{
		{"?format=xml", `format "xml" must be json or csv`},
		{"?from=2026-11-23&to=2026-11-01", "is after"},
		{"?from=2025-01-01&to=2026-11-23", "longer than 366 days"},
		{"?from=yesterday", "from"},
		{"?by=user", `by "user" must be "area" or "status"`},
		{"?by=", `by must be "area" or "status"`},
	} {
		r := e.do(&adminKey, "GET", "/usage"+c.query, "").want(t, http.StatusBadRequest, "invalid_request")
		if !strings.Contains(r.errMessage(), c.msg) {
			t.Errorf("GET /usage%s: %q, want it to say %q", c.query, r.errMessage(), c.msg)
		}
	}
	self := keystore.Actor{ID: "key_self", User: "ME", Rights: keystore.Rights{Self: true, Areas: map[string]keystore.Level{}}}
	r := e.do(&self, "GET", "/usage", "").want(t, http.StatusOK, "")
	if keys := r.obj["keys"].([]any); len(keys) != 1 || keys[0].(map[string]any)["name"] != "mine" {
		t.Fatalf("keys:self report: %s, want its own user's keys only", r.body)
	}
	e.do(&self, "GET", "/usage?user=OTHER", "").want(t, http.StatusForbidden, "forbidden")
}
