package admin

import (
	"encoding/json"
	"net/http"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/notify"
)

// DeliveryJSON is one webhook delivery as GET /events shows it. Target is
// the destination URL without its query or user info.
type DeliveryJSON struct {
	ID        string          `json:"id"`
	EventID   string          `json:"event_id"`
	Type      string          `json:"type"`
	Target    string          `json:"target"`
	Key       json.RawMessage `json:"key"`
	CreatedAt string          `json:"created_at"`
	NextAt    string          `json:"next_at"`
	Attempts  int             `json:"attempts"`
	LastError *string         `json:"last_error"`
}

// DeliveryList is the body of GET /events.
type DeliveryList struct {
	Deliveries []DeliveryJSON `json:"deliveries"`
	// Total counts all deliveries of the status, beyond the page too.
	Total int `json:"total"`
}

func renderDelivery(d keystore.Delivery) DeliveryJSON {
	var body struct {
		ID  string          `json:"id"`
		Key json.RawMessage `json:"key"`
	}
	json.Unmarshal(d.Body, &body) // bodies are ours; a bad one shows as empty
	out := DeliveryJSON{ID: d.ID, EventID: body.ID, Type: d.Type, Target: notify.RedactURL(d.Target), Key: body.Key,
		CreatedAt: formatTime(d.CreatedAt), NextAt: formatTime(d.NextAt), Attempts: d.Attempts}
	if len(out.Key) == 0 {
		out.Key = json.RawMessage("null")
	}
	if d.LastError != "" {
		e := d.LastError
		out.LastError = &e
	}
	return out
}

// GET /events?status=pending|failed&limit=
func (h *handler) events(w http.ResponseWriter, r *http.Request, a keystore.Actor) {
	q := r.URL.Query()
	status := keystore.DeliveryPending
	if s := q.Get("status"); s != "" {
		var err error
		if status, err = keystore.ParseDeliveryStatus(s); err != nil {
			h.fail(w, r, badRequest("%s", err.Error()))
			return
		}
	}
	limit, err := limitParam(q.Get("limit"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	ds, total, err := h.svc.Deliveries(r.Context(), a, status, limit)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := DeliveryList{Deliveries: make([]DeliveryJSON, 0, len(ds)), Total: total}
	for _, d := range ds {
		out.Deliveries = append(out.Deliveries, renderDelivery(d))
	}
	writeJSON(w, http.StatusOK, out)
}
