package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// received is what the backend saw of one request.
type received struct {
	Method     string
	Path       string
	RawQuery   string
	RequestURI string // as it arrived on the wire
	Header     http.Header
	Body       string
}

// backend is a Maximo stand-in on loopback that records every request.
type backend struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []received
}

func newBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.got = append(b.got, received{r.Method, r.URL.Path, r.URL.RawQuery, r.RequestURI, r.Header.Clone(), string(body)})
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if p := strings.ToLower(r.URL.Path); !strings.HasPrefix(p, "/maximo/") && !strings.HasPrefix(p, "/mce/") {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]any{"Error": map[string]string{"message": "BMXAA8727E - not found", "statusCode": "404", "reasonCode": "BMXAA8727E"}})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{
			"member":       []map[string]string{{"assetnum": "11430", "siteid": "BEDFORD", "status": "OPERATING"}},
			"responseInfo": map[string]any{"href": r.URL.String(), "totalCount": 1},
			"runAsUser":    r.Header.Get("X-Run-As-User"),
		})
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() string { return strings.TrimPrefix(b.srv.URL, "http://") }

func (b *backend) last() received {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.got) == 0 {
		return received{}
	}
	return b.got[len(b.got)-1]
}

func (b *backend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.got)
}

func (b *backend) all() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]received(nil), b.got...)
}
