package admin

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/storetest"
)

func TestUserLimitsEndpoints(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) keystore.Store) {
		e := newEnv(t, open(t))
		r1, _ := e.create(&local, `{"name":"a","user":"MX INT","rights":["assets:read"]}`)
		e.create(&local, `{"name":"b","user":"MX INT","rights":["assets:read"]}`)
		e.create(&local, `{"name":"c","user":"OTHER","rights":["assets:read"]}`)
		e.do(&local, "DELETE", "/keys/"+r1.str("id"), "").want(t, http.StatusOK, "")

		r := e.do(&adminKey, "GET", "/users/MX%20INT", "").want(t, http.StatusOK, "")
		if r.obj["user"] != "MX INT" || r.obj["active_keys"] != float64(1) || r.obj["rate"] != nil || r.obj["quota"] != nil {
			t.Fatalf("GET /users before limits: %s", r.body)
		}
		r = e.do(&adminKey, "PUT", "/users/MX%20INT/limits", `{"rate":{"limit":10,"per":"1m"},"quota":{"limit":5000,"period":"month"}}`).want(t, http.StatusOK, "")
		if got := string(r.body); !strings.Contains(got, `"rate":{"limit":10,"per":"1m"}`) || !strings.Contains(got, `"quota":{"limit":5000,"period":"month"}`) || !strings.Contains(got, `"active_keys":1`) {
			t.Fatalf("PUT limits: %s", got)
		}
		for _, path := range []string{"/users/MX%20INT", "/users/MX%20INT/limits"} {
			if got := string(e.do(&adminKey, "GET", path, "").want(t, http.StatusOK, "").body); !strings.Contains(got, `"limit":10`) {
				t.Fatalf("GET %s after PUT: %s", path, got)
			}
		}
		if got := string(e.do(&adminKey, "GET", "/users/OTHER", "").want(t, http.StatusOK, "").body); !strings.Contains(got, `"rate":null`) {
			t.Fatalf("another user got the limits: %s", got)
		}
		// Replace with a quota only.
		r = e.do(&adminKey, "PUT", "/users/MX%20INT/limits", `{"quota":{"limit":7,"period":"day"}}`).want(t, http.StatusOK, "")
		if r.obj["rate"] != nil {
			t.Fatalf("PUT replaces the limits: got %s", r.body)
		}
		for range 2 {
			r = e.do(&adminKey, "DELETE", "/users/MX%20INT/limits", "").want(t, http.StatusOK, "")
			if r.obj["rate"] != nil || r.obj["quota"] != nil {
				t.Fatalf("DELETE limits: %s", r.body)
			}
		}
		events, _, err := e.store.ListAudit(t.Context(), keystore.AuditFilter{})
		if err != nil {
			t.Fatal(err)
		}
		var actions []string
		for _, ev := range events {
			actions = append(actions, ev.Action)
		}
		if got := strings.Join(actions[:4], ","); got != "delete_user_limits,delete_user_limits,set_user_limits,set_user_limits" {
			t.Errorf("audit actions, newest first: %s", got)
		}
	})
}

func TestUserLimitsValidation(t *testing.T) {
	e := newEnv(t, storetest.NewMemory())
	for _, c := range []struct{ body, msg string }{
		{`{}`, "give a rate, a quota or both"},
		{`{"rate":null,"quota":null}`, "give a rate, a quota or both"},
		{`{"rate":{"limit":0,"per":"1m"}}`, "rate.limit must be greater than 0"},
		{`{"rate":{"limit":5,"per":"fast"}}`, `rate.per "fast"`},
		{`{"quota":{"limit":5,"period":"year"}}`, `quota.period must be "day" or "month"`},
		{`{"rates":{"limit":5,"per":"1m"}}`, `unknown field "rates"`},
		{`[]`, ""},
	} {
		r := e.do(&adminKey, "PUT", "/users/U/limits", c.body).want(t, http.StatusBadRequest, "invalid_request")
		if !strings.Contains(r.errMessage(), c.msg) {
			t.Errorf("PUT %s: got %q, want it to say %q", c.body, r.errMessage(), c.msg)
		}
	}
}

func TestUserLimitsAuthorization(t *testing.T) {
	e := newEnv(t, storetest.NewMemory())
	self := keystore.Actor{ID: "key_self", User: "ME", Rights: keystore.Rights{Self: true, Areas: map[string]keystore.Level{"assets": keystore.LevelRead}}}
	plain := keystore.Actor{ID: "key_plain", User: "ME", Rights: keystore.Rights{Areas: map[string]keystore.Level{"assets": keystore.LevelRead}}}
	e.do(&self, "GET", "/users/ME", "").want(t, http.StatusOK, "")
	e.do(&self, "GET", "/users/ME/limits", "").want(t, http.StatusOK, "")
	e.do(&self, "GET", "/users/OTHER", "").want(t, http.StatusForbidden, "forbidden")
	e.do(&self, "PUT", "/users/ME/limits", `{"rate":{"limit":1000,"per":"1s"}}`).want(t, http.StatusForbidden, "forbidden")
	e.do(&self, "DELETE", "/users/ME/limits", "").want(t, http.StatusForbidden, "forbidden")
	e.do(&plain, "GET", "/users/ME", "").want(t, http.StatusForbidden, "forbidden")
	e.do(noActor, "GET", "/users/ME", "").want(t, http.StatusUnauthorized, "invalid_api_key")
	e.do(&local, "PUT", "/users/ME/limits", `{"rate":{"limit":1,"per":"1s"}}`).want(t, http.StatusOK, "")
}

func TestUserLimitsEvictCachedKeys(t *testing.T) {
	e := newEnv(t, storetest.NewMemory())
	var ids []string
	for i := range 3 {
		r, _ := e.create(&local, fmt.Sprintf(`{"name":"k%d","user":"U","rights":["assets:read"]}`, i))
		ids = append(ids, r.str("id"))
	}
	other, _ := e.create(&local, `{"name":"o","user":"V","rights":["assets:read"]}`)
	before := map[string]int{}
	digest := func(id string) keystore.Digest {
		k, err := e.store.GetKey(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		return k.Digest
	}
	for _, id := range append(ids, other.str("id")) {
		before[id] = e.inv.count(digest(id))
	}
	e.do(&local, "PUT", "/users/U/limits", `{"quota":{"limit":1,"period":"day"}}`).want(t, http.StatusOK, "")
	for _, id := range ids {
		if e.inv.count(digest(id)) != before[id]+1 {
			t.Errorf("key %s of the user was not evicted after its limits changed", id)
		}
	}
	if e.inv.count(digest(other.str("id"))) != before[other.str("id")] {
		t.Error("a key of another user was evicted")
	}
}
