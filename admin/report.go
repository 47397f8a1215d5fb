package admin

import (
	"encoding/csv"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/keystore"
)

// ReportRow is one key of GET /usage; Report the whole answer. The CLI
// decodes the same types.
type ReportRow struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	User     string `json:"user"`
	Requests int64  `json:"requests"`
}

// Report is GET /usage: {"keys":[…],"total":N}.
type Report struct {
	Keys  []ReportRow `json:"keys"`
	Total int64       `json:"total"`
}

// GET /usage?from=&to=&user=&format=json|csv
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
	rep, err := h.svc.Report(r.Context(), a, from, to, q.Get("user"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if format == "csv" {
		writeReportCSV(w, rep)
		return
	}
	out := Report{Keys: make([]ReportRow, 0, len(rep.Keys)), Total: rep.Total}
	for _, k := range rep.Keys {
		out.Keys = append(out.Keys, ReportRow{ID: k.ID, Name: k.Name, User: k.User, Requests: k.Requests})
	}
	writeJSON(w, http.StatusOK, out)
}

// writeReportCSV writes the report as RFC 4180 CSV with a header line.
func writeReportCSV(w http.ResponseWriter, rep keystore.Report) {
	name := "keygate-usage-" + rep.From.Format(time.DateOnly) + "-to-" + rep.To.Format(time.DateOnly) + ".csv"
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	cw := csv.NewWriter(w)
	cw.Write([]string{"id", "name", "user", "requests"})
	for _, k := range rep.Keys {
		cw.Write([]string{k.ID, spreadsheetSafe(k.Name), spreadsheetSafe(k.User), strconv.FormatInt(k.Requests, 10)})
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
