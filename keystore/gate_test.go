package keystore_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/graphql"
	"github.com/keygate/keygate/keystore/storetest"
)

// ctxStore fails lookups whose context is done, as a network store would.
type ctxStore struct{ *storetest.Memory }

func (s ctxStore) LookupDigest(ctx context.Context, d keystore.Digest) (*keystore.Key, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.Memory.LookupDigest(ctx, d)
}

// gateRig is a Gate over an in-memory store with keys of every kind.
type gateRig struct {
	gate  *keystore.Gate
	mem   *storetest.Memory
	now   time.Time
	keys  map[string]string // name → secret
	meter *keystore.Meter
}

func newGateRig(t *testing.T) *gateRig {
	t.Helper()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	mem := storetest.NewMemory()
	store := ctxStore{mem}
	rig := &gateRig{mem: mem, now: now, keys: map[string]string{}}
	past := now.Add(-time.Hour)
	add := func(name, user string, rights []string, mod func(*keystore.Key)) {
		secret, err := keystore.GenerateKey(keystore.DefaultPrefix)
		if err != nil {
			t.Fatal(err)
		}
		k := &keystore.Key{
			ID: "key_" + name, Name: name, User: user, Rights: rights,
			Start: keystore.DisplayStart(secret), Digest: keystore.DigestOf(secret),
			CreatedAt: past, CreatedBy: keystore.LocalActorID,
		}
		if mod != nil {
			mod(k)
		}
		if err := store.CreateKey(t.Context(), k, keystore.CreateLimits{}, past); err != nil {
			t.Fatalf("creating %s: %v", name, err)
		}
		rig.keys[name] = secret
	}
	add("reader", "MXINTADM", []string{"assets:read"}, nil)
	add("writer", "MXINTADM", []string{"assets:write"}, nil)
	add("both", "MXINTADM", []string{"assets:read", "workorders:read"}, nil)
	add("nocred", "NOBODY", []string{"assets:read"}, nil)
	add("admin", "ADMIN", []string{"keys:admin"}, nil)
	add("self", "MXINTADM", []string{"keys:self", "assets:read"}, nil)
	add("revoked", "MXINTADM", []string{"assets:read"}, func(k *keystore.Key) { k.RevokedAt = &past })
	add("expired", "MXINTADM", []string{"assets:read"}, func(k *keystore.Key) { k.ExpiresAt = &past })
	add("ratelimited", "MXINTADM", []string{"assets:read"}, func(k *keystore.Key) {
		k.Rate = &keystore.Rate{Limit: 1, Per: time.Hour}
	})
	add("quota", "MXINTADM", []string{"assets:read"}, func(k *keystore.Key) {
		k.Quota = &keystore.Quota{Limit: 1, Period: "day"}
	})
	add("fenced", "MXINTADM", []string{"assets:read"}, func(k *keystore.Key) { k.AllowedIPs = []string{"2001:db8::/32", "192.0.2.0/24"} })
	add("elsewhere", "MXINTADM", []string{"assets:read"}, func(k *keystore.Key) { k.AllowedIPs = []string{"198.51.100.0/24"} })
	add("elsewhereadmin", "ADMIN", []string{"keys:admin"}, func(k *keystore.Key) { k.AllowedIPs = []string{"198.51.100.0/24"} })
	add("prod", "MXINTADM", []string{"assets:read"}, func(k *keystore.Key) { k.Environments = []string{"prod", "test"} })
	add("prodself", "MXINTADM", []string{"keys:self"}, func(k *keystore.Key) { k.Environments = []string{"prod"} })
	areas, err := keystore.NewAreas(map[string][]string{
		"assets":     {"/maximo/oslc/os/mxasset*"},
		"workorders": {"/maximo/oslc/os/mxwo*"},
	})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := keystore.NewAuthenticator(store, keystore.AuthOptions{Users: store, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(auth.Close)
	rig.meter = keystore.NewMeter(store, keystore.MeterOptions{})
	rig.gate = &keystore.Gate{
		Auth:        auth,
		Areas:       areas,
		Limiter:     keystore.NewLimiter(keystore.LimiterOptions{Store: store, Meter: rig.meter}),
		Meter:       rig.meter,
		Failures:    keystore.NewFailureLimiter(3, time.Minute, 0),
		Credentials: map[string]any{"MXINTADM": "native-secret", "ADMIN": "admin-secret"},
	}
	return rig
}

// request is a GET of an assets path with the named key.
func (rig *gateRig) request(key string) *keystore.Request {
	return &keystore.Request{
		Key: rig.keys[key], KeyFound: key != "", Method: "GET",
		Path: "/maximo/oslc/os/mxasset", EscapedPath: "/maximo/oslc/os/mxasset", Client: "192.0.2.1", Now: rig.now,
	}
}

// setPath sets a request path as Go's server reads it from the wire.
func setPath(r *keystore.Request, target string) {
	u, err := url.ParseRequestURI(target)
	if err != nil {
		panic(err)
	}
	r.Path, r.EscapedPath = u.Path, u.EscapedPath()
}

func TestGateOutcomes(t *testing.T) {
	t.Parallel()
	plain := &keystore.Policy{}
	cases := []struct {
		name   string
		key    string
		policy *keystore.Policy
		edit   func(*keystore.Request)
		ctx    func(context.Context) context.Context
		before func(*gateRig) // runs before the judged request
		want   keystore.Outcome
	}{
		{name: "read key GET", key: "reader", want: keystore.Allowed},
		{name: "read key HEAD", key: "reader", edit: func(r *keystore.Request) { r.Method = "HEAD" }, want: keystore.Allowed},
		{name: "write key POST", key: "writer", edit: func(r *keystore.Request) { r.Method = "POST" }, want: keystore.Allowed},
		{name: "missing key", key: "", want: keystore.InvalidKey},
		{name: "malformed key", key: "reader", edit: func(r *keystore.Request) { r.Key = "kg_short" }, want: keystore.InvalidKey},
		{name: "bad checksum", key: "reader", edit: func(r *keystore.Request) { r.Key = r.Key[:len(r.Key)-1] + flip(r.Key[len(r.Key)-1]) }, want: keystore.InvalidKey},
		{name: "unknown key", key: "reader", edit: func(r *keystore.Request) {
			k, _ := keystore.GenerateKey(keystore.DefaultPrefix)
			r.Key = k
		}, want: keystore.InvalidKey},
		{name: "ambiguous", key: "reader", edit: func(r *keystore.Request) { r.KeyAmbiguous = true }, want: keystore.InvalidKey},
		{name: "revoked", key: "revoked", want: keystore.InvalidKey},
		{name: "expired", key: "expired", want: keystore.InvalidKey},
		{name: "too many failures", key: "reader", before: func(rig *gateRig) {
			for range 3 {
				rig.gate.Judge(context.Background(), rig.request(""), plain)
			}
		}, want: keystore.TooManyFailures},
		{name: "read key POST", key: "reader", edit: func(r *keystore.Request) { r.Method = "POST" }, want: keystore.ForbiddenWrite},
		{name: "read key GET with override", key: "reader", edit: func(r *keystore.Request) { r.Overrides = []string{"PATCH"} }, want: keystore.ForbiddenWrite},
		{name: "other area", key: "reader", edit: func(r *keystore.Request) { setPath(r, "/maximo/oslc/os/mxwo") }, want: keystore.ForbiddenRead},
		{name: "no area", key: "writer", edit: func(r *keystore.Request) { setPath(r, "/maximo/oslc/script/x") }, want: keystore.ForbiddenRead},
		{name: "dot-dot", key: "reader", edit: func(r *keystore.Request) { setPath(r, "/maximo/oslc/os/mxasset/../mxwo") }, want: keystore.InvalidPath},
		{name: "servlet path parameter escape", key: "writer", edit: func(r *keystore.Request) { setPath(r, "/maximo/oslc/os/mxasset/..;/mxwo") }, want: keystore.InvalidPath},
		{name: "IIS backslash escape", key: "writer", edit: func(r *keystore.Request) { setPath(r, "/maximo/oslc/os/mxasset%5c..%5cmxwo") }, want: keystore.InvalidPath},
		{name: "invalid path with an unknown key is no failed attempt", key: "reader", before: func(rig *gateRig) {
			for range 5 {
				r := rig.request("")
				setPath(r, "/maximo/oslc/os/mxasset/%2e%2e/mxwo")
				if v := rig.gate.Judge(context.Background(), r, plain); v.Outcome != keystore.InvalidPath {
					panic(v.Outcome.String())
				}
			}
		}, want: keystore.Allowed},
		{name: "merged slashes", key: "reader", edit: func(r *keystore.Request) { setPath(r, "//maximo//oslc/os/mxasset") }, want: keystore.Allowed},
		{name: "no credential", key: "nocred", policy: &keystore.Policy{RequireCredential: true}, want: keystore.NoCredential},
		{name: "credential present", key: "reader", policy: &keystore.Policy{RequireCredential: true}, want: keystore.Allowed},
		{name: "admin call with plain key", key: "reader", policy: &keystore.Policy{Admin: true}, want: keystore.NotAdmin},
		{name: "admin call with keys:admin", key: "admin", policy: &keystore.Policy{Admin: true}, want: keystore.Allowed},
		{name: "admin call with keys:self", key: "self", policy: &keystore.Policy{Admin: true}, want: keystore.Allowed},
		{name: "admin key on the API", key: "admin", want: keystore.ForbiddenRead},
		{name: "rate limited", key: "ratelimited", before: func(rig *gateRig) {
			rig.gate.Judge(context.Background(), rig.request("ratelimited"), plain)
		}, want: keystore.RateLimited},
		{name: "quota exceeded", key: "quota", before: func(rig *gateRig) {
			rig.gate.Judge(context.Background(), rig.request("quota"), plain)
		}, want: keystore.QuotaExceeded},
		{name: "default rate", key: "reader", policy: &keystore.Policy{DefaultRate: &keystore.Rate{Limit: 1, Per: time.Hour}}, before: func(rig *gateRig) {
			rig.gate.Judge(context.Background(), rig.request("reader"), &keystore.Policy{DefaultRate: &keystore.Rate{Limit: 1, Per: time.Hour}})
		}, want: keystore.RateLimited},
		{name: "inside allowed_ips", key: "fenced", want: keystore.Allowed},
		{name: "inside allowed_ips, IPv6", key: "fenced", edit: func(r *keystore.Request) { r.Client = "2001:db8:1::7" }, want: keystore.Allowed},
		{name: "outside allowed_ips", key: "elsewhere", want: keystore.ForbiddenAddress},
		{name: "outside allowed_ips, admin call", key: "elsewhereadmin", policy: &keystore.Policy{Admin: true}, want: keystore.ForbiddenAddress},
		{name: "environment key, handler without one", key: "prod", want: keystore.InvalidKey},
		{name: "environment key, its environment", key: "prod", policy: &keystore.Policy{Environment: "test"}, want: keystore.Allowed},
		{name: "environment key, other environment", key: "prod", policy: &keystore.Policy{Environment: "dev"}, want: keystore.InvalidKey},
		{name: "plain key, handler with an environment", key: "reader", policy: &keystore.Policy{Environment: "prod"}, want: keystore.InvalidKey},
		{name: "admin call ignores environments", key: "prodself", policy: &keystore.Policy{Admin: true}, want: keystore.Allowed},
		{name: "store down", key: "reader", before: func(rig *gateRig) {
			rig.mem.SetFail(errors.Join(keystore.ErrUnavailable, errors.New("connection refused")))
		}, want: keystore.StoreUnavailable},
		{name: "client gone", key: "reader", ctx: func(ctx context.Context) context.Context {
			ctx, cancel := context.WithCancel(ctx)
			cancel()
			return ctx
		}, want: keystore.Canceled},
	}
	seen := map[keystore.Outcome]bool{}
	for _, c := range cases {
		seen[c.want] = true
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rig := newGateRig(t)
			if c.before != nil {
				c.before(rig)
			}
			pending := rig.meter.PendingTotal()
			req := rig.request(c.key)
			if c.edit != nil {
				c.edit(req)
			}
			pol := c.policy
			if pol == nil {
				pol = plain
			}
			ctx := t.Context()
			if c.ctx != nil {
				ctx = c.ctx(ctx)
			}
			v := rig.gate.Judge(ctx, req, pol)
			if v.Outcome != c.want {
				t.Fatalf("outcome = %v, want %v (err %v)", v.Outcome, c.want, v.Err)
			}
			counted := rig.meter.PendingTotal() - pending
			wantCounted := int64(0)
			if c.want == keystore.Allowed && !pol.Admin {
				wantCounted = 1
			}
			if counted != wantCounted {
				t.Errorf("metered %d requests, want %d", counted, wantCounted)
			}
			switch c.want {
			case keystore.Allowed:
				if v.Principal == nil || v.Principal.ID() != "key_"+c.key {
					t.Errorf("principal = %+v, want key_%s", v.Principal, c.key)
				}
			case keystore.TooManyFailures, keystore.RateLimited, keystore.QuotaExceeded:
				if v.RetryAfter <= 0 {
					t.Errorf("RetryAfter = %v, want > 0", v.RetryAfter)
				}
			case keystore.InvalidPath:
				if v.Message == "" || v.Principal != nil {
					t.Errorf("invalid path: message %q, principal %v; want a reason and no key looked up", v.Message, v.Principal)
				}
			case keystore.StoreUnavailable:
				if !errors.Is(v.Err, keystore.ErrUnavailable) {
					t.Errorf("Err = %v, want ErrUnavailable", v.Err)
				}
			}
		})
	}
	// The GraphQL outcomes are driven by TestGateGraphQL.
	seen[keystore.InvalidRequest], seen[keystore.MethodNotAllowed], seen[keystore.TooLarge] = true, true, true
	for o := range keystore.Outcome(keystore.NumOutcomes) {
		if !seen[o] {
			t.Errorf("no case for outcome %v", o)
		}
	}
}

func TestGateVerdictDetails(t *testing.T) {
	t.Parallel()
	rig := newGateRig(t)
	v := rig.gate.Judge(t.Context(), rig.request("reader"), &keystore.Policy{})
	if v.Area != "assets" || v.Credential != "native-secret" {
		t.Errorf("area %q credential %v, want assets and the user's credential", v.Area, v.Credential)
	}
	if v.PathChanged {
		t.Errorf("a canonical path was marked changed: %q", v.EscapedPath)
	}
	r := rig.request("reader")
	setPath(r, "/maximo//oslc/os/mxasset//caf%C3%A9")
	v = rig.gate.Judge(t.Context(), r, &keystore.Policy{})
	if !v.PathChanged || v.Path != "/maximo/oslc/os/mxasset/café" || v.EscapedPath != "/maximo/oslc/os/mxasset/caf%C3%A9" {
		t.Errorf("forwarded path %q (%q, changed %v), want the merged path", v.Path, v.EscapedPath, v.PathChanged)
	}
	v = rig.gate.Judge(t.Context(), rig.request("ratelimited"), &keystore.Policy{})
	if !v.Limit.Limited || v.Limit.Limit != 1 || v.Limit.Remaining != 0 {
		t.Errorf("limit decision %+v, want limited 1, remaining 0", v.Limit)
	}
	// An invalid key counts as a failed attempt; a refused valid key does not.
	for range 3 {
		rig.gate.Judge(t.Context(), &keystore.Request{Method: "POST", Path: "/x", EscapedPath: "/x", Client: "192.0.2.9", Now: rig.now, Key: rig.keys["reader"], KeyFound: true}, &keystore.Policy{})
	}
	if v := rig.gate.Judge(t.Context(), &keystore.Request{Method: "GET", Path: "/maximo/oslc/os/mxasset", EscapedPath: "/maximo/oslc/os/mxasset", Client: "192.0.2.9", Now: rig.now, Key: rig.keys["reader"], KeyFound: true}, &keystore.Policy{}); v.Outcome != keystore.Allowed {
		t.Errorf("after three 403s: %v, want allowed (403s are not failed key attempts)", v.Outcome)
	}
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

// TestGateGraphQL judges GraphQL requests through the Gate: by document,
// not by method or path areas.
func TestGateGraphQL(t *testing.T) {
	t.Parallel()
	const endpoint = "/mce/api/graphql"
	type gq struct {
		name, key, method, ctype, query, body string
		want                                  keystore.Outcome
	}
	cases := []gq{
		{name: "query with a read key", key: "reader", method: "POST", body: `{"query":"{ assets { id } }"}`, want: keystore.Allowed},
		{name: "aliased query", key: "reader", method: "POST", body: `{"query":"{ a: asset(id: 1) { id } b: assets { id } }"}`, want: keystore.Allowed},
		{name: "application/graphql body", key: "reader", method: "POST", ctype: "application/graphql", body: `query { assets { id } }`, want: keystore.Allowed},
		{name: "GET query", key: "reader", method: "GET", query: "query=%7B%20assets%20%7B%20id%20%7D%20%7D", want: keystore.Allowed},
		{name: "mutation with a read key", key: "reader", method: "POST", body: `{"query":"mutation { createAsset { id } }"}`, want: keystore.ForbiddenWrite},
		{name: "mutation with a write key", key: "writer", method: "POST", body: `{"query":"mutation { createAsset { id } }"}`, want: keystore.Allowed},
		{name: "aliased mutation", key: "reader", method: "POST", body: `{"query":"mutation { assets: createAsset { id } }"}`, want: keystore.ForbiddenWrite},
		{name: "operationName picks the query, the mutation still counts", key: "reader", method: "POST",
			body: `{"query":"query Q { assets { id } } mutation M { createAsset { id } }","operationName":"Q"}`, want: keystore.ForbiddenWrite},
		{name: "mutation through a fragment", key: "reader", method: "POST",
			body: `{"query":"mutation { ...F } fragment F on Mutation { createAsset { id } }"}`, want: keystore.ForbiddenWrite},
		{name: "other area", key: "reader", method: "POST", body: `{"query":"{ workOrders { id } }"}`, want: keystore.ForbiddenRead},
		{name: "unmapped root field", key: "writer", method: "POST", body: `{"query":"{ secrets { id } }"}`, want: keystore.ForbiddenRead},
		{name: "batch with one mutation", key: "reader", method: "POST",
			body: `[{"query":"{ assets { id } }"},{"query":"mutation { createAsset { id } }"}]`, want: keystore.ForbiddenWrite},
		{name: "typename only", key: "reader", method: "POST", body: `{"query":"{ __typename }"}`, want: keystore.Allowed},
		{name: "introspection with an endpoint area", key: "reader", method: "POST", body: `{"query":"{ __schema { types { name } } }"}`, want: keystore.Allowed},
		{name: "introspection without one", key: "nocred", method: "POST", body: `{"query":"{ __schema { types { name } } }"}`, want: keystore.Allowed},
		{name: "mutation over GET", key: "writer", method: "GET", query: "query=mutation%7BcreateAsset%7Bid%7D%7D", want: keystore.MethodNotAllowed},
		{name: "unparseable", key: "reader", method: "POST", body: `{"query":"{ assets { id "}`, want: keystore.InvalidRequest},
		{name: "hash-only persisted query", key: "reader", method: "POST",
			body: `{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"abc"}}}`, want: keystore.InvalidRequest},
		{name: "too large", key: "reader", method: "POST", body: `{"query":"{ assets { id } }","variables":{"x":"` + strings.Repeat("y", 200) + `"}}`, want: keystore.TooLarge},
		{name: "invalid key never parses", key: "", method: "POST", body: `{"query":"{ assets { id "}`, want: keystore.InvalidKey},
	}
	// "nocred" holds assets:read too, so introspection passes for it; a
	// key holding only a non-endpoint area is checked below.
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rig := newGateRig(t)
			ep, err := graphql.NewEndpoint([]string{endpoint}, map[string][]string{"assets": {"asset", "assets", "createAsset"}, "workorders": {"workOrders"}}, "")
			if err != nil {
				t.Fatal(err)
			}
			if err := rig.gate.Areas.AddGraphQL(ep, 128); err != nil {
				t.Fatal(err)
			}
			req := rig.request(c.key)
			req.Method, req.RawQuery = c.method, c.query
			setPath(req, endpoint)
			req.ContentType = c.ctype
			if req.ContentType == "" {
				req.ContentType = "application/json"
			}
			req.Body = strings.NewReader(c.body)
			v := rig.gate.Judge(t.Context(), req, &keystore.Policy{})
			if v.Outcome != c.want {
				t.Fatalf("outcome = %v (%s), want %v", v.Outcome, v.Message, c.want)
			}
			if c.want == keystore.InvalidKey {
				if v.BodyRead {
					t.Error("the body of a request with an invalid key was read")
				}
				return
			}
			if c.body != "" && c.want != keystore.TooLarge && string(v.Body) != c.body {
				t.Errorf("body read = %q, want the request's bytes %q", v.Body, c.body)
			}
			if c.want != keystore.Allowed && v.Message == "" {
				t.Error("a GraphQL refusal carries no message")
			}
		})
	}
	t.Run("introspection needs an endpoint area", func(t *testing.T) {
		t.Parallel()
		rig := newGateRig(t)
		ep, err := graphql.NewEndpoint([]string{endpoint}, map[string][]string{"workorders": {"workOrders"}}, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := rig.gate.Areas.AddGraphQL(ep, 0); err != nil {
			t.Fatal(err)
		}
		req := rig.request("reader")
		req.Method, req.Path, req.ContentType = "POST", endpoint, "application/json"
		req.Body = strings.NewReader(`{"query":"{ __type(name: \"Asset\") { name } }"}`)
		if v := rig.gate.Judge(t.Context(), req, &keystore.Policy{}); v.Outcome != keystore.ForbiddenRead {
			t.Fatalf("outcome = %v, want forbidden_read (assets is not an area of the endpoint)", v.Outcome)
		}
	})
	t.Run("unknown area is a startup error", func(t *testing.T) {
		t.Parallel()
		rig := newGateRig(t)
		ep, err := graphql.NewEndpoint([]string{endpoint}, map[string][]string{"asets": {"assets"}}, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := rig.gate.Areas.AddGraphQL(ep, 0); err == nil || !strings.Contains(err.Error(), `"asets"`) {
			t.Fatalf("AddGraphQL with a typo = %v, want an error naming the area", err)
		}
	})
}

// TestGateUserLimits: a user's limits are shared by all its keys, on top of
// each key's own, and a request refused by either never uses the other's
// budget.
func TestGateUserLimits(t *testing.T) {
	t.Parallel()
	rig := newGateRig(t)
	ctx := t.Context()
	pol := &keystore.Policy{}
	judge := func(key string) keystore.Verdict { return rig.gate.Judge(ctx, rig.request(key), pol) }
	// reader, writer and ratelimited (1/h of its own) belong to MXINTADM.
	if err := rig.mem.SetUserLimits(ctx, "MXINTADM", keystore.UserLimits{Rate: &keystore.Rate{Limit: 2, Per: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	if v := judge("ratelimited"); v.Outcome != keystore.Allowed {
		t.Fatalf("first request of a key: %v", v.Outcome)
	}
	// Refused by the key's own rate: the user's budget is given back.
	if v := judge("ratelimited"); v.Outcome != keystore.RateLimited {
		t.Fatalf("second request of a 1/h key: %v, want rate_limited", v.Outcome)
	}
	if v := judge("reader"); v.Outcome != keystore.Allowed || !v.Limit.Limited || v.Limit.Limit != 2 || v.Limit.Remaining != 0 {
		t.Fatalf("another key of the user: %v %+v, want allowed as the user's second request of 2", v.Outcome, v.Limit)
	}
	if v := judge("writer"); v.Outcome != keystore.RateLimited || v.RetryAfter <= 0 {
		t.Fatalf("third request of the user, from a third key: %v, want rate_limited with Retry-After", v.Outcome)
	}
	if v := judge("admin"); v.Outcome != keystore.ForbiddenRead {
		t.Fatalf("a key of another user: %v, want its own outcome", v.Outcome)
	}
	if got := rig.meter.PendingUsage(keystore.UserUsageID("MXINTADM")); len(got) != 1 || got[0].Requests != 2 {
		t.Fatalf("requests counted for the user: %+v, want 2 (refused requests never count)", got)
	}
}

func TestGateUserQuota(t *testing.T) {
	t.Parallel()
	rig := newGateRig(t)
	ctx := t.Context()
	pol := &keystore.Policy{}
	// Usage before the quota was set counts: two requests first.
	for _, k := range []string{"reader", "writer"} {
		if v := rig.gate.Judge(ctx, rig.request(k), pol); v.Outcome != keystore.Allowed {
			t.Fatalf("%s: %v", k, v.Outcome)
		}
	}
	if err := rig.mem.SetUserLimits(ctx, "MXINTADM", keystore.UserLimits{Quota: &keystore.Quota{Limit: 3, Period: "day"}}); err != nil {
		t.Fatal(err)
	}
	// As Service does after a change: evict the user's cached keys.
	rig.gate.Auth.Invalidate(keystore.DigestOf(rig.keys["reader"]), keystore.DigestOf(rig.keys["writer"]))
	if v := rig.gate.Judge(ctx, rig.request("reader"), pol); v.Outcome != keystore.Allowed || !v.Limit.Limited || v.Limit.Remaining != 0 {
		t.Fatalf("third request of the user: %v %+v, want allowed, 0 remaining", v.Outcome, v.Limit)
	}
	v := rig.gate.Judge(ctx, rig.request("writer"), pol)
	if v.Outcome != keystore.QuotaExceeded || v.RetryAfter <= 0 {
		t.Fatalf("fourth request of the user: %v, want quota_exceeded with Retry-After", v.Outcome)
	}
}

func TestGateUserLimitsUnreadable(t *testing.T) {
	t.Parallel()
	rig := newGateRig(t)
	// The digest lookup works but the user's limits cannot be read: fail
	// closed, never serve the key without its limits.
	store := &failingUsers{Memory: rig.mem}
	auth, err := keystore.NewAuthenticator(store, keystore.AuthOptions{Users: store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(auth.Close)
	rig.gate.Auth = auth
	if v := rig.gate.Judge(t.Context(), rig.request("reader"), &keystore.Policy{}); v.Outcome != keystore.StoreUnavailable {
		t.Fatalf("got %v, want store_unavailable", v.Outcome)
	}
}

type failingUsers struct{ *storetest.Memory }

func (f *failingUsers) UserLimits(context.Context, string) (keystore.UserLimits, error) {
	return keystore.UserLimits{}, errors.Join(keystore.ErrUnavailable, errors.New("connection reset"))
}
