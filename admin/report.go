package admin

import (
	"encoding/csv"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/keystore"
)

// ReportRow is one key of GET /usage; Report the whole answer. The CLI
// decodes the same types.
type ReportRow struct {
	ID       string           `json:"id"`
	Name     string           `json:"name"`
	User     string           `json:"user"`
	Requests int64            `json:"requests"`
	By       map[string]int64 `json:"by,omitzero"`
}

// Report is GET /usage: {"keys":[…],"total":N}, and with by=area|status
// "by" on every row and for the whole report.
type Report struct {
	Keys  []ReportRow      `json:"keys"`
	Total int64            `json:"total"`
	By    map[string]int64 `json:"by,omitzero"`
}

// GET /usage?from=&to=&user=&by=area|status&format=json|csv
func (h *handler) report(w http.ResponseWriter, r *http.Request, a keystore.Actor) {
	q := r.URL.Query()
	from, to, err := dayRange(q)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	format := q.Get("format")
	if format != "" && format != "json" && format != "csv" {
		h.fail(w, r, badRequest("format %q must be json or csv", format))
		return
	}
	by := q.Get("by")
	if q.Has("by") && by == "" {
		h.fail(w, r, badRequest("by must be %q or %q", keystore.ByArea, keystore.ByStatus))
		return
	}
	rep, err := h.svc.Report(r.Context(), a, from, to, q.Get("user"), by)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if format == "csv" {
		writeReportCSV(w, rep)
		return
	}
	out := Report{Keys: make([]ReportRow, 0, len(rep.Keys)), Total: rep.Total, By: rep.By}
	for _, k := range rep.Keys {
		out.Keys = append(out.Keys, ReportRow{ID: k.ID, Name: k.Name, User: k.User, Requests: k.Requests, By: k.By})
	}
	writeJSON(w, http.StatusOK, out)
}

// writeReportCSV writes the report as RFC 4180 CSV with a header line; a
// split report has one more column per area or class, in name order.
func writeReportCSV(w http.ResponseWriter, rep keystore.Report) {
	name := "keygate-usage-" + rep.From.Format(time.DateOnly) + "-to-" + rep.To.Format(time.DateOnly) + ".csv"
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	cw := csv.NewWriter(w)
	parts := slices.Sorted(maps.Keys(rep.By))
	header := []string{"id", "name", "user", "requests"}
	for _, p := range parts {
		header = append(header, spreadsheetSafe(p))
	}
	cw.Write(header)
	for _, k := range rep.Keys {
		row := []string{k.ID, spreadsheetSafe(k.Name), spreadsheetSafe(k.User), strconv.FormatInt(k.Requests, 10)}
		for _, p := range parts {
			row = append(row, strconv.FormatInt(k.By[p], 10))
		}
		cw.Write(row)
	}
	cw.Flush()
}

// spreadsheetSafe keeps a spreadsheet from reading a cell as a formula
// (names are chosen by key creators): a leading = + - @ or control
// character gets a ' in front, as OWASP recommends for CSV injection.
func spreadsheetSafe(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}
