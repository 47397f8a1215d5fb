package graphql

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func testEndpoint(t testing.TB, def string) *Endpoint {
	t.Helper()
	e, err := NewEndpoint([]string{"/mce/api/graphql"}, map[string][]string{
		"assets":     {"asset", "assets"},
		"workorders": {"workOrder", "workOrders", "createWorkOrder"},
	}, def)
	if err != nil {
		t.Fatalf("NewEndpoint: %v", err)
	}
	return e
}

func postJSON(body string) Request {
	return Request{Method: "POST", ContentType: "application/json", Body: strings.NewReader(body)}
}

// postQuery sends {"query": q} the way a client library does.
func postQuery(q string) Request {
	b, err := json.Marshal(map[string]string{"query": q})
	if err != nil {
		panic(err)
	}
	return postJSON(string(b))
}

func postGraphQL(doc string) Request {
	return Request{Method: "POST", ContentType: "application/graphql", Body: strings.NewReader(doc)}
}

func get(rawQuery string) Request {
	return Request{Method: "GET", RawQuery: rawQuery, Body: strings.NewReader("")}
}

func getQuery(q string) Request { return get("query=" + url.QueryEscape(q)) }

var (
	assetsRead  = Need{Area: "assets", Write: false}
	woRead      = Need{Area: "workorders", Write: false}
	woWrite     = Need{Area: "workorders", Write: true}
	reportsRead = Need{Area: "reports", Write: false}
)

func needs(n ...Need) Judgement { return Judgement{Needs: n} }

// fragmentChain is `query { ...F0 } fragment F0 { ...F1 } … fragment Fn-1 { assets { id } }`.
func fragmentChain(n int) string {
	var b strings.Builder
	b.WriteString("query { ...F0 }\n")
	for i := range n - 1 {
		fmt.Fprintf(&b, "fragment F%d on Query { ...F%d }\n", i, i+1)
	}
	fmt.Fprintf(&b, "fragment F%d on Query { assets { id } }\n", n-1)
	return b.String()
}

// fragmentDiamond spreads each fragment twice into the one above: 2^n
// paths, n+1 fragments.
func fragmentDiamond(n int) string {
	var b strings.Builder
	b.WriteString("mutation { ...F0 }\n")
	for i := range n {
		fmt.Fprintf(&b, "fragment F%d on Mutation { ...F%d a%d: __typename ...F%d }\n", i, i+1, i, i+1)
	}
	fmt.Fprintf(&b, "fragment F%d on Mutation { createWorkOrder { id } }\n", n)
	return b.String()
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestJudge(t *testing.T) {
	t.Parallel()
	const mixed = `query R { assets { id } } mutation W { createWorkOrder(input: {}) { id } }`
	tests := []struct {
		name    string
		def     string // the endpoint's default area
		req     Request
		want    Judgement
		wantErr error
	}{
		// Operations and root fields.
		{name: "anonymous shorthand", req: postQuery(`{ assets { id } }`), want: needs(assetsRead)},
		{name: "named query, two areas", req: postQuery(`query Q { workOrders { id } asset(id: 1) { id } }`), want: needs(assetsRead, woRead)},
		{name: "mutation writes", req: postQuery(`mutation { createWorkOrder(input: {description: "pump"}) { wonum } }`), want: needs(woWrite)},
		{name: "write covers read of the same area", req: postQuery(`query { workOrders { id } } mutation { createWorkOrder { id } }`), want: needs(woWrite)},
		{name: "subscription reads", req: postQuery(`subscription { workOrders { id } }`), want: needs(woRead)},
		{name: "variables", req: postJSON(`{"query":"query ($id: ID!) { asset(id: $id) { id } }","variables":{"id":"1001"},"operationName":null}`), want: needs(assetsRead)},
		{name: "nested fields are not root fields", req: postQuery(`{ assets { workOrders { createWorkOrder } } }`), want: needs(assetsRead)},
		{name: "directives are ignored", req: postQuery(`mutation ($no: Boolean = false) { createWorkOrder @include(if: $no) { id } }`), want: needs(woWrite)},

		// Aliases.
		{name: "alias resolved to its field", req: postQuery(`mutation { a: createWorkOrder { id } }`), want: needs(woWrite)},
		{name: "alias named like a mutation field", req: postQuery(`{ createWorkOrder: assets { id } }`), want: needs(assetsRead)},

		// Every operation counts, whatever operationName selects.
		{name: "operationName selects the query", req: postJSON(`{"query":` + jsonString(mixed) + `,"operationName":"R"}`), want: needs(assetsRead, woWrite)},
		{name: "operationName selects the query, application/graphql", req: postGraphQL(mixed), want: needs(assetsRead, woWrite)},

		// Fragments.
		{name: "named fragment", req: postQuery(`query { ...F } fragment F on Query { workOrders { id } }`), want: needs(woRead)},
		{name: "nested named fragments", req: postQuery(`mutation { ...A } fragment A on Mutation { ...B } fragment B on Mutation { x: createWorkOrder { id } }`), want: needs(woWrite)},
		{name: "fragment defined before use", req: postQuery(`fragment F on Mutation { createWorkOrder { id } } mutation { ...F }`), want: needs(woWrite)},
		{name: "inline fragment without type condition", req: postQuery(`mutation { ... { createWorkOrder { id } } }`), want: needs(woWrite)},
		{name: "inline fragment on another type", req: postQuery(`mutation { ... on Query { createWorkOrder { id } } }`), want: needs(woWrite)},
		{name: "inline fragment with @skip", req: postQuery(`mutation { ... @skip(if: true) { createWorkOrder { id } } }`), want: needs(woWrite)},
		{name: "inline in named in inline", req: postQuery(`query { ... on Query { ...F } } fragment F on Query { ... { assets { id } } }`), want: needs(assetsRead)},
		{name: "fragment in a query and a mutation", req: postQuery(`query R { ...F } mutation W { ...F } fragment F on Query { workOrders { id } }`), want: needs(woWrite)},
		{name: "two mutations spread one fragment", req: postQuery(`mutation A { ...F } mutation B { ...F } fragment F on Mutation { createWorkOrder { id } }`), want: needs(woWrite)},
		{name: "fragment only below the root", req: postQuery(`{ assets { ...F } } fragment F on Asset { workOrders { id } }`), want: needs(assetsRead)},
		{name: "many fragments (indexed)", req: postQuery(fragmentChain(20)), want: needs(assetsRead)},
		{name: "chain at the depth limit", req: postQuery(fragmentChain(maxFragmentDepth)), want: needs(assetsRead)},
		{name: "chain over the depth limit", req: postQuery(fragmentChain(maxFragmentDepth + 2)), wantErr: ErrInvalid},
		{name: "diamond of 2^40 paths", req: postQuery(fragmentDiamond(40)), want: needs(woWrite)},
		{name: "fragment cycle", req: postQuery(`query { ...A } fragment A on Query { ...B } fragment B on Query { assets { id } ...A }`), wantErr: ErrInvalid},
		{name: "fragment spreads itself", req: postQuery(`mutation { ...A } fragment A on Mutation { createWorkOrder { id } ...A }`), wantErr: ErrInvalid},
		{name: "fragment not defined", req: postQuery(`query { ...Nope }`), wantErr: ErrInvalid},
		{name: "fragment defined twice", req: postQuery(`query { ...F } fragment F on Query { assets { id } } fragment F on Mutation { createWorkOrder { id } }`), wantErr: ErrInvalid},
		{name: "fragment defined twice among many", req: postQuery(fragmentChain(12) + `fragment F3 on Query { workOrders { id } }`), wantErr: ErrInvalid},

		// __typename and introspection.
		{name: "__typename needs nothing", req: postQuery(`{ __typename }`), want: Judgement{}},
		{name: "__typename beside a field", req: postQuery(`{ __typename assets { id } }`), want: needs(assetsRead)},
		{name: "introspection", req: postQuery(`query IntrospectionQuery { __schema { types { name } } }`), want: Judgement{Introspection: true}},
		{name: "__type and a field", req: postQuery(`{ t: __type(name: "Asset") { name } assets { id } }`), want: Judgement{Needs: []Need{assetsRead}, Introspection: true}},
		{name: "introspection through a fragment", req: postQuery(`{ ...I } fragment I on Query { __schema { queryType { name } } }`), want: Judgement{Introspection: true}},
		{name: "mutation of __typename only", req: postQuery(`mutation { __typename }`), wantErr: ErrInvalid},
		{name: "mutation of __typename through a fragment", req: postQuery(`mutation { ...F } fragment F on Mutation { __typename }`), wantErr: ErrInvalid},
		{name: "introspection in a mutation", req: postQuery(`mutation { __schema { types { name } } createWorkOrder { id } }`), wantErr: ErrInvalid},

		// Unlisted root fields.
		{name: "unknown field, no default", req: postQuery(`{ assets { id } deleteEverything }`), wantErr: ErrUnknownField},
		{name: "unknown field in a fragment, no default", req: postQuery(`{ ...F } fragment F on Query { reportList { id } }`), wantErr: ErrUnknownField},
		{name: "reserved-looking unknown field", req: postQuery(`{ __other }`), wantErr: ErrUnknownField},
		{name: "unknown field goes to the default", def: "reports", req: postQuery(`{ reportList { id } assets { id } }`), want: needs(assetsRead, reportsRead)},
		{name: "unknown mutation writes the default", def: "reports", req: postQuery(`mutation { runReport { id } }`), want: needs(Need{Area: "reports", Write: true})},
		{name: "invalid beats unknown", req: postJSON(`[{"query":"{ nope }"},{"query":"{"}]`), wantErr: ErrInvalid},

		// Batches.
		{name: "batch of reads", req: postJSON(`[{"query":"{ assets { id } }"},{"query":"{ workOrders { id } }"}]`), want: needs(assetsRead, woRead)},
		{name: "one mutation in a batch", req: postJSON(`[{"query":"{ assets { id } }"}, {"query":"mutation { createWorkOrder { id } }"}]`), want: needs(assetsRead, woWrite)},
		{name: "batch with an unknown field", req: postJSON(`[{"query":"{ assets { id } }"},{"query":"{ nope }"}]`), wantErr: ErrUnknownField},
		{name: "batch with a bad element", req: postJSON(`[{"query":"{ assets { id } }"},{"query":"{ assets "}]`), wantErr: ErrInvalid},
		{name: "batch with a non-object", req: postJSON(`[{"query":"{ assets { id } }"},"{ assets { id } }"]`), wantErr: ErrInvalid},
		{name: "batch with a hash-only element", req: postJSON(`[{"query":"{ assets { id } }"},{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"00"}}}]`), wantErr: ErrInvalid},
		{name: "nested batch", req: postJSON(`[[{"query":"{ assets { id } }"}]]`), wantErr: ErrInvalid},
		{name: "empty batch", req: postJSON(`[]`), wantErr: ErrInvalid},
		{name: "malformed batch", req: postJSON(`[{"query":"{ assets { id } }"},]`), wantErr: ErrInvalid},

		// GET.
		{name: "GET query", req: getQuery(`{ assets { id } }`), want: needs(assetsRead)},
		{name: "GET with the key and other parameters", req: get("apikey=kg_x&query=" + url.QueryEscape(`query Q($n: Int) { workOrders(first: $n) { id } }`) + "&operationName=Q&variables=" + url.QueryEscape(`{"n":5}`)), want: needs(woRead)},
		{name: "GET with + for spaces", req: get("query={+assets+{+id+}+}"), want: needs(assetsRead)},
		{name: "GET mutation", req: getQuery(`mutation { createWorkOrder { id } }`), wantErr: ErrMutationOverGET},
		{name: "GET mutation beside the selected query", req: get("query=" + url.QueryEscape(mixed) + "&operationName=R"), wantErr: ErrMutationOverGET},
		{name: "GET mutation of an unknown field", req: getQuery(`mutation { nope }`), wantErr: ErrMutationOverGET},
		{name: "GET subscription", req: getQuery(`subscription { assets { id } }`), want: needs(assetsRead)},
		{name: "GET query twice", req: get("query=" + url.QueryEscape(`{ assets { id } }`) + "&query=" + url.QueryEscape(`{ workOrders { id } }`)), wantErr: ErrInvalid},
		{name: "GET query twice, one name encoded", req: get("query=%7Bassets%7Bid%7D%7D&%71uery=%7Bassets%7Bid%7D%7D"), wantErr: ErrInvalid},
		{name: "GET operationName twice", req: get("query=%7Bassets%7Bid%7D%7D&operationName=a&operationName=b"), wantErr: ErrInvalid},
		{name: "GET with a semicolon", req: get("x=1;query=" + url.QueryEscape(`mutation { createWorkOrder { id } }`) + "&query=%7Bassets%7Bid%7D%7D"), wantErr: ErrInvalid},
		{name: "GET with an encoded semicolon", req: getQuery(`{ asset(id: "a;b") { id } }`), want: needs(assetsRead)},
		{name: "GET with a persisted document id", req: get("query=%7Bassets%7Bid%7D%7D&documentId=abc"), wantErr: ErrInvalid},
		{name: "POST with a persisted document id in the URL", req: Request{Method: "POST", ContentType: "application/json", RawQuery: "doc_id=1", Body: strings.NewReader(`{"query":"{ assets { id } }"}`)}, wantErr: ErrInvalid},
		{name: "GET without query", req: get("operationName=Q"), wantErr: ErrInvalid},
		{name: "GET with a bad escape", req: get("query=%zz"), wantErr: ErrInvalid},
		{name: "GET with invalid UTF-8", req: get("query=%7B%FF%7D"), wantErr: ErrInvalid},
		{name: "GET with a body", req: Request{Method: "GET", RawQuery: "query=%7Bassets%7Bid%7D%7D", Body: strings.NewReader(`{"query":"mutation { createWorkOrder { id } }"}`)}, wantErr: ErrInvalid},
		{name: "GET with nil body", req: Request{Method: "GET", RawQuery: "query=%7Bassets%7Bid%7D%7D"}, want: needs(assetsRead)},
		{name: "GET variables not an object", req: get("query=%7Bassets%7Bid%7D%7D&variables=%5B%5D"), wantErr: ErrInvalid},
		{name: "GET hash-only persisted query", req: get("extensions=" + url.QueryEscape(`{"persistedQuery":{"version":1,"sha256Hash":"`+sha(`{ assets { id } }`)+`"}}`)), wantErr: ErrInvalid},
		{name: "GET persisted query with its query", req: get("query=" + url.QueryEscape(`{ assets { id } }`) + "&extensions=" + url.QueryEscape(`{"persistedQuery":{"version":1,"sha256Hash":"`+sha(`{ assets { id } }`)+`"}}`)), want: needs(assetsRead)},

		// Methods and content types.
		{name: "POST with query in the URL too", req: Request{Method: "POST", ContentType: "application/json", RawQuery: "query=%7Bassets%7Bid%7D%7D", Body: strings.NewReader(`{"query":"mutation { createWorkOrder { id } }"}`)}, wantErr: ErrInvalid},
		{name: "POST with extensions in the URL", req: Request{Method: "POST", ContentType: "application/json", RawQuery: "extensions=%7B%7D", Body: strings.NewReader(`{"query":"{ assets { id } }"}`)}, wantErr: ErrInvalid},
		{name: "POST with the key in the URL", req: Request{Method: "POST", ContentType: "application/json", RawQuery: "apikey=kg_x", Body: strings.NewReader(`{"query":"{ assets { id } }"}`)}, want: needs(assetsRead)},
		{name: "content type with charset, any case", req: Request{Method: "POST", ContentType: "Application/JSON; charset=utf-8", Body: strings.NewReader(`{"query":"{ assets { id } }"}`)}, want: needs(assetsRead)},
		{name: "application/graphql with parameters", req: Request{Method: "POST", ContentType: " application/GraphQL ;charset=UTF-8", Body: strings.NewReader(`{ assets { id } }`)}, want: needs(assetsRead)},
		{name: "no content type", req: Request{Method: "POST", Body: strings.NewReader(`{"query":"{ assets { id } }"}`)}, wantErr: ErrInvalid},
		{name: "text/plain", req: Request{Method: "POST", ContentType: "text/plain", Body: strings.NewReader(`{"query":"{ assets { id } }"}`)}, wantErr: ErrInvalid},
		{name: "form", req: Request{Method: "POST", ContentType: "application/x-www-form-urlencoded", Body: strings.NewReader(`query=%7Bassets%7Bid%7D%7D`)}, wantErr: ErrInvalid},
		{name: "application/json-ish", req: Request{Method: "POST", ContentType: "application/jsonp", Body: strings.NewReader(`{"query":"{ assets { id } }"}`)}, wantErr: ErrInvalid},
		{name: "PUT", req: Request{Method: "PUT", ContentType: "application/json", Body: strings.NewReader(`{"query":"{ assets { id } }"}`)}, wantErr: ErrInvalid},
		{name: "lower-case get", req: Request{Method: "get", RawQuery: "query=%7Bassets%7Bid%7D%7D"}, wantErr: ErrInvalid},

		// JSON shape.
		{name: "malformed JSON", req: postJSON(`{"query":"{ assets { id } }"`), wantErr: ErrInvalid},
		{name: "trailing data", req: postJSON(`{"query":"{ assets { id } }"} {"query":"mutation { createWorkOrder { id } }"}`), wantErr: ErrInvalid},
		{name: "trailing whitespace", req: postJSON("{\"query\":\"{ assets { id } }\"}\r\n\t "), want: needs(assetsRead)},
		{name: "empty body", req: postJSON(``), wantErr: ErrInvalid},
		{name: "JSON null", req: postJSON(`null`), wantErr: ErrInvalid},
		{name: "JSON string", req: postJSON(`"{ assets { id } }"`), wantErr: ErrInvalid},
		{name: "query not a string", req: postJSON(`{"query":["{ assets { id } }"]}`), wantErr: ErrInvalid},
		{name: "query null", req: postJSON(`{"query":null}`), wantErr: ErrInvalid},
		{name: "query missing", req: postJSON(`{"operationName":"Q"}`), wantErr: ErrInvalid},
		{name: "query empty", req: postJSON(`{"query":""}`), wantErr: ErrInvalid},
		{name: "query blank", req: postJSON(`{"query":" \n\t"}`), wantErr: ErrInvalid},
		{name: "query only comments", req: postJSON(`{"query":"# nothing\n"}`), wantErr: ErrInvalid},
		{name: "only a fragment", req: postQuery(`fragment F on Query { assets { id } }`), wantErr: ErrInvalid},
		{name: "operationName not a string", req: postJSON(`{"query":"{ assets { id } }","operationName":1}`), wantErr: ErrInvalid},
		{name: "variables a string", req: postJSON(`{"query":"{ assets { id } }","variables":"{}"}`), wantErr: ErrInvalid},
		{name: "extensions an array", req: postJSON(`{"query":"{ assets { id } }","extensions":[]}`), wantErr: ErrInvalid},
		{name: "persistedQuery not an object", req: postJSON(`{"query":"{ assets { id } }","extensions":{"persistedQuery":true}}`), wantErr: ErrInvalid},
		{name: "sha256Hash not a string", req: postJSON(`{"query":"{ assets { id } }","extensions":{"persistedQuery":{"sha256Hash":1}}}`), wantErr: ErrInvalid},
		{name: "other extensions are fine", req: postJSON(`{"query":"{ assets { id } }","extensions":{"tracing":true,"persistedQuery":{"version":1}}}`), want: needs(assetsRead)},
		{name: "unknown member", req: postJSON(`{"query":"{ assets { id } }","documentId":"abc"}`), wantErr: ErrInvalid},
		{name: "member in another case", req: postJSON(`{"query":"{ assets { id } }","Query":"mutation { createWorkOrder { id } }"}`), wantErr: ErrInvalid},

		// Duplicate keys: the judge and the backend could each pick another.
		{name: "query twice", req: postJSON(`{"query":"{ assets { id } }","query":"mutation { createWorkOrder { id } }"}`), wantErr: ErrInvalid},
		{name: "query twice, one escaped", req: postJSON(`{"query":"{ assets { id } }","\u0071uery":"mutation { createWorkOrder { id } }"}`), wantErr: ErrInvalid},
		{name: "query twice in a batch element", req: postJSON(`[{"query":"{ assets { id } }","query":"mutation { createWorkOrder { id } }"}]`), wantErr: ErrInvalid},
		{name: "operationName twice", req: postJSON(`{"query":"{ assets { id } }","operationName":"a","operationName":"b"}`), wantErr: ErrInvalid},
		{name: "extensions twice", req: postJSON(`{"query":"{ assets { id } }","extensions":{},"extensions":{}}`), wantErr: ErrInvalid},
		{name: "a variable twice", req: postJSON(`{"query":"query ($id: ID) { asset(id: $id) { id } }","variables":{"id":"1","id":"2"}}`), wantErr: ErrInvalid},
		{name: "a member twice deep in variables", req: postJSON(`{"query":"{ assets { id } }","variables":{"a":[{"b":1,"b":2}]}}`), wantErr: ErrInvalid},
		{name: "another extension twice", req: postJSON(`{"query":"{ assets { id } }","extensions":{"tracing":true,"tracing":false}}`), wantErr: ErrInvalid},
		{name: "persistedQuery twice", req: postJSON(`{"query":"{ assets { id } }","extensions":{"persistedQuery":{},"persistedQuery":{}}}`), wantErr: ErrInvalid},
		{name: "sha256Hash twice", req: postJSON(`{"query":"{ assets { id } }","extensions":{"persistedQuery":{"sha256Hash":"` + sha(`{ assets { id } }`) + `","sha256Hash":"00"}}}`), wantErr: ErrInvalid},

		// Persisted queries.
		{name: "hash-only persisted query", req: postJSON(`{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"` + sha(`mutation { createWorkOrder { id } }`) + `"}}}`), wantErr: ErrInvalid},
		{name: "persisted query with its query", req: postJSON(`{"query":"{ assets { id } }","extensions":{"persistedQuery":{"version":1,"sha256Hash":"` + strings.ToUpper(sha(`{ assets { id } }`)) + `"}}}`), want: needs(assetsRead)},
		{name: "persisted query with an empty hash", req: postJSON(`{"query":"{ assets { id } }","extensions":{"persistedQuery":{"version":1,"sha256Hash":""}}}`), wantErr: ErrInvalid},
		{name: "persisted query without a hash", req: postJSON(`{"query":"{ assets { id } }","extensions":{"persistedQuery":{"version":1}}}`), want: needs(assetsRead)},
		{name: "persisted query with another query", req: postJSON(`{"query":"{ assets { id } }","extensions":{"persistedQuery":{"version":1,"sha256Hash":"` + sha(`mutation { createWorkOrder { id } }`) + `"}}}`), wantErr: ErrInvalid},

		// Documents.
		{name: "unparseable document", req: postQuery(`{ assets { id `), wantErr: ErrInvalid},
		{name: "unparseable application/graphql", req: postGraphQL(`mutation createWorkOrder`), wantErr: ErrInvalid},
		{name: "invalid UTF-8 body", req: postGraphQL("{ assets { id } } # \xff"), wantErr: ErrInvalid},
		{name: "invalid UTF-8 in JSON", req: postJSON("{\"query\":\"{ assets { id } } # \xc3\"}"), wantErr: ErrInvalid},
		{name: "U+2028 ends a comment for some parsers", req: postQuery("{ assets { id } } # \u2028 mutation { createWorkOrder { id } }"), wantErr: ErrInvalid},
		{name: "U+0085", req: postQuery("{ assets { id } } # \u0085"), wantErr: ErrInvalid},
		{name: "comment then mutation on the next line", req: postQuery("{ assets { id } } # x\nmutation { createWorkOrder { id } }"), want: needs(assetsRead, woWrite)},
		{name: "block string", req: postQuery(`mutation { createWorkOrder(d: """ } mutation { """) { id } }`), want: needs(woWrite)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var sent []byte
			if tt.req.Body != nil {
				sent, _ = io.ReadAll(tt.req.Body)
				tt.req.Body = bytes.NewReader(sent)
			}
			e := testEndpoint(t, tt.def)
			got, body, err := e.Judge(tt.req, 0)
			if !bytes.Equal(body, sent) {
				t.Errorf("body: got %q, want %q", body, sent)
			}
			// Again, with the document now in the endpoint's cache.
			tt.req.Body = bytes.NewReader(sent)
			got2, _, err2 := e.Judge(tt.req, 0)
			if !reflect.DeepEqual(got2, got) || fmt.Sprint(err2) != fmt.Sprint(err) {
				t.Errorf("second time: got %+v, %v; first time %+v, %v", got2, err2, got, err)
			}
			if tt.wantErr != nil {
				t.Logf("error: %v", err)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error: got %v, want %v", err, tt.wantErr)
				}
				if !reflect.DeepEqual(got, Judgement{}) {
					t.Errorf("judgement with an error: got %+v, want none", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("error: got %v, want none", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func jsonString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// Error messages say what is wrong without quoting the document.
func TestJudgeMessages(t *testing.T) {
	t.Parallel()
	e := testEndpoint(t, "")
	tests := []struct {
		req  Request
		want string
	}{
		{postQuery("{\n  secretField(x: \"s3cr3t\") {"), "the query is not valid GraphQL (line 2, column"},
		{postJSON(`{"query":"{ assets { id } }","query":"{ secretField }"}`), `the JSON has a member twice in one object ("/query")`},
		{postJSON(`{"query":"{ assets { id } }" , "variables": {"secret": 1,}}`), `the JSON is not valid (after byte`},
		{postJSON(`{"extensions":{"persistedQuery":{"sha256Hash":"s3cr3t"}}}`), "persisted queries by hash alone are not accepted"},
		{postJSON(`[{"query":"{ assets { id } }"},{"query":"{ s3cr3t"}]`), "batch element 1: the query is not valid GraphQL"},
		{postJSON(`[{"query":"{ assets { id } }"},{"query":"{ unmapped(x: \"s3cr3t\") }"}]`), `root field "unmapped" is not mapped to an area`},
		{getQuery(`mutation { createWorkOrder { id } }`), "a mutation must be sent with POST"},
		{postQuery(`{ ` + strings.Repeat("x", 1000) + ` }`), `root field "xxxxxxxx`},
	}
	for _, tt := range tests {
		_, _, err := e.Judge(tt.req, 0)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("error: got %v, want it to contain %q", err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "secret") || len(err.Error()) > 200 {
			t.Errorf("error quotes the document: %v", err)
		}
	}
}

// countingReader is an endless body that counts what is read from it.
type countingReader struct{ n int64 }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	r.n += int64(len(p))
	return len(p), nil
}

func TestJudgeBodyLimit(t *testing.T) {
	t.Parallel()
	e := testEndpoint(t, "")
	doc := `{"query":"{ assets { id } }"}`
	padded := func(n int) Request { return postJSON(doc + strings.Repeat(" ", n-len(doc))) }

	const max = 100
	if _, body, err := e.Judge(padded(max), max); err != nil || len(body) != max {
		t.Errorf("exactly max: got %d bytes, %v; want %d bytes, no error", len(body), err, max)
	}
	if _, body, err := e.Judge(padded(max+1), max); !errors.Is(err, ErrTooLarge) || len(body) != max+1 {
		t.Errorf("max+1: got %d bytes, %v; want %d bytes, %v", len(body), err, max+1, ErrTooLarge)
	}
	// ContentLength only sizes the buffer: a wrong one changes nothing.
	for _, cl := range []int64{-1, 1, max - 1, max, max + 1, 1 << 40} {
		req := padded(max)
		req.ContentLength = cl
		if _, body, err := e.Judge(req, max); err != nil || len(body) != max {
			t.Errorf("exactly max, ContentLength %d: got %d bytes, %v; want %d bytes, no error", cl, len(body), err, max)
		}
		req = padded(max + 1)
		req.ContentLength = cl
		if _, _, err := e.Judge(req, max); !errors.Is(err, ErrTooLarge) {
			t.Errorf("max+1, ContentLength %d: got %v, want %v", cl, err, ErrTooLarge)
		}
	}
	r := &countingReader{}
	if _, _, err := e.Judge(Request{Method: "POST", ContentType: "application/json", Body: r}, max); !errors.Is(err, ErrTooLarge) {
		t.Errorf("endless body: got %v, want %v", err, ErrTooLarge)
	}
	if r.n > max+1 {
		t.Errorf("endless body: read %d bytes, want at most %d", r.n, max+1)
	}
	// The default limit is 1 MiB.
	if _, _, err := e.Judge(padded(DefaultMaxBody), 0); err != nil {
		t.Errorf("1 MiB with the default limit: %v", err)
	}
	if _, _, err := e.Judge(padded(DefaultMaxBody+1), 0); !errors.Is(err, ErrTooLarge) {
		t.Errorf("1 MiB + 1 with the default limit: got %v, want %v", err, ErrTooLarge)
	}
	// Too large wins over what the body holds, and over GET's rules.
	if _, _, err := e.Judge(Request{Method: "GET", RawQuery: "query=mutation%7Bx%7D", Body: strings.NewReader(strings.Repeat("x", max+1))}, max); !errors.Is(err, ErrTooLarge) {
		t.Errorf("large GET body: got %v, want %v", err, ErrTooLarge)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestJudgeReadError(t *testing.T) {
	t.Parallel()
	_, _, err := testEndpoint(t, "").Judge(Request{Method: "POST", ContentType: "application/json", Body: failingReader{}}, 0)
	if err == nil || errors.Is(err, ErrInvalid) || errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "connection reset") {
		t.Errorf("got %v, want the reader's error", err)
	}
}

func TestDocCacheBounded(t *testing.T) {
	t.Parallel()
	e := testEndpoint(t, "")
	for i := range cacheEntries + 10 {
		if _, _, err := e.Judge(postQuery(fmt.Sprintf("query Q%d { assets { id } }", i)), 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.cache.m); n != cacheEntries {
		t.Errorf("cache holds %d documents, want %d", n, cacheEntries)
	}
	long := "{ assets { id } }" + strings.Repeat(" ", cacheMaxDoc)
	if _, _, err := e.Judge(postQuery(long), 0); err != nil {
		t.Fatal(err)
	}
	if e.cache.get(long) != nil || e.cache.m[long] != nil {
		t.Errorf("a document over %d bytes was cached", cacheMaxDoc)
	}
}

// A cached mutation is still refused over GET, and still needs a write.
func TestDocCacheMutation(t *testing.T) {
	t.Parallel()
	e := testEndpoint(t, "")
	const doc = `mutation { createWorkOrder { id } }`
	if j, _, err := e.Judge(postQuery(doc), 0); err != nil || !reflect.DeepEqual(j, needs(woWrite)) {
		t.Fatalf("POST: got %+v, %v", j, err)
	}
	if _, _, err := e.Judge(getQuery(doc), 0); !errors.Is(err, ErrMutationOverGET) {
		t.Errorf("GET after POST: got %v, want %v", err, ErrMutationOverGET)
	}
}

// One endpoint judges requests from many goroutines (run with -race).
func TestJudgeConcurrent(t *testing.T) {
	t.Parallel()
	e := testEndpoint(t, "reports")
	docs := []string{`{ assets { id } }`, `mutation { createWorkOrder { id } }`, `{ ...F } fragment F on Query { reportList { id } }`}
	want := []Judgement{needs(assetsRead), needs(woWrite), needs(reportsRead)}
	done := make(chan error)
	for g := range 4 {
		go func() {
			var err error
			for i := range 200 {
				k := (g + i) % len(docs)
				j, _, jerr := e.Judge(postQuery(docs[k]), 0)
				if jerr != nil || !reflect.DeepEqual(j, want[k]) {
					err = fmt.Errorf("%s: got %+v, %v; want %+v", docs[k], j, jerr, want[k])
				}
			}
			done <- err
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
