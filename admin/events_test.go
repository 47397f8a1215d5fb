package admin

import (
	"net/http"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/storetest"
)

func TestEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewMemory())
	body := []byte(`{"id":"evt_1","type":"key.created","key":{"id":"key_A","name":"mx","user":"U"}}`)
	_, err := e.store.EnqueueDeliveries(t.Context(), []keystore.Delivery{
		{ID: "dlv_1", Target: "https://user:pw@hooks.example/k?token=abc", Type: "key.created", Body: body, CreatedAt: t0, NextAt: t0},
		{ID: "dlv_2", Target: "https://hooks.example/k", Type: "license.threshold", Body: []byte(`{"id":"evt_2","type":"license.threshold"}`), CreatedAt: t0, NextAt: t0},
	})
	if err != nil {
		t.Fatalf("EnqueueDeliveries: %v", err)
	}
	if err := e.store.RescheduleDelivery(t.Context(), "dlv_1", t0.Add(time.Minute), "HTTP 503"); err != nil {
		t.Fatalf("RescheduleDelivery: %v", err)
	}

	r := e.do(&adminKey, "GET", "/events", "").want(t, http.StatusOK, "")
	if r.obj["total"] != 2.0 {
		t.Fatalf("pending: got %s, want total 2", r.body)
	}
	r = e.do(&local, "GET", "/events?status=failed", "").want(t, http.StatusOK, "")
	ds, _ := r.obj["deliveries"].([]any)
	if r.obj["total"] != 1.0 || len(ds) != 1 {
		t.Fatalf("failed: got %s, want dlv_1 only", r.body)
	}
	d := ds[0].(map[string]any)
	if d["id"] != "dlv_1" || d["event_id"] != "evt_1" || d["attempts"] != 1.0 || d["last_error"] != "HTTP 503" ||
		d["target"] != "https://hooks.example/k" || d["key"].(map[string]any)["id"] != "key_A" {
		t.Fatalf("failed delivery: got %v, want dlv_1 of evt_1, 1 attempt, HTTP 503, the target without credentials", d)
	}
	e.do(&adminKey, "GET", "/events?status=lost", "").want(t, http.StatusBadRequest, "invalid_request")
	e.do(&adminKey, "GET", "/events?limit=0", "").want(t, http.StatusBadRequest, "invalid_request")
	self := selfActor(t, "key_self", "ME", "keys:self", "assets:read")
	e.do(self, "GET", "/events", "").want(t, http.StatusForbidden, "forbidden")
	e.do(noActor, "GET", "/events", "").want(t, http.StatusUnauthorized, "")
}
