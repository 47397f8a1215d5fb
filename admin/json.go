package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/keygate/keygate/keystore"
)

// Key is the key object of docs/design.md §2 as it goes over the wire, in its field
// order. The CLI decodes the same type.
type Key struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	User        string   `json:"user"`
	Rights      []string `json:"rights"`
	Start       string   `json:"start"`
	Status      string   `json:"status"`
	Imported    bool     `json:"imported"`
	CreatedAt   string   `json:"created_at"`
	CreatedBy   string   `json:"created_by"`
	ExpiresAt   *string  `json:"expires_at"`
	RevokedAt   *string  `json:"revoked_at"`
	LastUsedAt  *string  `json:"last_used_at"`
	Rate        *Rate    `json:"rate"`
	Quota       *Quota   `json:"quota"`
	// AllowedIPs and Environments are never null: [] means anywhere and
	// only handlers without an environment.
	AllowedIPs   []string `json:"allowed_ips"`
	Environments []string `json:"environments"`
	// Key is the secret: only in the answers of POST /keys and rotate.
	Key string `json:"key,omitempty"`
}

// Rate is docs/design.md §2's rate object: limit requests per a Go duration.
type Rate struct {
	Limit int64  `json:"limit"`
	Per   string `json:"per"`
}

// String renders the rate as the CLI's --rate flag takes it ("100/1m"), or
// "none".
func (r *Rate) String() string {
	if r == nil {
		return "none"
	}
	return fmt.Sprintf("%d/%s", r.Limit, r.Per)
}

// Quota is docs/design.md §2's quota object: limit requests per UTC day or month.
type Quota struct {
	Limit  int64  `json:"limit"`
	Period string `json:"period"`
}

// String renders the quota as the CLI's --quota flag takes it
// ("10000/month"), or "none".
func (q *Quota) String() string {
	if q == nil {
		return "none"
	}
	return fmt.Sprintf("%d/%s", q.Limit, q.Period)
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func formatTimePtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := formatTime(*t)
	return &s
}

// renderKey renders k as of now, never with its digest.
func renderKey(k *keystore.Key, now time.Time) Key {
	out := Key{
		ID:           k.ID,
		Name:         k.Name,
		Description:  k.Description,
		User:         k.User,
		Rights:       append([]string{}, k.Rights...),
		Start:        k.Start,
		Status:       string(k.Status(now)),
		Imported:     k.Imported,
		CreatedAt:    formatTime(k.CreatedAt),
		CreatedBy:    k.CreatedBy,
		ExpiresAt:    formatTimePtr(k.ExpiresAt),
		RevokedAt:    formatTimePtr(k.RevokedAt),
		LastUsedAt:   formatTimePtr(k.LastUsedAt),
		AllowedIPs:   append([]string{}, k.AllowedIPs...),
		Environments: append([]string{}, k.Environments...),
	}
	if k.Rate != nil {
		out.Rate = &Rate{Limit: k.Rate.Limit, Per: keystore.FormatDuration(k.Rate.Per)}
	}
	if k.Quota != nil {
		out.Quota = &Quota{Limit: k.Quota.Limit, Period: k.Quota.Period}
	}
	return out
}

type auditJSON struct {
	At      string         `json:"at"`
	Actor   string         `json:"actor"`
	Action  string         `json:"action"`
	KeyID   *string        `json:"key_id"`
	Details map[string]any `json:"details"`
}

func renderAudit(e keystore.AuditEvent) auditJSON {
	out := auditJSON{At: formatTime(e.At), Actor: e.Actor, Action: e.Action, Details: e.Details}
	if e.KeyID != "" {
		id := e.KeyID
		out.KeyID = &id
	}
	if out.Details == nil {
		out.Details = map[string]any{}
	}
	return out
}

// cursorJSON renders a next cursor, null at the end.
func cursorJSON(next string) *string {
	if next == "" {
		return nil
	}
	return &next
}

// writeJSON writes v as the response. Every response of the admin API is
// JSON and must not be cached (keys and secrets are in it).
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal_error","message":"internal error"}}`)
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// readBody reads the bounded request body. An empty body is nil.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, &requestError{status: http.StatusRequestEntityTooLarge, code: "invalid_request",
			message: fmt.Sprintf("the request body is larger than %d bytes", mbe.Limit)}
	case err != nil:
		return nil, badRequest("reading the request body failed")
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil
	}
	return b, nil
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and
// trailing data, with messages that say what is wrong and where. field
// prefixes the names in messages ("" for the top level).
func decodeStrict(b []byte, v any, field string) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err, field)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("malformed JSON: the body must hold exactly one JSON value")
	}
	return nil
}

// decodeObject decodes a required JSON object body.
func (h *handler) decodeObject(w http.ResponseWriter, r *http.Request, v any) error {
	b, err := h.readBody(w, r)
	if err != nil {
		return err
	}
	if b == nil {
		return badRequest("the request body is empty; send a JSON object")
	}
	if !isObject(b) {
		return badRequest("the request body must be a JSON object")
	}
	return decodeStrict(b, v, "")
}

func isObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '{'
}

func jsonError(err error, field string) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	name := func(f string) string {
		switch {
		case field != "" && f != "":
			return field + "." + f
		case field != "":
			return field
		}
		return f
	}
	switch {
	case errors.As(err, &syn):
		return badRequest("malformed JSON at byte %d: %s", syn.Offset, strings.TrimPrefix(syn.Error(), "json: "))
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return badRequest("malformed JSON: the body ends in the middle of a value")
	case errors.As(err, &typ):
		if n := name(typ.Field); n != "" {
			return badRequest("field %q must be %s, not a JSON %s", n, describeType(typ.Type.String()), typ.Value)
		}
		return badRequest("the value must be %s, not a JSON %s", describeType(typ.Type.String()), typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return badRequest("unknown field %q", name(f))
	}
	return badRequest("malformed JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
}

func describeType(t string) string {
	switch {
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"), strings.HasPrefix(t, "float"):
		return "a number"
	case t == "bool":
		return "true or false"
	case strings.HasPrefix(t, "[]string"):
		return "an array of strings"
	case strings.HasPrefix(t, "[]"):
		return "an array"
	}
	return "an object"
}

// decodePatch decodes a PATCH body field by field, so that null (clear)
// and absent (keep) stay apart and messages name the field.
func (h *handler) decodePatch(w http.ResponseWriter, r *http.Request) (keystore.KeyPatch, error) {
	var p keystore.KeyPatch
	var raw map[string]json.RawMessage
	if err := h.decodeObject(w, r, &raw); err != nil {
		return p, err
	}
	fields := map[string]func(json.RawMessage) error{
		"name":        func(b json.RawMessage) error { return setNullable(&p.Name, b, "name") },
		"description": func(b json.RawMessage) error { return setNullable(&p.Description, b, "description") },
		"rights":      func(b json.RawMessage) error { return setNullable(&p.Rights, b, "rights") },
		"rate":        func(b json.RawMessage) error { return setNullable(&p.Rate, b, "rate") },
		"quota":       func(b json.RawMessage) error { return setNullable(&p.Quota, b, "quota") },
		"expires_at":  func(b json.RawMessage) error { return setNullable(&p.ExpiresAt, b, "expires_at") },
		"allowed_ips": func(b json.RawMessage) error { return setNullable(&p.AllowedIPs, b, "allowed_ips") },
		"environments": func(b json.RawMessage) error {
			return setNullable(&p.Environments, b, "environments")
		},
	}
	names := make([]string, 0, len(raw))
	for n := range raw {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		set, ok := fields[n]
		if !ok {
			return p, badRequest("unknown field %q; PATCH changes name, description, rights, rate, quota, expires_at, allowed_ips and environments", n)
		}
		if err := set(raw[n]); err != nil {
			return p, err
		}
	}
	return p, nil
}

func setNullable[T any](n *keystore.Nullable[T], b json.RawMessage, field string) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		*n = keystore.Null[T]()
		return nil
	}
	var v T
	if err := decodeStrict(b, &v, field); err != nil {
		return err
	}
	*n = keystore.Of(v)
	return nil
}
