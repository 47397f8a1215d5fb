package e2e

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// A read-only key does REST GETs and GraphQL queries on its areas and is
// refused mutations and other areas' root fields; what is allowed reaches
// the backend byte for byte, what is refused never reaches it.
func TestGraphQLRightsEndToEnd(t *testing.T) {
	be := newBackend(t)
	in := start(t, standard(be, `graphql /mce/api/graphql {
			field assets     asset assets createAsset
			field workorders workOrder workOrders createWorkOrder
		}`, ""))
	reader := in.createKey(map[string]any{"name": "mce-read", "user": "MXINTADM", "rights": []string{"assets:read", "workorders:read"}})
	writer := in.createKey(map[string]any{"name": "mce-write", "user": "MXINTADM", "rights": []string{"workorders:write"}})
	gql := in.siteURL + "/mce/api/graphql"

	post := func(key, ctype, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), "POST", gql, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("apikey", key)
		req.Header.Set("Content-Type", ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// REST and GraphQL with the same read key.
	if code, body, _ := call(t, "GET", in.siteURL+"/maximo/oslc/os/mxapiasset?lean=1", hdr("apikey", reader.Key)); code != 200 {
		t.Fatalf("REST GET: %d %s", code, body)
	}
	allowed := []struct{ name, ctype, body string }{
		{"json query", "application/json", `{"query":"query Q($n: Int) { assets(first: $n) { assetNum } open: workOrders { woNum } }","variables":{"n":2},"operationName":"Q"}`},
		{"graphql body", "application/graphql; charset=utf-8", "{ asset(id: \"PUMP-1\") { assetNum } }\n"},
		{"batch of queries", "application/json", `[{"query":"{ assets { id } }"},{"query":"{ __typename workOrder(id: 1) { id } }"}]`},
	}
	for _, c := range allowed {
		before := be.count()
		if code, body := post(reader.Key, c.ctype, c.body); code != 200 {
			t.Fatalf("%s: %d %s, want 200", c.name, code, body)
		}
		if be.count() != before+1 {
			t.Fatalf("%s: backend saw %d requests, want 1", c.name, be.count()-before)
		}
		got := be.last()
		if got.Body != c.body {
			t.Fatalf("%s: backend body %q, want the request's bytes %q", c.name, got.Body, c.body)
		}
		if got.Header.Get("Apikey") != "" {
			t.Fatalf("%s: the key reached the backend", c.name)
		}
	}
	code, body, _ := call(t, "GET", gql+"?query="+url.QueryEscape("{ workOrders { woNum } }"), hdr("apikey", reader.Key))
	if code != 200 || !strings.Contains(be.last().RawQuery, "workOrders") {
		t.Fatalf("GET query: %d %s (backend query %q)", code, body, be.last().RawQuery)
	}

	refused := []struct {
		name, key, ctype, body string
		status                 int
		code                   string
	}{
		{"mutation with a read key", reader.Key, "application/json", `{"query":"mutation { createWorkOrder(description: \"leak\") { woNum } }"}`, 403, "forbidden"},
		{"mutation hidden behind operationName", reader.Key, "application/json", `{"query":"query A { assets { id } } mutation B { createAsset { id } }","operationName":"A"}`, 403, "forbidden"},
		{"mutation in a fragment", reader.Key, "application/json", `{"query":"mutation { ...M } fragment M on Mutation { w: createWorkOrder { id } }"}`, 403, "forbidden"},
		{"other area", writer.Key, "application/json", `{"query":"{ assets { id } }"}`, 403, "forbidden"},
		{"unmapped root field", writer.Key, "application/json", `{"query":"{ users { id } }"}`, 403, "forbidden"},
		{"unparseable", reader.Key, "application/json", `{"query":"{ assets { "}`, 400, "invalid_request"},
		{"duplicate query member", reader.Key, "application/json", `{"query":"{ assets { id } }","query":"mutation { createAsset { id } }"}`, 400, "invalid_request"},
		{"too large", reader.Key, "application/json", `{"query":"{ assets { id } }","variables":{"pad":"` + strings.Repeat("x", 2<<20) + `"}}`, 413, "request_too_large"},
	}
	for _, c := range refused {
		before := be.count()
		code, body := post(c.key, c.ctype, c.body)
		if code != c.status || !strings.Contains(body, `"code":"`+c.code+`"`) {
			t.Fatalf("%s: %d %s, want %d %s", c.name, code, body, c.status, c.code)
		}
		if be.count() != before {
			t.Fatalf("%s: a refused request reached the backend", c.name)
		}
	}
	code, body, _ = call(t, "GET", gql+"?query="+url.QueryEscape("mutation { createWorkOrder { id } }"), hdr("apikey", writer.Key))
	if code != 405 || !strings.Contains(body, "method_not_allowed") {
		t.Fatalf("mutation over GET: %d %s, want 405", code, body)
	}
	// The write key may run the mutation it holds.
	if code, body := post(writer.Key, "application/json", `{"query":"mutation { createWorkOrder { id } }"}`); code != 200 {
		t.Fatalf("mutation with workorders:write: %d %s", code, body)
	}
}
