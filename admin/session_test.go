package admin

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// TestAreas: GET /areas lists the configured areas, patterns as written,
// to keys:admin, keys:self and the local endpoint, and to nobody else.
func TestAreas(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(t *testing.T) keystore.Store) {
		e := newEnv(t, open(t))
		areas, err := keystore.NewAreas(map[string][]string{
			"workorders": {"/maximo/oslc/os/mxwo*", "/maximo/api/os/MXWO*"},
			"assets":     {"/maximo/oslc/os/mxasset*"},
		})
		if err != nil {
			t.Fatal(err)
		}
		e.svc.Areas = areas
		want := `{"areas":[` +
			`{"name":"assets","paths":["/maximo/oslc/os/mxasset*"],"level":null,"graphql_fields":[]},` +
			`{"name":"workorders","paths":["/maximo/oslc/os/mxwo*","/maximo/api/os/MXWO*"],"level":null,"graphql_fields":[]}]}`
		self := selfActor(t, "key_self", "ME", "keys:self", "assets:read")
		for name, a := range map[string]*keystore.Actor{"local": &local, "keys:admin": &adminKey, "keys:self": self} {
			r := e.do(a, "GET", "/areas", "").want(t, http.StatusOK, "")
			if !jsonEqual(t, r.body, want) {
				t.Errorf("%s: got %s, want %s", name, r.body, want)
			}
		}
		plain := selfActor(t, "key_plain", "ME", "assets:read")
		e.do(plain, "GET", "/areas", "").want(t, http.StatusForbidden, "forbidden")
		e.do(noActor, "GET", "/areas", "").want(t, http.StatusUnauthorized, "invalid_api_key")

		e.svc.Areas = nil
		r := e.do(&adminKey, "GET", "/areas", "").want(t, http.StatusOK, "")
		if !jsonEqual(t, r.body, `{"areas":[]}`) {
			t.Errorf("no areas: got %s", r.body)
		}
	})
}

// TestUnknownAreaListsAreas: the 400 for an unknown area names the
// configured ones, on create and on PATCH.
func TestUnknownAreaListsAreas(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(t *testing.T) keystore.Store) {
		e := newEnv(t, open(t))
		const msg = `right "x:read" names unknown area "x"; configured areas: assets, workorders`
		r := e.do(&local, "POST", "/keys", `{"name":"a","user":"U","rights":["x:read"]}`).want(t, http.StatusBadRequest, "invalid_request")
		if r.errMessage() != msg {
			t.Errorf("create: got %q, want %q", r.errMessage(), msg)
		}
		k, _ := e.create(&local, `{"name":"a","user":"U","rights":["assets:read"]}`)
		r = e.do(&local, "PATCH", "/keys/"+k.str("id"), `{"rights":["x:read"]}`).want(t, http.StatusBadRequest, "invalid_request")
		if r.errMessage() != msg {
			t.Errorf("patch: got %q, want %q", r.errMessage(), msg)
		}
	})
}

// TestWhoami: GET /whoami answers with the calling key, or "local".
func TestWhoami(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(t *testing.T) keystore.Store) {
		e := newEnv(t, open(t))
		r := e.do(&local, "GET", "/whoami", "").want(t, http.StatusOK, "")
		if want := `{"id":"local","name":"local","user":"","rights":["keys:admin"]}`; !jsonEqual(t, r.body, want) {
			t.Errorf("local: got %s, want %s", r.body, want)
		}

		for _, rights := range [][]string{{"keys:self", "assets:read"}, {"keys:admin"}} {
			b, _ := json.Marshal(map[string]any{"name": "console", "user": "ME", "rights": rights})
			k, _ := e.create(&local, string(b))
			parsed, err := keystore.ParseRights(rights, nil)
			if err != nil {
				t.Fatal(err)
			}
			a := &keystore.Actor{ID: k.str("id"), User: "ME", Rights: parsed}
			r := e.do(a, "GET", "/whoami", "").want(t, http.StatusOK, "")
			var got Whoami
			if err := json.Unmarshal(r.body, &got); err != nil {
				t.Fatal(err)
			}
			want := Whoami{ID: k.str("id"), Name: "console", User: "ME", Rights: parsed.Strings()}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
			if r.header.Get("Cache-Control") == "" {
				t.Errorf("no Cache-Control on %s", r.body)
			}
		}

		// A key without admin rights cannot use the admin API at all.
		plain := selfActor(t, "key_plain", "ME", "assets:read")
		e.do(plain, "GET", "/whoami", "").want(t, http.StatusForbidden, "forbidden")
		e.do(noActor, "GET", "/whoami", "").want(t, http.StatusUnauthorized, "invalid_api_key")
	})
}

func jsonEqual(t *testing.T, got []byte, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("body %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want %s: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}
