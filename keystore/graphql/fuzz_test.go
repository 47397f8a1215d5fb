package graphql

import (
	"bytes"
	"encoding/json"
	"net/url"
	"testing"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
)

// FuzzJudge sends a document in each of the ways a client can, and as a raw
// JSON body. Judge must not panic, must hand back the body as sent, and a
// document holding a mutation must never pass without a write.
func FuzzJudge(f *testing.F) {
	for _, doc := range []string{
		`{ assets { id } }`,
		`mutation { a: createWorkOrder { id } }`,
		`query R { assets { id } } mutation W { ...F } fragment F on Mutation { ... on M { createWorkOrder { id } } }`,
		`query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }`,
		`mutation { __typename }`,
		`{ __schema { types { name } } }`,
		`subscription { workOrders { id } }`,
		`{"query":"mutation { createWorkOrder { id } }","operationName":"x","variables":{},"extensions":{}}`,
		`[{"query":"{ assets { id } }"},{"query":"mutation { deleteAll }"}]`,
		`{"query":"{ a }","query":"mutation { b }"}`,
		`{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"00"}}}`,
	} {
		for mode := range uint8(4) {
			f.Add(doc, mode)
		}
	}
	e, err := NewEndpoint([]string{"/g"}, map[string][]string{
		"assets":     {"asset", "assets"},
		"workorders": {"workOrder", "workOrders", "createWorkOrder"},
	}, "reports")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, doc string, mode uint8) {
		var req Request
		var sent []byte
		switch mode % 4 {
		case 0:
			sent = []byte(doc)
			req = Request{Method: "POST", ContentType: "application/graphql", Body: bytes.NewReader(sent)}
		case 1:
			sent, _ = json.Marshal(map[string]string{"query": doc})
			req = Request{Method: "POST", ContentType: "application/json", Body: bytes.NewReader(sent)}
		case 2:
			req = Request{Method: "GET", RawQuery: "query=" + url.QueryEscape(doc)}
		case 3:
			sent = []byte(doc) // the document is the JSON body
			req = Request{Method: "POST", ContentType: "application/json", Body: bytes.NewReader(sent)}
		}
		j, body, err := e.Judge(req, 0)
		if !bytes.Equal(body, sent) {
			t.Fatalf("body: got %q, want %q", body, sent)
		}
		if err != nil {
			return
		}
		docs := []string{doc}
		if mode%4 == 1 || mode%4 == 3 { // what json.Marshal sent may differ from doc: invalid UTF-8
			docs = decodeV1(t, sent)
		}
		for _, d := range docs {
			parsed, perr := parser.ParseQuery(&ast.Source{Input: d})
			if perr != nil {
				t.Fatalf("judged a document gqlparser refuses: %v", perr)
			}
			if hasMutation(parsed) && !hasWrite(j) {
				t.Fatalf("a document with a mutation passed without a write: %+v", j)
			}
		}
	})
}

// decodeV1 reads the documents of an accepted JSON body with encoding/json,
// a second opinion on what a backend sees.
func decodeV1(t *testing.T, body []byte) []string {
	t.Helper()
	type request struct {
		Query string `json:"query"`
	}
	var batch []request
	if err := json.Unmarshal(body, &batch); err == nil {
		docs := make([]string, len(batch))
		for i, r := range batch {
			docs[i] = r.Query
		}
		return docs
	}
	var r request
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("accepted a body encoding/json refuses: %v", err)
	}
	return []string{r.Query}
}

func hasMutation(doc *ast.QueryDocument) bool {
	for _, op := range doc.Operations {
		if op.Operation == ast.Mutation {
			return true
		}
	}
	return false
}

func hasWrite(j Judgement) bool {
	for _, n := range j.Needs {
		if n.Write {
			return true
		}
	}
	return false
}
