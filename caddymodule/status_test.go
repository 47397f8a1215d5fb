package caddymodule

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keygate/keygate/keystore"
)

// The handler counts the class of the answer the client got, whatever way
// the next handler answers: a status written, an informational answer
// first, a body alone, a copy through ReadFrom, or an error Caddy answers.
// The response writer the next handler gets still reaches the real one's
// optional interfaces (http.ResponseController: Flush).
func TestHandlerCountsAnswerClass(t *testing.T) {
	t.Parallel()
	rig := newBenchRig(t, benchOptions{})
	nexts := []struct {
		name string
		next caddyhttp.HandlerFunc
		want string
	}{
		{"404 written", func(w http.ResponseWriter, _ *http.Request) error { w.WriteHeader(404); return nil }, "4xx"},
		{"nothing written", func(http.ResponseWriter, *http.Request) error { return nil }, "2xx"},
		{"body only", func(w http.ResponseWriter, _ *http.Request) error { _, err := w.Write([]byte("ok")); return err }, "2xx"},
		{"ReadFrom", func(w http.ResponseWriter, _ *http.Request) error {
			_, err := w.(io.ReaderFrom).ReadFrom(strings.NewReader("body"))
			return err
		}, "2xx"},
		{"103 then 302", func(w http.ResponseWriter, _ *http.Request) error {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusFound)
			return nil
		}, "3xx"},
		{"flushed through ResponseController", func(w http.ResponseWriter, _ *http.Request) error {
			w.WriteHeader(http.StatusServiceUnavailable)
			return http.NewResponseController(w).Flush()
		}, "5xx"},
		{"error Caddy answers", func(http.ResponseWriter, *http.Request) error {
			return caddyhttp.Error(http.StatusBadGateway, errors.New("backend down"))
		}, "5xx"},
		{"plain error", func(http.ResponseWriter, *http.Request) error { return errors.New("boom") }, "5xx"},
	}
	want := map[string]int64{}
	for _, n := range nexts {
		r, _ := caddyRequest(benchTarget)
		r.Header.Set("Apikey", rig.key)
		rec := httptest.NewRecorder()
		err := rig.h.ServeHTTP(rec, r, n.next)
		if (err != nil) != strings.Contains(n.name, "error") {
			t.Fatalf("%s: ServeHTTP: %v", n.name, err)
		}
		want[n.want]++
	}
	meter := rig.h.app.res.meter
	if err := meter.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	const id = "key_bench0000000000000001"
	day := time.Now().UTC().Truncate(24 * time.Hour)
	got, err := rig.store.UsagePrefixed(t.Context(), keystore.PartPrefix(id, keystore.ByStatus), day.AddDate(0, 0, -1), day.AddDate(0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	for class, n := range want {
		var sum int64
		for _, d := range got[keystore.PartUsageID(id, keystore.ByStatus, class)] {
			sum += d.Requests
		}
		if sum != n {
			t.Errorf("%s: counted %d, want %d", class, sum, n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("classes counted: %d ids, want %d", len(got), len(want))
	}
}
