package keystore_test

import (
	"context"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/graphql"
)

// The Gate counts an admitted request in the area it was judged in: the
// REST path's area, or every area a GraphQL document touched, once each. A
// refused request counts in none.
func TestGateCountsAreas(t *testing.T) {
	t.Parallel()
	const endpoint = "/mce/api/graphql"
	rig := newGateRig(t)
	ep, err := graphql.NewEndpoint([]string{endpoint}, map[string][]string{"assets": {"assets"}, "workorders": {"workOrders"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := rig.gate.Areas.AddGraphQL(ep, 1024); err != nil {
		t.Fatal(err)
	}
	judge := func(key, path, body string) keystore.Verdict {
		req := rig.request(key)
		setPath(req, path)
		if body != "" {
			req.Method, req.ContentType, req.Body = "POST", "application/json", strings.NewReader(body)
		}
		return rig.gate.Judge(t.Context(), req, &keystore.Policy{})
	}
	if v := judge("reader", "/maximo/oslc/os/mxasset/12", ""); v.Outcome != keystore.Allowed {
		t.Fatalf("REST read: %v", v.Outcome)
	}
	if v := judge("reader", "/maximo/oslc/os/mxwo", ""); v.Outcome != keystore.ForbiddenRead {
		t.Fatalf("REST read of another area: %v", v.Outcome)
	}
	if v := judge("writer", endpoint, `{"query":"{ assets { id } a2: assets { id } }"}`); v.Outcome != keystore.Allowed {
		t.Fatalf("GraphQL of one area: %v (%s)", v.Outcome, v.Message)
	}
	v := judge("both", endpoint, `{"query":"{ assets { id } workOrders { id } }"}`)
	if v.Outcome != keystore.Allowed {
		t.Fatalf("GraphQL of two areas: %v (%s)", v.Outcome, v.Message)
	}
	v.Usage.Status(200)
	if err := rig.meter.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	day := rig.now.Truncate(24 * 3600e9)
	want := map[string]int64{
		keystore.PartUsageID("key_reader", keystore.ByArea, "assets"):     1,
		keystore.PartUsageID("key_reader", keystore.ByArea, "workorders"): 0,
		keystore.PartUsageID("key_writer", keystore.ByArea, "assets"):     1,
		keystore.PartUsageID("key_both", keystore.ByArea, "assets"):       1,
		keystore.PartUsageID("key_both", keystore.ByArea, "workorders"):   1,
		keystore.PartUsageID("key_both", keystore.ByStatus, "2xx"):        1,
		keystore.PartUsageID("key_writer", keystore.ByStatus, "2xx"):      0,
	}
	for id, n := range want {
		days, err := rig.mem.Usage(t.Context(), id, day, day)
		if err != nil {
			t.Fatal(err)
		}
		var got int64
		for _, d := range days {
			got += d.Requests
		}
		if got != n {
			t.Errorf("%s: got %d, want %d", id, got, n)
		}
	}
}
