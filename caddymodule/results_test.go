package caddymodule

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/graphql"
)

// TestEveryOutcomeCountedOnce drives both handlers into every outcome of the
// Gate and checks that each request moved exactly one counter: its own.
func TestEveryOutcomeCountedOnce(t *testing.T) {
	rig := newBenchRig(t, benchOptions{})
	app := rig.h.app
	addKey := func(id string, mod func(*keystore.Key)) string {
		secret, err := keystore.GenerateKey(keystore.DefaultPrefix)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		k := &keystore.Key{ID: id, Name: id, User: "MXINTADM", Rights: []string{"assets:read"},
			Start: keystore.DisplayStart(secret), Digest: keystore.DigestOf(secret), CreatedAt: now, CreatedBy: keystore.LocalActorID}
		mod(k)
		if err := rig.store.CreateKey(t.Context(), k, keystore.CreateLimits{}, now); err != nil {
			t.Fatal(err)
		}
		return secret
	}
	rated := addKey("key_rated00000000000000001", func(k *keystore.Key) { k.Rate = &keystore.Rate{Limit: 1, Per: time.Hour} })
	quota := addKey("key_quota00000000000000001", func(k *keystore.Key) { k.Quota = &keystore.Quota{Limit: 1, Period: "month"} })
	nocred := addKey("key_nocred0000000000000001", func(k *keystore.Key) { k.User = "NOBODY" })
	elsewhere := addKey("key_elsewhere0000000000001", func(k *keystore.Key) { k.AllowedIPs = []string{"198.51.100.0/24"} })
	prod := addKey("key_prod000000000000000001", func(k *keystore.Key) { k.Environments = []string{"prod"} })
	app.creds["MXINTADM"] = "native"
	ep, err := graphql.NewEndpoint([]string{"/graphql"}, map[string][]string{"assets": {"assets"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := app.areas.AddGraphQL(ep, 64); err != nil {
		t.Fatal(err)
	}
	strict := &Handler{app: app, extractor: rig.h.extractor, policy: keystore.Policy{RequireCredential: true}}
	adm := &AdminHandler{app: app, extractor: rig.h.extractor, Mount: "/keygate"}

	type step struct {
		name    string
		h       func(http.ResponseWriter, *http.Request) error
		method  string
		path    string
		body    string
		key     string
		prepare func()
		ctx     func(context.Context) context.Context
		want    keystore.Outcome
	}
	serve := func(w http.ResponseWriter, r *http.Request) error { return rig.h.ServeHTTP(w, r, nopNext) }
	steps := []step{
		{name: "ok", h: serve, key: rig.key, want: keystore.Allowed},
		{name: "no key", h: serve, want: keystore.InvalidKey},
		{name: "forbidden read", h: serve, key: rig.key, path: "/maximo/oslc/os/mxwo", want: keystore.ForbiddenRead},
		{name: "forbidden write", h: serve, key: rig.key, method: "POST", want: keystore.ForbiddenWrite},
		{name: "no credential", h: func(w http.ResponseWriter, r *http.Request) error { return strict.ServeHTTP(w, r, nopNext) }, key: nocred, want: keystore.NoCredential},
		{name: "not admin", h: func(w http.ResponseWriter, r *http.Request) error { return adm.ServeHTTP(w, r, nopNext) }, key: rig.key, path: "/keygate/keys", want: keystore.NotAdmin},
		{name: "graphql query", h: serve, key: rig.key, method: "POST", path: "/graphql", body: `{"query":"{ assets { id } }"}`, want: keystore.Allowed},
		{name: "graphql garbage", h: serve, key: rig.key, method: "POST", path: "/graphql", body: `{"query":`, want: keystore.InvalidRequest},
		{name: "graphql mutation over GET", h: serve, key: rig.key, path: "/graphql?query=mutation%7Bassets%7D", want: keystore.MethodNotAllowed},
		{name: "graphql too large", h: serve, key: rig.key, method: "POST", path: "/graphql", body: `{"query":"{ assets { id } }","variables":{"pad":"` + strings.Repeat("x", 64) + `"}}`, want: keystore.TooLarge},
		{name: "other address", h: serve, key: elsewhere, want: keystore.ForbiddenAddress},
		{name: "other environment", h: serve, key: prod, want: keystore.InvalidKey},
		{name: "invalid path", h: serve, key: rig.key, path: "/maximo/oslc/os/mxasset/..;/mxwo", want: keystore.InvalidPath},
		{name: "rate, first", h: serve, key: rated, want: keystore.Allowed},
		{name: "rate limited", h: serve, key: rated, want: keystore.RateLimited},
		{name: "quota, first", h: serve, key: quota, want: keystore.Allowed},
		{name: "quota exceeded", h: serve, key: quota, want: keystore.QuotaExceeded},
		{name: "client gone", h: serve, key: freshKey(t), ctx: func(ctx context.Context) context.Context {
			ctx, cancel := context.WithCancel(ctx)
			cancel()
			return ctx
		}, want: keystore.Canceled},
		{name: "store down", h: serve, key: freshKey(t), prepare: func() { rig.store.down.Store(true) }, want: keystore.StoreUnavailable},
		{name: "too many failures", h: serve, prepare: func() {
			rig.store.down.Store(false)
			app.failures = keystore.NewFailureLimiter(1, time.Hour, 0)
			app.gate.Failures = app.failures
			app.failures.Fail("192.0.2.10", time.Now())
		}, want: keystore.TooManyFailures},
	}
	covered := map[keystore.Outcome]bool{}
	for _, s := range steps {
		if s.prepare != nil {
			s.prepare()
		}
		before := snapshot(&app.res.outcomes)
		method, path := s.method, s.path
		if method == "" {
			method = "GET"
		}
		if path == "" {
			path = benchTarget
		}
		r, _ := caddyRequest(path)
		r.Method = method
		if s.body != "" {
			r.Body = io.NopCloser(strings.NewReader(s.body))
			r.ContentLength = int64(len(s.body))
			r.Header.Set("Content-Type", "application/json")
		}
		if s.key != "" {
			r.Header.Set("Apikey", s.key)
		}
		if s.ctx != nil {
			r = r.WithContext(s.ctx(r.Context()))
		}
		if err := s.h(httptest.NewRecorder(), r); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		app.res.auth.Wait()
		after := snapshot(&app.res.outcomes)
		for o := range after {
			want := uint64(0)
			if keystore.Outcome(o) == s.want {
				want = 1
			}
			if got := after[o] - before[o]; got != want {
				t.Errorf("%s: outcome %v counted %d times, want %d", s.name, keystore.Outcome(o), got, want)
			}
		}
		covered[s.want] = true
	}
	for o := range keystore.Outcome(keystore.NumOutcomes) {
		if !covered[o] {
			t.Errorf("outcome %v not driven by any step", o)
		}
	}
}

func snapshot(c *outcomeCounters) [keystore.NumOutcomes]uint64 {
	var s [keystore.NumOutcomes]uint64
	for i := range c {
		s[i] = c[i].Load()
	}
	return s
}

// freshKey is a well-formed key the store does not hold.
func freshKey(t *testing.T) string {
	k, err := keystore.GenerateKey(keystore.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestEveryOutcomeHasALabelAndAnswer guards the tables indexed by outcome.
func TestEveryOutcomeHasALabelAndAnswer(t *testing.T) {
	for o := range keystore.Outcome(keystore.NumOutcomes) {
		if !slices.Contains(resultNames, resultLabels[o]) {
			t.Errorf("outcome %v: result label %q is not exported", o, resultLabels[o])
		}
		if o != keystore.Allowed && outcomeErrors[o] == nil {
			t.Errorf("outcome %v has no error answer", o)
		}
	}
	var c outcomeCounters
	for o := range c {
		c[o].Add(1)
	}
	var sum uint64
	for _, n := range c.byResult() {
		sum += n
	}
	if sum != uint64(keystore.NumOutcomes) {
		t.Errorf("byResult sums to %d, want %d (each outcome once)", sum, keystore.NumOutcomes)
	}
}
