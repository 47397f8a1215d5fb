package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/storetest"
)

const createBody = `{"name":"mx-integration","user":"MXINTADM","rights":["workorders:write","assets:read"],
	"expires_in":"720h","rate":{"limit":100,"per":"1m"},"quota":{"limit":10000,"period":"month"}}`

func TestUnauthenticated(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewMemory())
	routes := []struct{ method, path string }{
		{"POST", "/keys"}, {"POST", "/keys/import"}, {"GET", "/keys"}, {"GET", "/keys/key_x"},
		{"PATCH", "/keys/key_x"}, {"DELETE", "/keys/key_x"}, {"POST", "/keys/key_x/rotate"},
		{"GET", "/keys/key_x/usage"}, {"POST", "/keys/revoke-leaked"}, {"DELETE", "/users/U"},
		{"GET", "/license"}, {"GET", "/audit"},
	}
	for _, rt := range routes {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			r := e.do(noActor, rt.method, rt.path, `{}`)
			r.want(t, http.StatusUnauthorized, "invalid_api_key")
			if !bytes.Equal(r.body, UnauthorizedBody) {
				t.Fatalf("got body %q, want %q", r.body, UnauthorizedBody)
			}
			if got := r.header.Get("WWW-Authenticate"); got != `ApiKey realm="keygate"` {
				t.Fatalf("got WWW-Authenticate %q, want ApiKey realm=\"keygate\"", got)
			}
		})
	}
	rec := httptest.NewRecorder()
	WriteUnauthorized(rec)
	if rec.Code != http.StatusUnauthorized || !bytes.Equal(rec.Body.Bytes(), UnauthorizedBody) {
		t.Fatalf("WriteUnauthorized: got %d %q, want 401 %q", rec.Code, rec.Body, UnauthorizedBody)
	}
}

func TestCreateKey(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(t *testing.T) keystore.Store) {
		e := newEnv(t, open(t))
		r, secret := e.create(&adminKey, createBody)
		if got := r.header.Get("Cache-Control"); got != "no-store" {
			t.Fatalf("got Cache-Control %q, want no-store", got)
		}
		if !keystore.ChecksumValid(secret) || !strings.HasPrefix(secret, "kg_") {
			t.Fatalf("got key %q, want a valid kg_ key", secret)
		}
		wantFields := []string{"allowed_ips", "created_at", "created_by", "description", "environments", "expires_at", "id", "imported", "key",
			"last_used_at", "name", "quota", "rate", "revoked_at", "rights", "start", "status", "user"}
		var got []string
		for k := range r.obj {
			got = append(got, k)
		}
		sort.Strings(got)
		if !reflect.DeepEqual(got, wantFields) {
			t.Fatalf("got fields %v, want %v", got, wantFields)
		}
		want := map[string]any{
			"name": "mx-integration", "description": "", "user": "MXINTADM",
			"rights": []any{"assets:read", "workorders:write"}, "start": secret[:7], "status": "active",
			"imported": false, "created_at": "2026-11-23T10:00:00Z", "created_by": "key_admin",
			"expires_at": "2026-12-23T10:00:00Z", "revoked_at": nil, "last_used_at": nil,
			"rate":  map[string]any{"limit": float64(100), "per": "1m"},
			"quota": map[string]any{"limit": float64(10000), "period": "month"},
		}
		for k, v := range want {
			if !reflect.DeepEqual(r.obj[k], v) {
				t.Errorf("%s: got %#v, want %#v", k, r.obj[k], v)
			}
		}
		id := r.str("id")
		if !strings.HasPrefix(id, "key_") {
			t.Fatalf("got id %q, want key_…", id)
		}
		// Never shown again.
		g := e.do(&adminKey, "GET", "/keys/"+id, "").want(t, http.StatusOK, "")
		if _, ok := g.obj["key"]; ok {
			t.Fatalf("GET shows the key: %s", g.body)
		}
		if bytes.Contains(g.body, []byte(secret)) {
			t.Fatalf("GET body contains the secret")
		}
		// Stored one-way.
		k, err := e.store.LookupDigest(t.Context(), keystore.DigestOf(secret))
		if err != nil || k.ID != id {
			t.Fatalf("got %v, %v, want key %s by digest", k, err, id)
		}
		// Local endpoint is recorded as "local".
		r, _ = e.create(&local, `{"name":"n","user":"U","rights":["assets:read"]}`)
		if r.str("created_by") != "local" || r.obj["rate"] != nil || r.obj["expires_at"] != nil {
			t.Fatalf("got %s, want created_by local, no rate, no expiry", r.body)
		}
	})
}

func TestCreateKeyErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		body   string
		status int
		code   string
		msg    string
	}{
		{"empty body", ``, 400, "invalid_request", "body is empty"},
		{"malformed", `{"name":`, 400, "invalid_request", "malformed JSON"},
		{"syntax", `{"name" "x"}`, 400, "invalid_request", "malformed JSON at byte"},
		{"trailing data", `{"name":"a","user":"U","rights":["assets:read"]} {}`, 400, "invalid_request", "exactly one JSON value"},
		{"not an object", `["a"]`, 400, "invalid_request", "must be a JSON object"},
		{"unknown field", `{"name":"a","user":"U","rights":["assets:read"],"owner":"x"}`, 400, "invalid_request", `unknown field "owner"`},
		{"wrong type", `{"name":"a","user":"U","rights":["assets:read"],"rate":{"limit":"many","per":"1s"}}`, 400, "invalid_request", `"rate.limit" must be a number`},
		{"rights not array", `{"name":"a","user":"U","rights":"assets:read"}`, 400, "invalid_request", `"rights" must be an array of strings`},
		{"unknown nested field", `{"name":"a","user":"U","rights":["assets:read"],"quota":{"limit":1,"period":"day","x":1}}`, 400, "invalid_request", `unknown field "x"`},
		{"no name", `{"user":"U","rights":["assets:read"]}`, 400, "invalid_request", "name is required"},
		{"no user", `{"name":"a","rights":["assets:read"]}`, 400, "invalid_request", "user is required"},
		{"no rights", `{"name":"a","user":"U","rights":[]}`, 400, "invalid_request", "rights must not be empty"},
		{"unknown area", `{"name":"a","user":"U","rights":["billing:read"]}`, 400, "invalid_request", `unknown area "billing"; configured areas: assets, workorders`},
		{"both expiries", `{"name":"a","user":"U","rights":["assets:read"],"expires_at":"2030-01-01T00:00:00Z","expires_in":"1h"}`, 400, "invalid_request", "not both"},
		{"bad expires_at", `{"name":"a","user":"U","rights":["assets:read"],"expires_at":"2030-01-01"}`, 400, "invalid_request", "RFC 3339"},
		{"bad rate", `{"name":"a","user":"U","rights":["assets:read"],"rate":{"limit":1,"per":"1 minute"}}`, 400, "invalid_request", "rate.per"},
		{"bad quota", `{"name":"a","user":"U","rights":["assets:read"],"quota":{"limit":1,"period":"year"}}`, 400, "invalid_request", "quota.period"},
		{"too large", `{"name":"` + strings.Repeat("a", DefaultMaxBodyBytes) + `"}`, 413, "invalid_request", "larger than"},
	}
	e := newEnv(t, storetest.NewMemory())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(&adminKey, "POST", "/keys", tt.body).want(t, tt.status, tt.code)
			if !strings.Contains(r.errMessage(), tt.msg) {
				t.Fatalf("got message %q, want it to contain %q", r.errMessage(), tt.msg)
			}
		})
	}
	if n, _ := e.store.CountActive(t.Context(), t0); n != 0 {
		t.Fatalf("got %d keys stored after refusals, want 0", n)
	}
}

func TestImportKey(t *testing.T) {
	t.Parallel()
	const strong = "Maximo-Integration-Key-2026-abcdefXYZ"
	digest := keystore.DigestOf("Legacy-System-Key-With-Variety-0123456").Hex()
	eachStore(t, func(t *testing.T, open func(t *testing.T) keystore.Store) {
		e := newEnv(t, open(t))
		r := e.do(&adminKey, "POST", "/keys/import", `{"name":"mx","user":"MXINTADM","rights":["assets:read"],"apikey":"`+strong+`"}`).
			want(t, http.StatusCreated, "")
		if r.obj["imported"] != true || r.str("start") != "Maxi" {
			t.Fatalf("got %s, want imported with start Maxi", r.body)
		}
		if _, ok := r.obj["key"]; ok || bytes.Contains(r.body, []byte(strong)) {
			t.Fatalf("import answer shows the key: %s", r.body)
		}
		if k, err := e.store.LookupDigest(t.Context(), keystore.DigestOf(strong)); err != nil || k.ID != r.str("id") {
			t.Fatalf("imported key not found by digest: %v", err)
		}
		r = e.do(&adminKey, "POST", "/keys/import", `{"name":"legacy","user":"U","rights":["assets:read"],"sha256":"`+digest+`"}`).
			want(t, http.StatusCreated, "")
		if r.obj["imported"] != true || r.str("start") != "" {
			t.Fatalf("got %s, want imported with empty start", r.body)
		}
		tests := []struct {
			name, body string
			status     int
			code, msg  string
		}{
			{"duplicate value", `{"name":"a","user":"U","rights":["assets:read"],"apikey":"` + strong + `"}`, 409, "conflict", "already stored"},
			{"duplicate digest", `{"name":"a","user":"U","rights":["assets:read"],"sha256":"` + digest + `"}`, 409, "conflict", "already stored"},
			{"weak", `{"name":"a","user":"U","rights":["assets:read"],"apikey":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}`, 400, "invalid_request", "character classes"},
			{"short", `{"name":"a","user":"U","rights":["assets:read"],"apikey":"Short-Key-1"}`, 400, "invalid_request", "at least 32"},
			{"bad digest", `{"name":"a","user":"U","rights":["assets:read"],"sha256":"abc"}`, 400, "invalid_request", "64 hex"},
			{"both", `{"name":"a","user":"U","rights":["assets:read"],"apikey":"` + strong + `","sha256":"` + digest + `"}`, 400, "invalid_request", "not both"},
			{"neither", `{"name":"a","user":"U","rights":["assets:read"]}`, 400, "invalid_request", "apikey"},
			{"unknown field", `{"name":"a","user":"U","rights":["assets:read"],"key":"x"}`, 400, "invalid_request", `unknown field "key"`},
		}
		for _, tt := range tests {
			r := e.do(&adminKey, "POST", "/keys/import", tt.body).want(t, tt.status, tt.code)
			if !strings.Contains(r.errMessage(), tt.msg) {
				t.Fatalf("%s: got message %q, want it to contain %q", tt.name, r.errMessage(), tt.msg)
			}
		}
	})
}

func TestListKeys(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(t *testing.T) keystore.Store) {
		e := newEnv(t, open(t))
		var ids []string
		for i := 0; i < 5; i++ {
			user := "A"
			if i%2 == 1 {
				user = "B"
			}
			r, _ := e.create(&local, fmt.Sprintf(`{"name":"k%d","user":%q,"rights":["assets:read"],"expires_in":"%dh"}`, i, user, i+1))
			ids = append(ids, r.str("id"))
		}
		e.do(&local, "DELETE", "/keys/"+ids[4], "").want(t, http.StatusOK, "")
		e.clock.Add(90 * time.Minute) // k0 expired

		listIDs := func(r *result) []string {
			var out []string
			for _, k := range r.obj["keys"].([]any) {
				out = append(out, k.(map[string]any)["id"].(string))
			}
			return out
		}
		tests := []struct {
			query string
			want  []string
		}{
			{"", ids},
			{"?user=B", []string{ids[1], ids[3]}},
			{"?name=k2", []string{ids[2]}},
			{"?status=active", ids[1:4]},
			{"?status=expired", ids[:1]},
			{"?status=revoked", ids[4:]},
			{"?user=A&status=active", []string{ids[2]}},
			{"?user=nobody", nil},
		}
		for _, tt := range tests {
			r := e.do(&adminKey, "GET", "/keys"+tt.query, "").want(t, http.StatusOK, "")
			if got := listIDs(r); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s: got %v, want %v", tt.query, got, tt.want)
			}
			if r.obj["next"] != nil {
				t.Errorf("%s: got next %v, want null", tt.query, r.obj["next"])
			}
			if bytes.Contains(r.body, []byte(`"key":`)) {
				t.Errorf("%s: list shows a secret", tt.query)
			}
		}
		// Pages of 2.
		var got []string
		q := "/keys?limit=2"
		for page := 0; page < 10; page++ {
			r := e.do(&adminKey, "GET", q, "").want(t, http.StatusOK, "")
			got = append(got, listIDs(r)...)
			next, _ := r.obj["next"].(string)
			if next == "" {
				break
			}
			q = "/keys?limit=2&cursor=" + next
		}
		if !reflect.DeepEqual(got, ids) {
			t.Fatalf("paged: got %v, want %v", got, ids)
		}
		for _, bad := range []string{"?limit=0", "?limit=1001", "?limit=x", "?status=gone", "?cursor=!!garbage!!"} {
			r := e.do(&adminKey, "GET", "/keys"+bad, "").want(t, http.StatusBadRequest, "invalid_request")
			if r.errMessage() == "" {
				t.Errorf("%s: empty message", bad)
			}
		}
	})
}

func TestGetKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewMemory())
	r, _ := e.create(&local, `{"name":"n","user":"U","rights":["assets:read"]}`)
	g := e.do(&adminKey, "GET", "/keys/"+r.str("id"), "").want(t, http.StatusOK, "")
	if g.str("id") != r.str("id") || g.str("name") != "n" {
		t.Fatalf("got %s, want the key", g.body)
	}
	g = e.do(&adminKey, "GET", "/keys/key_missing", "").want(t, http.StatusNotFound, "not_found")
	if !strings.Contains(g.errMessage(), "key_missing") {
		t.Fatalf("got message %q, want it to name the id", g.errMessage())
	}
}

func TestUpdateKey(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(t *testing.T) keystore.Store) {
		e := newEnv(t, open(t))
		r, secret := e.create(&local, createBody)
		id := r.str("id")
		u := e.do(&adminKey, "PATCH", "/keys/"+id, `{"name":"renamed","description":"for MX","rights":["assets:write"],"rate":{"limit":5,"per":"1s"},"quota":null,"expires_at":"2027-01-01T00:00:00Z"}`).
			want(t, http.StatusOK, "")
		want := map[string]any{"name": "renamed", "description": "for MX", "rights": []any{"assets:write"},
			"rate": map[string]any{"limit": float64(5), "per": "1s"}, "quota": nil, "expires_at": "2027-01-01T00:00:00Z"}
		for k, v := range want {
			if !reflect.DeepEqual(u.obj[k], v) {
				t.Errorf("%s: got %#v, want %#v", k, u.obj[k], v)
			}
		}
		if e.inv.count(keystore.DigestOf(secret)) == 0 {
			t.Fatal("PATCH did not invalidate the key's digest")
		}
		// Absent fields are kept; null clears.
		u = e.do(&adminKey, "PATCH", "/keys/"+id, `{"rate":null,"expires_at":null}`).want(t, http.StatusOK, "")
		if u.obj["rate"] != nil || u.obj["expires_at"] != nil || u.str("name") != "renamed" {
			t.Fatalf("got %s, want rate and expiry cleared, name kept", u.body)
		}
		tests := []struct {
			name, id, body string
			status         int
			code, msg      string
		}{
			{"empty object", id, `{}`, 400, "invalid_request", "nothing to change"},
			{"no body", id, ``, 400, "invalid_request", "body is empty"},
			{"unknown field", id, `{"user":"OTHER"}`, 400, "invalid_request", `unknown field "user"`},
			{"wrong type", id, `{"name":5}`, 400, "invalid_request", `"name" must be a string`},
			{"nested wrong type", id, `{"rate":{"limit":"x","per":"1s"}}`, 400, "invalid_request", `"rate.limit" must be a number`},
			{"nested unknown", id, `{"quota":{"limit":1,"period":"day","extra":true}}`, 400, "invalid_request", `unknown field "quota.extra"`},
			{"null name", id, `{"name":null}`, 400, "invalid_request", "name cannot be null"},
			{"bad rights", id, `{"rights":["nope:read"]}`, 400, "invalid_request", "unknown area"},
			{"malformed", id, `{"name":"x"`, 400, "invalid_request", "malformed JSON"},
			{"missing key", "key_missing", `{"name":"x"}`, 404, "not_found", "key_missing"},
		}
		for _, tt := range tests {
			r := e.do(&adminKey, "PATCH", "/keys/"+tt.id, tt.body).want(t, tt.status, tt.code)
			if !strings.Contains(r.errMessage(), tt.msg) {
				t.Errorf("%s: got message %q, want it to contain %q", tt.name, r.errMessage(), tt.msg)
			}
		}
		e.do(&adminKey, "DELETE", "/keys/"+id, "").want(t, http.StatusOK, "")
		e.do(&adminKey, "PATCH", "/keys/"+id, `{"name":"x"}`).want(t, http.StatusConflict, "conflict")
	})
}

func TestRotateKey(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(t *testing.T) keystore.Store) {
		e := newEnv(t, open(t))
		ctx := context.Background()
		r, old := e.create(&local, `{"name":"n","user":"U","rights":["assets:read"]}`)
		id := r.str("id")

		// With grace: both work until it ends.
		rot := e.do(&adminKey, "POST", "/keys/"+id+"/rotate", `{"grace":"24h"}`).want(t, http.StatusOK, "")
		if rot.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("got Cache-Control %q, want no-store", rot.header.Get("Cache-Control"))
		}
		secret := rot.str("key")
		if !keystore.ChecksumValid(secret) || secret == old || rot.str("id") != id || rot.str("start") != secret[:7] {
			t.Fatalf("got %s, want a new valid key for the same id", rot.body)
		}
		k, err := e.store.GetKey(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		now := e.clock.Now()
		if !k.Accepts(keystore.DigestOf(secret), now) || !k.Accepts(keystore.DigestOf(old), now) {
			t.Fatal("got a secret refused during the grace, want both accepted")
		}
		if k.Accepts(keystore.DigestOf(old), now.Add(24*time.Hour)) {
			t.Fatal("got the old secret accepted after the grace")
		}
		if e.inv.count(keystore.DigestOf(old)) == 0 {
			t.Fatal("rotation did not invalidate the old digest")
		}

		// Without body: the old secret stops at once, and so does the one
		// before it.
		rot2 := e.do(&adminKey, "POST", "/keys/"+id+"/rotate", "").want(t, http.StatusOK, "")
		k, _ = e.store.GetKey(ctx, id)
		for _, s := range []string{old, secret} {
			if k.Accepts(keystore.DigestOf(s), now) {
				t.Fatalf("got an earlier secret accepted after a rotation without grace")
			}
		}
		if !k.Accepts(keystore.DigestOf(rot2.str("key")), now) {
			t.Fatal("got the new secret refused")
		}

		tests := []struct {
			name, id, body string
			status         int
			code, msg      string
		}{
			{"bad grace", id, `{"grace":"1 day"}`, 400, "invalid_request", "Go duration"},
			{"grace too long", id, `{"grace":"8760h"}`, 400, "invalid_request", "between"},
			{"unknown field", id, `{"grace":"1h","now":true}`, 400, "invalid_request", `unknown field "now"`},
			{"not an object", id, `"1h"`, 400, "invalid_request", "JSON object"},
			{"malformed", id, `{"grace":`, 400, "invalid_request", "malformed JSON"},
			{"missing", "key_missing", ``, 404, "not_found", "key_missing"},
		}
		for _, tt := range tests {
			r := e.do(&adminKey, "POST", "/keys/"+tt.id+"/rotate", tt.body).want(t, tt.status, tt.code)
			if !strings.Contains(r.errMessage(), tt.msg) {
				t.Errorf("%s: got message %q, want it to contain %q", tt.name, r.errMessage(), tt.msg)
			}
		}
		e.do(&adminKey, "DELETE", "/keys/"+id, "").want(t, http.StatusOK, "")
		e.do(&adminKey, "POST", "/keys/"+id+"/rotate", "").want(t, http.StatusConflict, "conflict")
	})
}

func TestRevokeKey(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(t *testing.T) keystore.Store) {
		e := newEnv(t, open(t))
		r, secret := e.create(&local, `{"name":"n","user":"U","rights":["assets:read"]}`)
		id := r.str("id")
		d1 := e.do(&adminKey, "DELETE", "/keys/"+id, "").want(t, http.StatusOK, "")
		if d1.str("status") != "revoked" || d1.str("revoked_at") != "2026-11-23T10:00:00Z" {
			t.Fatalf("got %s, want revoked at t0", d1.body)
		}
		if e.inv.count(keystore.DigestOf(secret)) < 2 { // create + revoke
			t.Fatal("revoke did not invalidate the digest")
		}
		e.clock.Add(time.Hour)
		d2 := e.do(&adminKey, "DELETE", "/keys/"+id, "").want(t, http.StatusOK, "")
		if d2.str("revoked_at") != d1.str("revoked_at") {
			t.Fatalf("got revoked_at %s on the second revoke, want %s", d2.str("revoked_at"), d1.str("revoked_at"))
		}
		// Still listed.
		l := e.do(&adminKey, "GET", "/keys?status=revoked", "").want(t, http.StatusOK, "")
		if n := len(l.obj["keys"].([]any)); n != 1 {
			t.Fatalf("got %d revoked keys listed, want 1", n)
		}
		e.do(&adminKey, "DELETE", "/keys/key_missing", "").want(t, http.StatusNotFound, "not_found")
	})
}

func TestRevokeUser(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(t *testing.T) keystore.Store) {
		e := newEnv(t, open(t))
		var secrets []string
		for _, u := range []string{"MX INT", "MX INT", "OTHER"} {
			_, s := e.create(&local, fmt.Sprintf(`{"name":"n","user":%q,"rights":["assets:read"]}`, u))
			secrets = append(secrets, s)
		}
		r := e.do(&adminKey, "DELETE", "/users/MX%20INT", "").want(t, http.StatusOK, "")
		if !reflect.DeepEqual(r.obj, map[string]any{"revoked": float64(2)}) {
			t.Fatalf("got %s, want {\"revoked\":2}", r.body)
		}
		for i, s := range secrets {
			k, err := e.store.LookupDigest(t.Context(), keystore.DigestOf(s))
			if err != nil {
				t.Fatal(err)
			}
			if revoked := k.RevokedAt != nil; revoked != (i < 2) {
				t.Fatalf("key %d: got revoked %v, want %v", i, revoked, i < 2)
			}
			if i < 2 && e.inv.count(keystore.DigestOf(s)) < 2 {
				t.Fatalf("key %d: digest not invalidated", i)
			}
		}
		r = e.do(&adminKey, "DELETE", "/users/MX%20INT", "").want(t, http.StatusOK, "")
		if r.obj["revoked"] != float64(0) {
			t.Fatalf("got %s on the second call, want 0", r.body)
		}
	})
}

func TestRevokeLeaked(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(t *testing.T) keystore.Store) {
		e := newEnv(t, open(t))
		_, s1 := e.create(&local, `{"name":"a","user":"U","rights":["assets:read"]}`)
		_, s2 := e.create(&local, `{"name":"b","user":"U","rights":["assets:read"]}`)
		_, s3 := e.create(&local, `{"name":"c","user":"U","rights":["assets:read"]}`)
		unknown, _ := keystore.GenerateKey("kg")
		body, _ := json.Marshal(map[string]any{"keys": []string{s1, s2, s1, unknown, "garbage"}})
		r := e.do(&adminKey, "POST", "/keys/revoke-leaked", string(body)).want(t, http.StatusOK, "")
		if !reflect.DeepEqual(r.obj, map[string]any{"revoked": float64(2)}) {
			t.Fatalf("got %s, want {\"revoked\":2}", r.body)
		}
		k3, _ := e.store.LookupDigest(t.Context(), keystore.DigestOf(s3))
		if k3.RevokedAt != nil {
			t.Fatal("an unreported key was revoked")
		}
		e.do(&adminKey, "POST", "/keys/revoke-leaked", `{"keys":[]}`).want(t, http.StatusOK, "")
		for _, bad := range []string{`{}`, `{"keys":"kg_x"}`, `{"values":[]}`, ``} {
			e.do(&adminKey, "POST", "/keys/revoke-leaked", bad).want(t, http.StatusBadRequest, "invalid_request")
		}
		// Secrets are never logged.
		for _, entry := range e.logs.All() {
			if strings.Contains(fmt.Sprint(entry), s1) {
				t.Fatalf("log entry contains a key: %v", entry)
			}
		}
	})
}

func TestUsage(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(t *testing.T) keystore.Store) {
		e := newEnv(t, open(t))
		r, _ := e.create(&local, `{"name":"n","user":"U","rights":["assets:read"]}`)
		id := r.str("id")
		today := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
		if err := e.store.AddUsage(t.Context(), "batch-1", []keystore.UsageDelta{
			{KeyID: id, Day: today, Requests: 100, LastUsed: t0},
			{KeyID: id, Day: today.AddDate(0, 0, -2), Requests: 7, LastUsed: t0},
		}); err != nil {
			t.Fatal(err)
		}
		e.svc.Pending = pendingUsage{id: {{KeyID: id, Day: today, Requests: 23}}}

		u := e.do(&adminKey, "GET", "/keys/"+id+"/usage", "").want(t, http.StatusOK, "")
		days := u.obj["days"].([]any)
		if u.str("id") != id || len(days) != 30 {
			t.Fatalf("got id %s and %d days, want %s and 30", u.str("id"), len(days), id)
		}
		first, last := days[0].(map[string]any), days[29].(map[string]any)
		if first["date"] != "2026-10-25" || last["date"] != "2026-11-23" || last["requests"] != float64(123) {
			t.Fatalf("got first %v last %v, want 2026-10-25 … 2026-11-23 with 123 (stored + unflushed)", first, last)
		}
		u = e.do(&adminKey, "GET", "/keys/"+id+"/usage?from=2026-11-21&to=2026-11-22", "").want(t, http.StatusOK, "")
		want := []any{
			map[string]any{"date": "2026-11-21", "requests": float64(7)},
			map[string]any{"date": "2026-11-22", "requests": float64(0)},
		}
		if !reflect.DeepEqual(u.obj["days"], want) {
			t.Fatalf("got %v, want %v", u.obj["days"], want)
		}
		tests := []struct {
			query  string
			status int
			code   string
		}{
			{"?from=2026-13-01", 400, "invalid_request"},
			{"?to=yesterday", 400, "invalid_request"},
			{"?from=2026-11-23&to=2026-11-01", 400, "invalid_request"},
			{"?from=2020-01-01&to=2026-11-01", 400, "invalid_request"},
		}
		for _, tt := range tests {
			e.do(&adminKey, "GET", "/keys/"+id+"/usage"+tt.query, "").want(t, tt.status, tt.code)
		}
		e.do(&adminKey, "GET", "/keys/key_missing/usage", "").want(t, http.StatusNotFound, "not_found")

		// Breakdowns: every day has a split when one is asked for.
		if err := e.store.AddUsage(t.Context(), "batch-2", []keystore.UsageDelta{
			{KeyID: keystore.PartUsageID(id, keystore.ByArea, "assets"), Day: today, Requests: 90},
			{KeyID: keystore.PartUsageID(id, keystore.ByArea, "workorders"), Day: today, Requests: 10},
			{KeyID: keystore.PartUsageID(id, keystore.ByStatus, "2xx"), Day: today, Requests: 99},
			{KeyID: keystore.PartUsageID(id, keystore.ByStatus, "5xx"), Day: today, Requests: 1},
		}); err != nil {
			t.Fatal(err)
		}
		e.svc.Pending = nil
		u = e.do(&adminKey, "GET", "/keys/"+id+"/usage?from=2026-11-22&to=2026-11-23&by=area", "").want(t, http.StatusOK, "")
		want = []any{
			map[string]any{"date": "2026-11-22", "requests": float64(0), "by": map[string]any{}},
			map[string]any{"date": "2026-11-23", "requests": float64(100), "by": map[string]any{"assets": float64(90), "workorders": float64(10)}},
		}
		if !reflect.DeepEqual(u.obj["days"], want) {
			t.Fatalf("by=area: got %v, want %v", u.obj["days"], want)
		}
		u = e.do(&adminKey, "GET", "/keys/"+id+"/usage?from=2026-11-23&to=2026-11-23&by=status", "").want(t, http.StatusOK, "")
		want = []any{map[string]any{"date": "2026-11-23", "requests": float64(100), "by": map[string]any{"2xx": float64(99), "5xx": float64(1)}}}
		if !reflect.DeepEqual(u.obj["days"], want) {
			t.Fatalf("by=status: got %v, want %v", u.obj["days"], want)
		}
		for _, q := range []string{"?by=user", "?by=", "?by=AREA"} {
			if r := e.do(&adminKey, "GET", "/keys/"+id+"/usage"+q, "").want(t, http.StatusBadRequest, "invalid_request"); !strings.Contains(r.errMessage(), "area") {
				t.Errorf("%s: message %q does not say what by may be", q, r.errMessage())
			}
		}
	})
}

func TestLicense(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewMemory())
	r := e.do(&adminKey, "GET", "/license", "").want(t, http.StatusOK, "")
	if !reflect.DeepEqual(r.obj, map[string]any{"limit": nil, "in_use": float64(0)}) {
		t.Fatalf("got %s, want limit null, in_use 0", r.body)
	}
	e.svc.License = 2
	e.create(&local, `{"name":"n","user":"U","rights":["assets:read"]}`)
	e.create(&local, `{"name":"n","user":"U","rights":["assets:read"]}`)
	r = e.do(&adminKey, "GET", "/license", "").want(t, http.StatusOK, "")
	if !reflect.DeepEqual(r.obj, map[string]any{"limit": float64(2), "in_use": float64(2)}) {
		t.Fatalf("got %s, want limit 2, in_use 2", r.body)
	}
	c := e.do(&adminKey, "POST", "/keys", `{"name":"n","user":"U","rights":["assets:read"]}`).want(t, http.StatusConflict, "license_exhausted")
	if !strings.Contains(c.errMessage(), "license") {
		t.Fatalf("got %q, want a message about the license", c.errMessage())
	}
	e.do(&adminKey, "POST", "/keys/import", `{"name":"n","user":"U","rights":["assets:read"],"apikey":"Maximo-Integration-Key-2026-abcdefXYZ"}`).
		want(t, http.StatusConflict, "license_exhausted")
}

// TestLicenseRace fires concurrent creates at a licence of 5: exactly 5
// must succeed, on every store.
func TestLicenseRace(t *testing.T) {
	t.Parallel()
	const (
		limit    = 5
		attempts = 30
	)
	eachStore(t, func(t *testing.T, open func(t *testing.T) keystore.Store) {
		e := newEnv(t, open(t))
		e.svc.License = limit
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			e.h.ServeHTTP(w, r.WithContext(WithActor(r.Context(), adminKey)))
		}))
		defer srv.Close()
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			counts = map[string]int{}
			start  = make(chan struct{})
		)
		for i := 0; i < attempts; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				body := fmt.Sprintf(`{"name":"k%d","user":"U","rights":["assets:read"]}`, i)
				resp, err := http.Post(srv.URL+"/keys", "application/json", strings.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				defer resp.Body.Close()
				var out struct {
					Error struct{ Code string } `json:"error"`
				}
				_ = json.NewDecoder(resp.Body).Decode(&out)
				mu.Lock()
				counts[fmt.Sprintf("%d %s", resp.StatusCode, out.Error.Code)]++
				mu.Unlock()
			}(i)
		}
		close(start)
		wg.Wait()
		want := map[string]int{"201 ": limit, "409 license_exhausted": attempts - limit}
		if !reflect.DeepEqual(counts, want) {
			t.Fatalf("got %v, want %v", counts, want)
		}
		if n, _ := e.store.CountActive(t.Context(), t0); n != limit {
			t.Fatalf("got %d active keys, want %d", n, limit)
		}
	})
}

func TestRoutingErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewMemory())
	tests := []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"GET", "/", 404, "not_found", ""},
		{"GET", "/nope", 404, "not_found", ""},
		{"GET", "/keys/", 404, "not_found", ""},
		{"GET", "/keys/a/b/c", 404, "not_found", ""},
		{"GET", "/keys/../license", 404, "not_found", ""}, // no redirect: it would lose the mount
		{"PUT", "/keys", 405, "method_not_allowed", "GET, HEAD, POST"},
		{"POST", "/license", 405, "method_not_allowed", "GET, HEAD"},
		{"POST", "/users/U", 405, "method_not_allowed", "DELETE, GET, HEAD"},
		{"POST", "/users/U/limits", 405, "method_not_allowed", "DELETE, GET, HEAD, PUT"},
		{"DELETE", "/keys", 405, "method_not_allowed", "GET, HEAD, POST"},
	}
	for _, tt := range tests {
		r := e.do(&adminKey, tt.method, tt.path, "").want(t, tt.status, tt.code)
		if got := r.header.Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: got Allow %q, want %q", tt.method, tt.path, got, tt.allow)
		}
		if r.header.Get("Location") != "" {
			t.Errorf("%s %s: got a redirect to %s", tt.method, tt.path, r.header.Get("Location"))
		}
	}
}

func TestStoreUnavailable(t *testing.T) {
	t.Parallel()
	store := storetest.NewMemory()
	e := newEnv(t, store)
	r, _ := e.create(&local, `{"name":"n","user":"U","rights":["assets:read"]}`)
	id := r.str("id")
	store.SetFail(fmt.Errorf("dial tcp 10.0.0.1:5432: connection refused: %w", keystore.ErrUnavailable))
	calls := []struct{ method, path, body string }{
		{"POST", "/keys", `{"name":"n","user":"U","rights":["assets:read"]}`},
		{"GET", "/keys", ""},
		{"GET", "/keys/" + id, ""},
		{"PATCH", "/keys/" + id, `{"name":"x"}`},
		{"POST", "/keys/" + id + "/rotate", ""},
		{"DELETE", "/keys/" + id, ""},
		{"DELETE", "/users/U", ""},
		{"GET", "/keys/" + id + "/usage", ""},
		{"GET", "/license", ""},
		{"GET", "/audit", ""},
		{"POST", "/keys/revoke-leaked", `{"keys":["kg_x"]}`},
		{"GET", "/users/U", ""},
		{"PUT", "/users/U/limits", `{"rate":{"limit":1,"per":"1s"}}`},
		{"DELETE", "/users/U/limits", ""},
	}
	for _, c := range calls {
		r := e.do(&adminKey, c.method, c.path, c.body).want(t, http.StatusServiceUnavailable, "store_unavailable")
		if strings.Contains(r.errMessage(), "10.0.0.1") {
			t.Fatalf("%s %s: got message %q, want the cause kept out of it", c.method, c.path, r.errMessage())
		}
	}
	if n := e.logs.FilterMessage("admin api request failed").Len(); n != len(calls) {
		t.Fatalf("got %d logged failures, want %d", n, len(calls))
	}
	// Any other store failure is also a 503, never a 200 or a leak.
	store.SetFail(errors.New("disk I/O error"))
	e.do(&adminKey, "GET", "/license", "").want(t, http.StatusServiceUnavailable, "store_unavailable")
}

func TestActorContext(t *testing.T) {
	t.Parallel()
	if _, ok := ActorFrom(context.Background()); ok {
		t.Fatal("got an actor from an empty context")
	}
	ctx := WithActor(context.Background(), adminKey)
	a, ok := ActorFrom(ctx)
	if !ok || a.ID != adminKey.ID {
		t.Fatalf("got %v, %v, want %v", a, ok, adminKey)
	}
}

func TestStripPrefixMount(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewMemory())
	mux := http.NewServeMux()
	mux.Handle("/keygate/", http.StripPrefix("/keygate", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.h.ServeHTTP(w, r.WithContext(WithActor(r.Context(), local)))
	})))
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/keygate/license", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("got %d %s, want 200", rec.Code, rec.Body)
	}
}
