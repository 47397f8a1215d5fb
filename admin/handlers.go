package admin

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/keygate/keygate/keystore"
)

// POST /keys
func (h *handler) createKey(w http.ResponseWriter, r *http.Request, a keystore.Actor) {
	var spec keystore.KeySpec
	if err := h.decodeObject(w, r, &spec); err != nil {
		h.fail(w, r, err)
		return
	}
	k, secret, err := h.svc.Create(r.Context(), a, spec)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := renderKey(k, h.svc.Clock())
	out.Key = secret
	writeJSON(w, http.StatusCreated, out)
}

// POST /keys/import
func (h *handler) importKey(w http.ResponseWriter, r *http.Request, a keystore.Actor) {
	var spec keystore.ImportSpec
	if err := h.decodeObject(w, r, &spec); err != nil {
		h.fail(w, r, err)
		return
	}
	k, err := h.svc.Import(r.Context(), a, spec)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, renderKey(k, h.svc.Clock()))
}

// GET /keys?user=&name=&status=&limit=&cursor=
func (h *handler) listKeys(w http.ResponseWriter, r *http.Request, a keystore.Actor) {
	q := r.URL.Query()
	f := keystore.ListFilter{User: q.Get("user"), Name: q.Get("name"), Cursor: q.Get("cursor")}
	if s := q.Get("status"); s != "" {
		st, err := keystore.ParseStatus(s)
		if err != nil {
			h.fail(w, r, badRequest("%s", err.Error()))
			return
		}
		f.Status = st
	}
	var err error
	if f.Limit, err = limitParam(q.Get("limit")); err != nil {
		h.fail(w, r, err)
		return
	}
	keys, next, err := h.svc.List(r.Context(), a, f)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	now := h.svc.Clock()
	out := struct {
		Keys []Key   `json:"keys"`
		Next *string `json:"next"`
	}{Keys: make([]Key, 0, len(keys)), Next: cursorJSON(next)}
	for _, k := range keys {
		out.Keys = append(out.Keys, renderKey(k, now))
	}
	writeJSON(w, http.StatusOK, out)
}

// limitParam parses a limit query parameter: "" means the default (0).
func limitParam(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > keystore.MaxPageSize {
		return 0, badRequest("limit %q must be a whole number from 1 to %d", s, keystore.MaxPageSize)
	}
	return n, nil
}

// GET /keys/{id}
func (h *handler) getKey(w http.ResponseWriter, r *http.Request, a keystore.Actor) {
	id, err := pathValue(r, "id")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	k, err := h.svc.Get(r.Context(), a, id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, renderKey(k, h.svc.Clock()))
}

// PATCH /keys/{id}
func (h *handler) updateKey(w http.ResponseWriter, r *http.Request, a keystore.Actor) {
	id, err := pathValue(r, "id")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	p, err := h.decodePatch(w, r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	k, err := h.svc.Update(r.Context(), a, id, p)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, renderKey(k, h.svc.Clock()))
}

// POST /keys/{id}/rotate, body optional: {"grace":"24h"}
func (h *handler) rotateKey(w http.ResponseWriter, r *http.Request, a keystore.Actor) {
	id, err := pathValue(r, "id")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	var spec keystore.RotateSpec
	b, err := h.readBody(w, r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if b != nil {
		if !isObject(b) {
			h.fail(w, r, badRequest("the request body must be a JSON object such as {\"grace\":\"24h\"}, or empty"))
			return
		}
		if err := decodeStrict(b, &spec, ""); err != nil {
			h.fail(w, r, err)
			return
		}
	}
	k, secret, err := h.svc.Rotate(r.Context(), a, id, spec)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := renderKey(k, h.svc.Clock())
	out.Key = secret
	writeJSON(w, http.StatusOK, out)
}

// DELETE /keys/{id}
func (h *handler) revokeKey(w http.ResponseWriter, r *http.Request, a keystore.Actor) {
	id, err := pathValue(r, "id")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	k, err := h.svc.Revoke(r.Context(), a, id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, renderKey(k, h.svc.Clock()))
}

type revokedJSON struct {
	Revoked int `json:"revoked"`
}

// DELETE /users/{user}
func (h *handler) revokeUser(w http.ResponseWriter, r *http.Request, a keystore.Actor) {
	user, err := pathValue(r, "user")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	n, err := h.svc.RevokeUser(r.Context(), a, user)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, revokedJSON{Revoked: n})
}

// POST /keys/revoke-leaked {"keys":["kg_…",…]}
func (h *handler) revokeLeaked(w http.ResponseWriter, r *http.Request, a keystore.Actor) {
	var body struct {
		Keys *[]string `json:"keys"`
	}
	if err := h.decodeObject(w, r, &body); err != nil {
		h.fail(w, r, err)
		return
	}
	if body.Keys == nil {
		h.fail(w, r, badRequest("keys is required: the leaked key values, as a secret scanner reports them"))
		return
	}
	n, err := h.svc.RevokeLeaked(r.Context(), a, *body.Keys)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, revokedJSON{Revoked: n})
}

// GET /keys/{id}/usage?from=YYYY-MM-DD&to=YYYY-MM-DD[&by=area|status]
func (h *handler) usage(w http.ResponseWriter, r *http.Request, a keystore.Actor) {
	id, err := pathValue(r, "id")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	from, to, err := dayRange(q)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	var days []keystore.DayUsage
	by, split := q.Get("by"), q.Has("by")
	if split {
		days, err = h.svc.UsageBy(r.Context(), a, id, from, to, by)
	} else {
		days, err = h.svc.Usage(r.Context(), a, id, from, to)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	type dayJSON struct {
		Date     string `json:"date"`
		Requests int64  `json:"requests"`
		// By is there on every day when asked for, {} on a quiet one.
		By *map[string]int64 `json:"by,omitempty"`
	}
	out := struct {
		ID   string    `json:"id"`
		Days []dayJSON `json:"days"`
	}{ID: id, Days: make([]dayJSON, 0, len(days))}
	for _, d := range days {
		dj := dayJSON{Date: d.Day.Format(time.DateOnly), Requests: d.Requests}
		if split {
			dj.By = &d.By
		}
		out.Days = append(out.Days, dj)
	}
	writeJSON(w, http.StatusOK, out)
}

// GET /license
func (h *handler) license(w http.ResponseWriter, r *http.Request, a keystore.Actor) {
	info, err := h.svc.LicenseStatus(r.Context(), a)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := struct {
		Limit *int `json:"limit"`
		InUse int  `json:"in_use"`
	}{InUse: info.InUse}
	if info.Limit > 0 {
		out.Limit = &info.Limit
	}
	writeJSON(w, http.StatusOK, out)
}

// GET /audit?key=&limit=&cursor=
func (h *handler) audit(w http.ResponseWriter, r *http.Request, a keystore.Actor) {
	q := r.URL.Query()
	f := keystore.AuditFilter{KeyID: q.Get("key"), Cursor: q.Get("cursor")}
	var err error
	if f.Limit, err = limitParam(q.Get("limit")); err != nil {
		h.fail(w, r, err)
		return
	}
	events, next, err := h.svc.Audit(r.Context(), a, f)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := struct {
		Events []auditJSON `json:"events"`
		Next   *string     `json:"next"`
	}{Events: make([]auditJSON, 0, len(events)), Next: cursorJSON(next)}
	for _, e := range events {
		out.Events = append(out.Events, renderAudit(e))
	}
	writeJSON(w, http.StatusOK, out)
}

// Area is one configured area as GET /areas shows it.
type Area struct {
	Name  string   `json:"name"`
	Paths []string `json:"paths"`
	// Level is null for the usual read/write split, "write" for an area
	// where every method needs write.
	Level         *string  `json:"level"`
	GraphQLFields []string `json:"graphql_fields"`
}

// AreaList is the body of GET /areas.
type AreaList struct {
	Areas []Area `json:"areas"`
}

// GET /areas
func (h *handler) areas(w http.ResponseWriter, r *http.Request, a keystore.Actor) {
	infos, err := h.svc.AreaList(a)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := AreaList{Areas: make([]Area, 0, len(infos))}
	for _, ai := range infos {
		ar := Area{Name: ai.Name, Paths: ai.Paths, GraphQLFields: ai.GraphQLFields}
		if ar.Paths == nil {
			ar.Paths = []string{}
		}
		if ar.GraphQLFields == nil {
			ar.GraphQLFields = []string{}
		}
		if ai.Level != "" {
			ar.Level = &ai.Level
		}
		out.Areas = append(out.Areas, ar)
	}
	writeJSON(w, http.StatusOK, out)
}

// Whoami is the body of GET /whoami: the calling key.
type Whoami struct {
	ID     string   `json:"id"`
	Name   string   `json:"name"`
	User   string   `json:"user"`
	Rights []string `json:"rights"`
}

// GET /whoami
func (h *handler) whoami(w http.ResponseWriter, r *http.Request, a keystore.Actor) {
	if a.Local {
		writeJSON(w, http.StatusOK, Whoami{ID: keystore.LocalActorID, Name: keystore.LocalActorID, User: "", Rights: []string{keystore.RightKeysAdmin}})
		return
	}
	k, err := h.svc.Get(r.Context(), a, a.ID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	rights := k.Rights
	if rights == nil {
		rights = []string{}
	}
	writeJSON(w, http.StatusOK, Whoami{ID: k.ID, Name: k.Name, User: k.User, Rights: rights})
}

// dayRange reads the from and to query parameters (YYYY-MM-DD; zero when
// absent, for the Service's defaults).
func dayRange(q url.Values) (from, to time.Time, err error) {
	if s := q.Get("from"); s != "" {
		if from, err = keystore.ParseDay("from", s); err != nil {
			return
		}
	}
	if s := q.Get("to"); s != "" {
		to, err = keystore.ParseDay("to", s)
	}
	return
}
