package admin

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/bolt"
	"github.com/keygate/keygate/keystore/storetest"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// stores are the Store implementations every HTTP test runs against.
var stores = []struct {
	name string
	open func(t *testing.T) keystore.Store
}{
	{"memory", func(t *testing.T) keystore.Store { return storetest.NewMemory() }},
	{"bolt", func(t *testing.T) keystore.Store {
		t.Helper()
		s, err := bolt.Open(filepath.Join(t.TempDir(), "keys.db"), bolt.Options{})
		if err != nil {
			t.Fatalf("opening bolt store: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
}

// eachStore runs fn once per Store implementation.
func eachStore(t *testing.T, fn func(t *testing.T, open func(t *testing.T) keystore.Store)) {
	t.Helper()
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			fn(t, s.open)
		})
	}
}

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type recInvalidator struct {
	mu      sync.Mutex
	digests map[keystore.Digest]int
}

func (r *recInvalidator) Invalidate(ds ...keystore.Digest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range ds {
		r.digests[d]++
	}
}

func (r *recInvalidator) count(d keystore.Digest) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.digests[d]
}

type pendingUsage map[string][]keystore.UsageDelta

func (p pendingUsage) PendingUsage(id string) []keystore.UsageDelta { return p[id] }

// env is an admin handler over a fresh store, with a fixed clock.
type env struct {
	t     *testing.T
	store keystore.Store
	svc   *keystore.Service
	h     *handler
	clock *testClock
	inv   *recInvalidator
	logs  *observer.ObservedLogs
}

func newEnv(t *testing.T, store keystore.Store) *env {
	t.Helper()
	areas, err := keystore.NewAreas(map[string][]string{
		"assets":     {"/maximo/oslc/os/mxasset*"},
		"workorders": {"/maximo/oslc/os/mxwo*"},
	})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	e := &env{t: t, store: store, clock: &testClock{now: t0}, inv: &recInvalidator{digests: map[keystore.Digest]int{}}, logs: logs}
	e.svc = &keystore.Service{Store: store, Areas: areas, Now: e.clock.Now, Invalidator: e.inv}
	e.h = New(Config{Service: e.svc, Logger: zap.New(core)}).(*handler)
	return e
}

var (
	local     = keystore.LocalActor()
	adminKey  = keystore.Actor{ID: "key_admin", User: "ADMIN", Rights: keystore.Rights{Admin: true, Areas: map[string]keystore.Level{}}}
	noActor   *keystore.Actor
	specOnce  sync.Once
	specValid validator.Validator
	specErr   error
)

// specValidator returns a validator for the embedded OpenAPI document.
func specValidator(t *testing.T) validator.Validator {
	t.Helper()
	specOnce.Do(func() {
		doc, err := libopenapi.NewDocument(OpenAPI)
		if err != nil {
			specErr = err
			return
		}
		v, errs := validator.NewValidator(doc)
		if len(errs) > 0 {
			specErr = errs[0]
			return
		}
		specValid = v
	})
	if specErr != nil {
		t.Fatalf("loading the OpenAPI document: %v", specErr)
	}
	return specValid
}

var specMu sync.Mutex

type result struct {
	status int
	header http.Header
	body   []byte
	obj    map[string]any
}

// do sends a request as actor (nil: none) and checks the response against
// the OpenAPI document when the request reached a documented route.
func (e *env) do(a *keystore.Actor, method, target, body string) *result {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if a != nil {
		req = req.WithContext(WithActor(req.Context(), *a))
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	res := &result{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	// Only the CSV report answers anything but JSON.
	if ct := res.header.Get("Content-Type"); ct != "application/json" && !(ct == "text/csv; charset=utf-8" && rec.Code == http.StatusOK) {
		e.t.Fatalf("%s %s: got Content-Type %q, want application/json", method, target, ct)
	}
	if res.header.Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(res.body, &res.obj); err != nil {
			e.t.Fatalf("%s %s: body %q is not a JSON object: %v", method, target, res.body, err)
		}
	}
	if _, pattern := e.h.mux.Handler(req); e.h.patterns[pattern] && path.Clean(req.URL.Path) == req.URL.Path {
		e.checkSpec(method, target, body, rec.Result())
	}
	return res
}

// checkSpec validates a response against the OpenAPI document.
func (e *env) checkSpec(method, target, body string, resp *http.Response) {
	e.t.Helper()
	v := specValidator(e.t)
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	resp.Body = io.NopCloser(bytes.NewReader(mustRead(e.t, resp.Body)))
	specMu.Lock()
	ok, errs := v.ValidateHttpResponse(req, resp)
	specMu.Unlock()
	if !ok {
		var msgs []string
		for _, err := range errs {
			msgs = append(msgs, err.Message+": "+err.Reason)
			for _, sv := range err.SchemaValidationErrors {
				msgs = append(msgs, "  "+sv.Reason+" at "+sv.FieldPath)
			}
		}
		e.t.Fatalf("%s %s: response %d does not match the OpenAPI document:\n%s", method, target, resp.StatusCode, strings.Join(msgs, "\n"))
	}
}

func mustRead(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// want checks the status and, for errors, the code.
func (r *result) want(t *testing.T, status int, code string) *result {
	t.Helper()
	if r.status != status {
		t.Fatalf("got status %d (%s), want %d", r.status, r.body, status)
	}
	if code != "" {
		if got := r.errCode(); got != code {
			t.Fatalf("got error code %q (%s), want %q", got, r.body, code)
		}
	}
	return r
}

func (r *result) errCode() string {
	e, _ := r.obj["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func (r *result) errMessage() string {
	e, _ := r.obj["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

func (r *result) str(field string) string {
	s, _ := r.obj[field].(string)
	return s
}

// create makes a key through the API and returns it and its secret.
func (e *env) create(a *keystore.Actor, body string) (*result, string) {
	e.t.Helper()
	r := e.do(a, "POST", "/keys", body)
	if r.status != http.StatusCreated {
		e.t.Fatalf("create %s: got %d %s, want 201", body, r.status, r.body)
	}
	return r, r.str("key")
}
