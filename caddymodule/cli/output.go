package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/admin"
)

// keyObject is docs/design.md §2's key object, the admin API's own wire type.
type keyObject = admin.Key

type keyPage struct {
	Keys []json.RawMessage `json:"keys"`
	Next *string           `json:"next"`
}

type auditEvent struct {
	At      string          `json:"at"`
	Actor   string          `json:"actor"`
	Action  string          `json:"action"`
	KeyID   string          `json:"key_id"`
	Details json.RawMessage `json:"details"`
}

type auditPage struct {
	Events []auditEvent `json:"events"`
	Next   *string      `json:"next"`
}

type usageReport struct {
	ID   string `json:"id"`
	Days []struct {
		Date     string           `json:"date"`
		Requests int64            `json:"requests"`
		By       map[string]int64 `json:"by"`
	} `json:"days"`
}

// areaList is GET /areas, the admin API's own wire type.
type areaList = admin.AreaList

// whoami is GET /whoami, the admin API's own wire type.
type whoami = admin.Whoami

type licenseInfo struct {
	Limit *int64 `json:"limit"`
	InUse int64  `json:"in_use"`
}

// writeJSON pretty-prints a server response as it came.
func writeJSON(w io.Writer, body []byte) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, body, "", "  "); err != nil {
		return fmt.Errorf("the admin endpoint sent invalid JSON: %v", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// withoutKey drops the "key" member from a key object, for --json --out.
func withoutKey(body []byte) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("the admin endpoint sent invalid JSON: %v", err)
	}
	delete(m, "key")
	return json.Marshal(m)
}

func decode(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("the admin endpoint sent an unexpected response: %v", err)
	}
	return nil
}

// writeKeyDetail prints one key as aligned "field: value" lines.
func writeKeyDetail(w io.Writer, k *keyObject) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(field, value string) { fmt.Fprintf(tw, "%s:\t%s\n", field, clean(value)) }
	row("id", k.ID)
	row("name", k.Name)
	if k.Description != "" {
		row("description", k.Description)
	}
	row("user", k.User)
	row("rights", strings.Join(k.Rights, ","))
	row("status", k.Status)
	row("start", k.Start)
	row("imported", fmt.Sprint(k.Imported))
	row("created_at", k.CreatedAt)
	if k.CreatedBy != "" {
		row("created_by", k.CreatedBy)
	}
	row("expires_at", orText(k.ExpiresAt, "never"))
	if k.RevokedAt != nil {
		row("revoked_at", *k.RevokedAt)
	}
	row("last_used_at", orText(k.LastUsedAt, "never"))
	row("rate", k.Rate.String())
	row("quota", k.Quota.String())
	row("allowed_ips", orList(k.AllowedIPs, "anywhere"))
	row("environments", orList(k.Environments, "none (handlers without an environment)"))
	return tw.Flush()
}

// writeSecret prints the key once, on its own labelled line, with the
// warning that goes with it.
func writeSecret(w io.Writer, key string) {
	fmt.Fprintf(w, "\nAPI key: %s\n\n", clean(key))
	fmt.Fprintln(w, "Store this key now: it is shown only once and cannot be retrieved again.")
	fmt.Fprintln(w, "If it is lost, rotate the key to get a new one.")
}

func writeKeyTable(w io.Writer, keys []keyObject) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tUSER\tSTATUS\tSTART\tRIGHTS\tEXPIRES\tLAST USED")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			cell(k.ID), cell(k.Name), cell(k.User), cell(k.Status), cell(k.Start),
			cell(strings.Join(k.Rights, ",")), shortTime(k.ExpiresAt, "never"), shortTime(k.LastUsedAt, "never"))
	}
	return tw.Flush()
}

func writeAuditTable(w io.Writer, events []auditEvent) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tACTOR\tACTION\tKEY\tDETAILS")
	for _, e := range events {
		at := e.At
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n",
			shortTime(&at, "-"), cell(e.Actor), cell(e.Action), cell(e.KeyID), cell(detailText(e.Details)))
	}
	return tw.Flush()
}

func writeAreaTable(w io.Writer, areas []admin.Area) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "AREA\tLEVEL\tPATHS\tGRAPHQL FIELDS")
	for _, ar := range areas {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cell(ar.Name), clean(orText(ar.Level, "read/write")),
			cell(strings.Join(ar.Paths, " ")), cell(strings.Join(ar.GraphQLFields, ",")))
	}
	return tw.Flush()
}

// writeWhoami prints the calling identity as "field: value" lines.
func writeWhoami(w io.Writer, who *whoami) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(field, value string) { fmt.Fprintf(tw, "%s:\t%s\n", field, cell(value)) }
	row("id", who.ID)
	row("name", who.Name)
	row("user", who.User)
	row("rights", strings.Join(who.Rights, ","))
	return tw.Flush()
}

func writeUsageTable(w io.Writer, u *usageReport) error {
	var total int64
	parts := map[string]int64{}
	for _, d := range u.Days {
		total += d.Requests
		for name, n := range d.By {
			parts[name] += n
		}
	}
	names := slices.Sorted(maps.Keys(parts))
	// Counts are right-aligned; a column's total is the widest of them.
	width := max(len("REQUESTS"), len(strconv.FormatInt(total, 10)))
	widths := make([]int, len(names))
	for i, name := range names {
		widths[i] = max(len(cell(name)), len(strconv.FormatInt(parts[name], 10)))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(first string, n int64, by func(string) int64) {
		fmt.Fprintf(tw, "%s\t%*d", first, width, n)
		for i, name := range names {
			fmt.Fprintf(tw, "\t%*d", widths[i], by(name))
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintf(tw, "DATE\t%*s", width, "REQUESTS")
	for i, name := range names {
		fmt.Fprintf(tw, "\t%*s", widths[i], cell(name))
	}
	fmt.Fprintln(tw)
	for _, d := range u.Days {
		line(cell(d.Date), d.Requests, func(name string) int64 { return d.By[name] })
	}
	line("TOTAL", total, func(name string) int64 { return parts[name] })
	return tw.Flush()
}

// detailText renders an audit event's details compactly: a string as is,
// anything else as compact JSON.
func detailText(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return string(raw)
	}
	return buf.String()
}

// cell prepares a value for a table cell: no control characters, and a
// dash for nothing so columns stay aligned.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return clean(s)
}

func orText(s *string, none string) string {
	if s == nil || *s == "" {
		return none
	}
	return *s
}

// shortTime shows an RFC 3339 time to the minute in UTC, for tables.
func shortTime(s *string, none string) string {
	if s == nil || *s == "" {
		return none
	}
	t, err := time.Parse(time.RFC3339Nano, *s)
	if err != nil {
		return clean(*s)
	}
	return t.UTC().Format("2006-01-02 15:04Z")
}

func orList(l []string, empty string) string {
	if len(l) == 0 {
		return empty
	}
	return strings.Join(l, ",")
}
