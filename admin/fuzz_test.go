package admin

import (
	"testing"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/storetest"
)

// FuzzAdminJSON sends arbitrary bytes as the JSON body of every admin
// endpoint that reads one. Whatever the body, the handler must not panic,
// must answer JSON (e.do checks it, and checks the answer against the
// OpenAPI document), and must never answer 5xx: a bad body is the caller's
// error. It runs its seed corpus (f.Add and testdata/fuzz/FuzzAdminJSON) as
// an ordinary test; .ci/fuzz runs it with -fuzz for a bounded time.
func FuzzAdminJSON(f *testing.F) {
	for _, s := range []string{
		`{"name":"mx","user":"MXINTADM","rights":["assets:read"]}`,
		`{"name":"mx","user":"MXINTADM","rights":["assets:read","workorders:write"],"expires_in":"720h","rate":{"limit":100,"per":"1m"},"quota":{"limit":10000,"period":"month"}}`,
		`{"name":"mx","user":"U","rights":["*:write"],"expires_at":"2030-01-01T00:00:00Z","description":"d"}`,
		`{"name":"imp","user":"U","rights":["assets:read"],"apikey":"Zx9$Qw3!Lm7@Rt5#Yu1%Io8^Pa2&Sd6*"}`,
		`{"name":"imp","user":"U","rights":["assets:read"],"sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}`,
		`{"rights":["keys:admin"]}`, `{"rights":[]}`, `{"rights":null}`, `{"rate":null,"quota":null,"expires_at":null}`,
		`{"rate":{"limit":-1,"per":"0s"}}`, `{"rate":{"limit":1e300,"per":"1m"}}`, `{"quota":{"limit":1,"period":"week"}}`,
		`{"expires_in":"-1h"}`, `{"expires_in":"9999999999h"}`, `{"expires_at":"yesterday"}`, `{"grace":"24h"}`, `{"grace":"-1s"}`,
		`{"keys":["kg_x","kg_4Fq9Zr1x0TbAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]}`, `{"keys":[1,2]}`, `{"keys":null}`,
		`{"name":"a","name":"b"}`, `{"unknown":1}`, `{"name":"\u0000"}`, `{"name":"` + "\xff" + `"}`,
		`[]`, `null`, `""`, `1`, `{`, `{}{}`, `{} `, "", `{"name":{"x":[[[[[[[[[[[[]]]]]]]]]]]]}}`,
	} {
		for ep := range uint8(len(fuzzEndpoints)) {
			f.Add(ep, []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, ep uint8, body []byte) {
		e := newEnv(t, storetest.NewMemory())
		created, _ := e.create(&adminKey, `{"name":"target","user":"MXINTADM","rights":["assets:read"]}`)
		id := created.str("id")
		end := fuzzEndpoints[int(ep)%len(fuzzEndpoints)]
		target := end.path
		if end.withID {
			target = "/keys/" + id + end.path
		}
		for _, actor := range []*keystore.Actor{&adminKey, &fuzzSelfActor} {
			r := e.do(actor, end.method, target, string(body))
			if r.status >= 500 {
				t.Fatalf("%s %s %q: got %d %s, want a 4xx at worst", end.method, target, body, r.status, r.body)
			}
			if r.status >= 400 && r.errCode() == "" {
				t.Fatalf("%s %s %q: error %d without an error code: %s", end.method, target, body, r.status, r.body)
			}
			// Only POST /keys and rotate show a secret; import never echoes it.
			shows := target == "/keys" || end.path == "/rotate"
			if r.status < 300 && shows && r.str("key") == "" {
				t.Fatalf("%s %s %q: %d without the key", end.method, target, body, r.status)
			}
			if !shows && r.str("key") != "" {
				t.Fatalf("%s %s %q: the answer shows a secret: %s", end.method, target, body, r.body)
			}
		}
	})
}

// fuzzEndpoints are the admin endpoints that decode a JSON body.
var fuzzEndpoints = []struct {
	method, path string
	withID       bool // path is relative to /keys/{id}
}{
	{"POST", "/keys", false},
	{"POST", "/keys/import", false},
	{"PATCH", "", true},
	{"POST", "/rotate", true},
	{"POST", "/keys/revoke-leaked", false},
}

// fuzzSelfActor is a keys:self key of the target key's user.
var fuzzSelfActor = keystore.Actor{ID: "key_self", User: "MXINTADM", Rights: keystore.Rights{Self: true, Areas: map[string]keystore.Level{"assets": keystore.LevelRead}},
	Key: &keystore.Key{ID: "key_self", User: "MXINTADM", Rights: []string{"keys:self", "assets:read"}}}
