package admin

import (
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"

	"github.com/keygate/keygate/keystore/storetest"
)

func TestOpenAPIDocumentIsValid(t *testing.T) {
	t.Parallel()
	v := specValidator(t)
	specMu.Lock()
	ok, errs := v.ValidateDocument()
	specMu.Unlock()
	if !ok {
		for _, err := range errs {
			t.Errorf("OpenAPI document: %v", err)
		}
	}
	doc, err := libopenapi.NewDocument(OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if got := doc.GetVersion(); got != "3.1.0" {
		t.Fatalf("got OpenAPI version %q, want 3.1.0", got)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("building the model: %v", err)
	}
	scheme, ok := m.Model.Components.SecuritySchemes.Get("apikey")
	if !ok {
		t.Fatal("no apikey security scheme")
	}
	if scheme.Type != "apiKey" || scheme.In != "header" || scheme.Name != "apikey" {
		t.Fatalf("got scheme %s in %s named %s, want apiKey in header named apikey", scheme.Type, scheme.In, scheme.Name)
	}
}

// documentedOperations lists "METHOD /path" of every operation in the
// document, with path parameters filled in.
func documentedOperations(t *testing.T) []string {
	t.Helper()
	doc, err := libopenapi.NewDocument(OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for path, item := range m.Model.Paths.PathItems.FromOldest() {
		for method := range item.GetOperations().FromOldest() {
			ops = append(ops, strings.ToUpper(method)+" "+path)
		}
	}
	sort.Strings(ops)
	return ops
}

// TestOpenAPIEveryOperationIsRouted walks every documented path and method
// and checks the handler routes it to an endpoint (not the mux's 404/405),
// and that every route is documented.
func TestOpenAPIEveryOperationIsRouted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewMemory())
	ops := documentedOperations(t)
	if len(ops) != 21 {
		t.Fatalf("got %d documented operations %v, want 21", len(ops), ops)
	}
	fill := strings.NewReplacer("{id}", "key_x", "{user}", "U")
	documented := map[string]bool{}
	for _, op := range ops {
		method, path, _ := strings.Cut(op, " ")
		req := httptest.NewRequest(method, fill.Replace(path), nil)
		_, pattern := e.h.mux.Handler(req)
		if !e.h.patterns[pattern] {
			t.Errorf("%s: got no route (pattern %q), want one", op, pattern)
			continue
		}
		documented[pattern] = true
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		if rec.Code == http.StatusMethodNotAllowed || (rec.Code == http.StatusNotFound && strings.Contains(rec.Body.String(), "no admin API endpoint")) {
			t.Errorf("%s: got %d %s from the router, want the endpoint", op, rec.Code, rec.Body)
		}
	}
	for p := range e.h.patterns {
		if !documented[p] {
			t.Errorf("route %q is not in the OpenAPI document", p)
		}
	}
}

func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewMemory())
	r := e.do(noActor, "GET", "/openapi.json", "")
	r.want(t, http.StatusOK, "")
	if r.obj["openapi"] != "3.1.0" {
		t.Fatalf("got openapi %v, want 3.1.0", r.obj["openapi"])
	}
}

// TestSpecValidatorIsLive guards the response checks of env.do: a body
// that breaks the document must be caught.
func TestSpecValidatorIsLive(t *testing.T) {
	t.Parallel()
	v := specValidator(t)
	tests := []struct {
		name, path, body string
		ok               bool
	}{
		{"good", "/license", `{"limit":null,"in_use":3}`, true},
		{"wrong type", "/license", `{"limit":"many","in_use":3}`, false},
		{"missing field", "/license", `{"limit":3}`, false},
		{"key without status", "/keys/key_x", `{"id":"key_x"}`, false},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		rec.Header().Set("Content-Type", "application/json")
		rec.WriteHeader(http.StatusOK)
		rec.WriteString(tt.body)
		specMu.Lock()
		ok, _ := v.ValidateHttpResponse(httptest.NewRequest("GET", tt.path, nil), rec.Result())
		specMu.Unlock()
		if ok != tt.ok {
			t.Errorf("%s: got valid %v, want %v", tt.name, ok, tt.ok)
		}
	}
}
