package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/storetest"
)

func selfActor(t *testing.T, id, user string, rights ...string) *keystore.Actor {
	t.Helper()
	r, err := keystore.ParseRights(rights, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &keystore.Actor{ID: id, User: user, Rights: r, Key: &keystore.Key{ID: id, User: user, Rights: rights}}
}

// TestSelfServiceEscalation tries every way a keys:self key could reach
// beyond its own user and rights.
func TestSelfServiceEscalation(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(t *testing.T) keystore.Store) {
		e := newEnv(t, open(t))
		self := selfActor(t, "key_self", "ME", "keys:self", "assets:write")
		mine, _ := e.create(&local, `{"name":"mine","user":"ME","rights":["assets:read"]}`)
		wider, _ := e.create(&local, `{"name":"wider","user":"ME","rights":["assets:write","keys:admin"]}`)
		other, _ := e.create(&local, `{"name":"other","user":"OTHER","rights":["assets:read"]}`)
		mineID, widerID, otherID := mine.str("id"), wider.str("id"), other.str("id")

		refused := []struct {
			name, method, path, body, msg string
		}{
			{"grant keys:admin", "POST", "/keys", `{"name":"x","user":"ME","rights":["keys:admin"]}`, "keys:admin"},
			{"grant keys:admin beside covered rights", "POST", "/keys", `{"name":"x","user":"ME","rights":["assets:read","keys:admin"]}`, "keys:admin"},
			{"grant *:write holding assets:write", "POST", "/keys", `{"name":"x","user":"ME","rights":["*:write"]}`, "wider than its own"},
			{"grant *:read holding assets:write", "POST", "/keys", `{"name":"x","user":"ME","rights":["*:read"]}`, "wider than its own"},
			{"grant another area", "POST", "/keys", `{"name":"x","user":"ME","rights":["workorders:read"]}`, "wider than its own"},
			{"create for another user", "POST", "/keys", `{"name":"x","user":"OTHER","rights":["assets:read"]}`, "own user"},
			{"import for another user", "POST", "/keys/import", `{"name":"x","user":"OTHER","rights":["assets:read"],"apikey":"Maximo-Integration-Key-2026-abcdefXYZ"}`, "own user"},
			{"import keys:admin", "POST", "/keys/import", `{"name":"x","user":"ME","rights":["keys:admin"],"apikey":"Maximo-Integration-Key-2026-abcdefXYZ"}`, "keys:admin"},
			{"show another user's key", "GET", "/keys/" + otherID, "", "own user"},
			{"rotate another user's key", "POST", "/keys/" + otherID + "/rotate", "", "own user"},
			{"revoke another user's key", "DELETE", "/keys/" + otherID, "", "own user"},
			{"usage of another user's key", "GET", "/keys/" + otherID + "/usage", "", "own user"},
			{"rotate own wider key", "POST", "/keys/" + widerID + "/rotate", "", "rights"},
			{"revoke own wider key", "DELETE", "/keys/" + widerID, "", "rights"},
			{"patch own key", "PATCH", "/keys/" + mineID, `{"rights":["assets:write"]}`, "keys:admin"},
			{"patch rights to admin", "PATCH", "/keys/" + mineID, `{"rights":["keys:admin"]}`, "keys:admin"},
			{"list another user", "GET", "/keys?user=OTHER", "", "own user"},
			{"revoke a user", "DELETE", "/users/OTHER", "", "keys:admin"},
			{"revoke own user", "DELETE", "/users/ME", "", "keys:admin"},
			{"revoke leaked", "POST", "/keys/revoke-leaked", `{"keys":[]}`, "keys:admin"},
			{"whole audit log", "GET", "/audit", "", "own keys"},
			{"audit of another user's key", "GET", "/audit?key=" + otherID, "", "own user"},
		}
		for _, tt := range refused {
			r := e.do(self, tt.method, tt.path, tt.body).want(t, http.StatusForbidden, "forbidden")
			if !strings.Contains(r.errMessage(), tt.msg) {
				t.Errorf("%s: got message %q, want it to name the rule (%q)", tt.name, r.errMessage(), tt.msg)
			}
		}
		// Nothing changed.
		for _, id := range []string{mineID, widerID, otherID} {
			k, err := e.store.GetKey(t.Context(), id)
			if err != nil || k.RevokedAt != nil {
				t.Fatalf("key %s: got %v revoked %v, want untouched", id, err, k.RevokedAt)
			}
		}
		if n, _ := e.store.CountActive(t.Context(), t0); n != 3 {
			t.Fatalf("got %d keys, want the 3 made by the test", n)
		}

		// What keys:self may do.
		l := e.do(self, "GET", "/keys", "").want(t, http.StatusOK, "")
		keys := l.obj["keys"].([]any)
		if len(keys) != 2 {
			t.Fatalf("got %d keys listed, want ME's 2", len(keys))
		}
		for _, k := range keys {
			if u := k.(map[string]any)["user"]; u != "ME" {
				t.Fatalf("got a key of %v in the list, want only ME's", u)
			}
		}
		e.do(self, "GET", "/keys?user=ME", "").want(t, http.StatusOK, "")
		c, _ := e.create(self, `{"name":"sub","user":"ME","rights":["assets:read","keys:self"]}`)
		if c.str("created_by") != "key_self" {
			t.Fatalf("got created_by %q, want key_self", c.str("created_by"))
		}
		e.create(self, `{"name":"same","user":"ME","rights":["assets:write"]}`)
		e.do(self, "GET", "/keys/"+mineID, "").want(t, http.StatusOK, "")
		e.do(self, "GET", "/keys/"+widerID, "").want(t, http.StatusOK, "") // seeing is not escalating
		e.do(self, "GET", "/keys/"+mineID+"/usage", "").want(t, http.StatusOK, "")
		e.do(self, "GET", "/audit?key="+mineID, "").want(t, http.StatusOK, "")
		e.do(self, "GET", "/license", "").want(t, http.StatusOK, "")
		e.do(self, "POST", "/keys/"+mineID+"/rotate", `{"grace":"1h"}`).want(t, http.StatusOK, "")
		e.do(self, "DELETE", "/keys/"+mineID, "").want(t, http.StatusOK, "")

		// A key with neither admin right gets nothing.
		plain := selfActor(t, "key_plain", "ME", "assets:write")
		for _, c := range []struct{ method, path string }{{"GET", "/keys"}, {"GET", "/license"}, {"GET", "/keys/" + mineID}} {
			e.do(plain, c.method, c.path, "").want(t, http.StatusForbidden, "forbidden")
		}
	})
}

func TestSelfServiceOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewMemory())
	e.svc.SelfServiceOnly = true
	r := e.do(&adminKey, "POST", "/keys", `{"name":"x","user":"OTHER","rights":["assets:read"]}`).want(t, http.StatusForbidden, "forbidden")
	if !strings.Contains(r.errMessage(), "self-service only") {
		t.Fatalf("got message %q, want it to name self-service only", r.errMessage())
	}
	e.create(&adminKey, `{"name":"x","user":"ADMIN","rights":["assets:read"]}`)
	e.create(&local, `{"name":"x","user":"OTHER","rights":["assets:read"]}`)
}

// TestAuditTrail makes every kind of change and checks that each left an
// event with the acting key, and that no event holds a secret, a digest or
// a display start.
func TestAuditTrail(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(t *testing.T) keystore.Store) {
		e := newEnv(t, open(t))
		const imported = "Maximo-Integration-Key-2026-abcdefXYZ"
		var secrets []string
		steps := []struct {
			action string
			do     func() string // returns the key id the event is about
		}{
			{"create", func() string {
				r, s := e.create(&adminKey, createBody)
				secrets = append(secrets, s, r.str("start"))
				return r.str("id")
			}},
			{"import", func() string {
				r := e.do(&adminKey, "POST", "/keys/import", `{"name":"i","user":"U","rights":["assets:read"],"apikey":"`+imported+`"}`).want(t, 201, "")
				secrets = append(secrets, imported)
				return r.str("id")
			}},
			{"update", func() string {
				id := firstKey(t, e)
				e.do(&adminKey, "PATCH", "/keys/"+id, `{"name":"renamed","rate":null}`).want(t, 200, "")
				return id
			}},
			{"rotate", func() string {
				id := firstKey(t, e)
				r := e.do(&adminKey, "POST", "/keys/"+id+"/rotate", `{"grace":"1h"}`).want(t, 200, "")
				secrets = append(secrets, r.str("key"), r.str("start"))
				return id
			}},
			{"revoke", func() string {
				id := firstKey(t, e)
				e.do(&adminKey, "DELETE", "/keys/"+id, "").want(t, 200, "")
				return id
			}},
			{"revoke_leaked", func() string {
				body, _ := json.Marshal(map[string]any{"keys": []string{imported}})
				e.do(&adminKey, "POST", "/keys/revoke-leaked", string(body)).want(t, 200, "")
				k, err := e.store.LookupDigest(t.Context(), keystore.DigestOf(imported))
				if err != nil {
					t.Fatal(err)
				}
				return k.ID
			}},
			{"revoke_user", func() string {
				r, s := e.create(&local, `{"name":"u","user":"GONE","rights":["assets:read"]}`)
				secrets = append(secrets, s)
				e.do(&adminKey, "DELETE", "/users/GONE", "").want(t, 200, "")
				return r.str("id")
			}},
		}
		for _, st := range steps {
			id := st.do()
			r := e.do(&adminKey, "GET", "/audit?key="+id+"&limit=1", "").want(t, http.StatusOK, "")
			events := r.obj["events"].([]any)
			if len(events) != 1 {
				t.Fatalf("%s: got %d events for %s, want 1", st.action, len(events), id)
			}
			ev := events[0].(map[string]any)
			if ev["action"] != st.action || ev["key_id"] != id || ev["actor"] != "key_admin" {
				t.Fatalf("%s: got event %v, want action %s on %s by key_admin", st.action, ev, st.action, id)
			}
			if ev["at"] != "2026-11-23T10:00:00Z" {
				t.Fatalf("%s: got at %v, want 2026-11-23T10:00:00Z", st.action, ev["at"])
			}
		}
		all := e.do(&adminKey, "GET", "/audit?limit=1000", "").want(t, http.StatusOK, "")
		// Everything the store holds, raw, must be free of secrets too.
		raw, _, err := e.store.ListAudit(t.Context(), keystore.AuditFilter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		rawJSON, _ := json.Marshal(raw)
		var forbidden []string
		for _, s := range secrets {
			if s == "" {
				continue
			}
			forbidden = append(forbidden, s, keystore.DigestOf(s).Hex())
		}
		for _, f := range forbidden {
			if strings.Contains(string(all.body), f) || strings.Contains(string(rawJSON), f) {
				t.Fatalf("audit log contains a secret, digest or start %q", f)
			}
		}
		// Pages, newest first.
		var pages, n int
		q := "/audit?limit=3"
		for ; pages < 20; pages++ {
			r := e.do(&adminKey, "GET", q, "").want(t, http.StatusOK, "")
			n += len(r.obj["events"].([]any))
			next, _ := r.obj["next"].(string)
			if next == "" {
				break
			}
			q = "/audit?limit=3&cursor=" + next
		}
		if want := len(all.obj["events"].([]any)); n != want || n < len(steps) {
			t.Fatalf("got %d events over pages, want %d (at least %d)", n, want, len(steps))
		}
		for _, bad := range []string{"?limit=0", "?limit=abc", "?cursor=@@bad@@"} {
			e.do(&adminKey, "GET", "/audit"+bad, "").want(t, http.StatusBadRequest, "invalid_request")
		}
	})
}

// firstKey returns the id of the oldest key.
func firstKey(t *testing.T, e *env) string {
	t.Helper()
	r := e.do(&adminKey, "GET", "/keys?limit=1", "").want(t, http.StatusOK, "")
	keys := r.obj["keys"].([]any)
	if len(keys) == 0 {
		t.Fatal("no keys")
	}
	return fmt.Sprint(keys[0].(map[string]any)["id"])
}
