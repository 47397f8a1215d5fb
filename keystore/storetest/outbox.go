package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

const (
	targetA = "https://a.example/hook"
	targetB = "https://b.example/hook"
)

func newDelivery(id, target, dedupe string, created time.Time) keystore.Delivery {
	return keystore.Delivery{
		ID:        id,
		Dedupe:    dedupe,
		Target:    target,
		Type:      "key.created",
		Body:      []byte(`{"id":"` + id + `","type":"key.created"}`),
		CreatedAt: created,
		NextAt:    created,
	}
}

func enqueue(t *testing.T, s keystore.Store, ds ...keystore.Delivery) int {
	t.Helper()
	n, err := s.EnqueueDeliveries(t.Context(), ds)
	if err != nil {
		t.Fatalf("EnqueueDeliveries: %v", err)
	}
	return n
}

func claimIDs(t *testing.T, s keystore.Store, targets []string, now time.Time, limit int) []string {
	t.Helper()
	ds, err := s.ClaimDeliveries(t.Context(), targets, now, time.Minute, limit)
	if err != nil {
		t.Fatalf("ClaimDeliveries: %v", err)
	}
	ids := []string{}
	for _, d := range ds {
		ids = append(ids, d.ID)
	}
	return ids
}

func sameIDs(got, want []string) bool { return fmt.Sprint(got) == fmt.Sprint(want) }

func testOutboxRoundTrip(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	want := newDelivery("dlv_1", targetA, "", at(7*time.Microsecond))
	if n := enqueue(t, s, want); n != 1 {
		t.Fatalf("EnqueueDeliveries: stored %d, want 1", n)
	}
	got, err := s.ClaimDeliveries(t.Context(), []string{targetA}, at(time.Second), time.Minute, 10)
	if err != nil {
		t.Fatalf("ClaimDeliveries: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("ClaimDeliveries: got %d deliveries, want 1", len(got))
	}
	d := got[0]
	if d.ID != want.ID || d.Target != want.Target || d.Type != want.Type || !bytes.Equal(d.Body, want.Body) ||
		!d.CreatedAt.Equal(want.CreatedAt) || d.Attempts != 0 || d.LastError != "" || d.DeliveredAt != nil {
		t.Fatalf("claimed delivery: got %+v, want %+v", d, want)
	}
	if !d.NextAt.Equal(at(time.Second + time.Minute)) {
		t.Fatalf("claimed delivery: NextAt %v, want the end of the lease %v", d.NextAt, at(time.Second+time.Minute))
	}
	if _, err := s.EnqueueDeliveries(t.Context(), []keystore.Delivery{want}); !errors.Is(err, keystore.ErrConflict) {
		t.Fatalf("EnqueueDeliveries with a taken id: got %v, want ErrConflict", err)
	}
}

func testOutboxClaimLease(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	enqueue(t, s,
		newDelivery("dlv_1", targetA, "", at(0)),
		newDelivery("dlv_2", targetB, "", at(time.Second)),
		newDelivery("dlv_3", targetA, "", at(2*time.Second)),
		newDelivery("dlv_4", targetA, "", at(time.Hour)), // not due yet
	)
	both := []string{targetA, targetB}
	if got := claimIDs(t, s, []string{targetA}, at(time.Minute), 10); !sameIDs(got, []string{"dlv_1", "dlv_3"}) {
		t.Fatalf("claim of target A: got %v, want [dlv_1 dlv_3]", got)
	}
	if got := claimIDs(t, s, both, at(time.Minute), 10); !sameIDs(got, []string{"dlv_2"}) {
		t.Fatalf("claim within the lease: got %v, want only dlv_2 (the others are leased)", got)
	}
	if got := claimIDs(t, s, both, at(90*time.Second), 10); len(got) != 0 {
		t.Fatalf("claim within the lease: got %v, want none", got)
	}
	if err := s.MarkDelivered(t.Context(), "dlv_1", at(time.Minute)); err != nil {
		t.Fatalf("MarkDelivered: %v", err)
	}
	// The leases of dlv_2 and dlv_3 ended together: both are due again,
	// the one enqueued first first; dlv_1 is delivered.
	if got := claimIDs(t, s, both, at(2*time.Minute+time.Second), 1); !sameIDs(got, []string{"dlv_2"}) {
		t.Fatalf("claim after the lease, limit 1: got %v, want [dlv_2]", got)
	}
	if got := claimIDs(t, s, both, at(2*time.Hour), 10); !sameIDs(got, []string{"dlv_3", "dlv_2", "dlv_4"}) {
		t.Fatalf("claim of everything due: got %v, want [dlv_3 dlv_2 dlv_4] (by due time)", got)
	}
	if err := s.MarkDelivered(t.Context(), "dlv_missing", at(0)); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("MarkDelivered of an unknown id: got %v, want ErrNotFound", err)
	}
}

func testOutboxReschedule(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	enqueue(t, s, newDelivery("dlv_1", targetA, "", at(0)), newDelivery("dlv_2", targetA, "", at(time.Second)))
	claimIDs(t, s, []string{targetA}, at(time.Second), 10)
	if err := s.RescheduleDelivery(t.Context(), "dlv_1", at(10*time.Minute), "HTTP 500"); err != nil {
		t.Fatalf("RescheduleDelivery: %v", err)
	}
	if err := s.RescheduleDelivery(t.Context(), "dlv_1", at(20*time.Minute), "connection refused"); err != nil {
		t.Fatalf("RescheduleDelivery: %v", err)
	}
	// Handed back unsent: due at once, no attempt counted, the error kept.
	if err := s.RescheduleDelivery(t.Context(), "dlv_1", at(20*time.Minute), ""); err != nil {
		t.Fatalf("RescheduleDelivery without an error: %v", err)
	}
	if err := s.RescheduleDelivery(t.Context(), "dlv_missing", at(0), "x"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("RescheduleDelivery of an unknown id: got %v, want ErrNotFound", err)
	}
	failed, n, err := s.ListDeliveries(t.Context(), keystore.DeliveryFailed, 0)
	if err != nil {
		t.Fatalf("ListDeliveries(failed): %v", err)
	}
	if n != 1 || len(failed) != 1 || failed[0].ID != "dlv_1" || failed[0].Attempts != 2 ||
		failed[0].LastError != "connection refused" || !failed[0].NextAt.Equal(at(20*time.Minute)) {
		t.Fatalf("ListDeliveries(failed): got %d %+v, want dlv_1 with 2 attempts, the last error and NextAt %v", n, failed, at(20*time.Minute))
	}
	if got := claimIDs(t, s, []string{targetA}, at(15*time.Minute), 10); !sameIDs(got, []string{"dlv_2"}) {
		t.Fatalf("claim before the backoff ends: got %v, want [dlv_2]", got)
	}
	if got := claimIDs(t, s, []string{targetA}, at(20*time.Minute), 10); !sameIDs(got, []string{"dlv_2", "dlv_1"}) {
		t.Fatalf("claim when the backoff ends: got %v, want [dlv_2 dlv_1] (dlv_2's lease ended first)", got)
	}
	if err := s.MarkDelivered(t.Context(), "dlv_1", at(21*time.Minute)); err != nil {
		t.Fatalf("MarkDelivered: %v", err)
	}
	pending, n, err := s.ListDeliveries(t.Context(), keystore.DeliveryPending, 0)
	if err != nil {
		t.Fatalf("ListDeliveries(pending): %v", err)
	}
	if n != 1 || len(pending) != 1 || pending[0].ID != "dlv_2" {
		t.Fatalf("ListDeliveries(pending): got %d %+v, want only dlv_2", n, pending)
	}
	if failed, n, _ := s.ListDeliveries(t.Context(), keystore.DeliveryFailed, 0); n != 0 || len(failed) != 0 {
		t.Fatalf("ListDeliveries(failed) after delivery: got %d %+v, want none", n, failed)
	}
	// Limit caps the page, not the total.
	enqueue(t, s, newDelivery("dlv_3", targetB, "", at(time.Hour)))
	page, n, err := s.ListDeliveries(t.Context(), keystore.DeliveryPending, 1)
	if err != nil || n != 2 || len(page) != 1 || page[0].ID != "dlv_2" {
		t.Fatalf("ListDeliveries(pending, 1): got %d %+v %v, want total 2 and the oldest, dlv_2", n, page, err)
	}
}

func testOutboxDedupe(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	if n := enqueue(t, s, newDelivery("dlv_1", targetA, "key.expiring/key_A", at(0)), newDelivery("dlv_2", targetA, "key.expiring/key_A", at(0))); n != 1 {
		t.Fatalf("two deliveries with one dedupe value: stored %d, want 1", n)
	}
	if n := enqueue(t, s, newDelivery("dlv_3", targetA, "key.expiring/key_A", at(time.Minute))); n != 0 {
		t.Fatalf("a later delivery with a held dedupe value: stored %d, want 0", n)
	}
	// Delivered, the value stays held.
	claimIDs(t, s, []string{targetA}, at(time.Minute), 10)
	if err := s.MarkDelivered(t.Context(), "dlv_1", at(time.Minute)); err != nil {
		t.Fatalf("MarkDelivered: %v", err)
	}
	if n := enqueue(t, s, newDelivery("dlv_4", targetA, "key.expiring/key_A", at(2*time.Minute))); n != 0 {
		t.Fatalf("a delivery with the dedupe value of a delivered one: stored %d, want 0", n)
	}
	if n := enqueue(t, s, newDelivery("dlv_5", targetA, "", at(0)), newDelivery("dlv_6", targetA, "", at(0))); n != 2 {
		t.Fatalf("deliveries without a dedupe value: stored %d, want 2", n)
	}
	if err := s.ReleaseDedupe(t.Context(), "key.expiring/key_A"); err != nil {
		t.Fatalf("ReleaseDedupe: %v", err)
	}
	if err := s.ReleaseDedupe(t.Context(), "never/held"); err != nil {
		t.Fatalf("ReleaseDedupe of a value never held: %v", err)
	}
	if n := enqueue(t, s, newDelivery("dlv_7", targetA, "key.expiring/key_A", at(3*time.Minute))); n != 1 {
		t.Fatalf("a delivery with a released dedupe value: stored %d, want 1", n)
	}
}

// testOutboxClaimConcurrent: callers claiming at once get each delivery
// once between them.
func testOutboxClaimConcurrent(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	const total = 60
	var ds []keystore.Delivery
	for i := range total {
		ds = append(ds, newDelivery(fmt.Sprintf("dlv_%02d", i), targetA, "", at(time.Duration(i)*time.Millisecond)))
	}
	enqueue(t, s, ds...)
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
		errs = make(chan error, 8)
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				got, err := s.ClaimDeliveries(t.Context(), []string{targetA}, at(time.Second), time.Hour, 7)
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, d := range got {
					seen[d.ID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("ClaimDeliveries: %v", err)
	}
	if len(seen) != total {
		t.Fatalf("claimed %d distinct deliveries, want %d", len(seen), total)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("delivery %s claimed %d times, want once", id, n)
		}
	}
}

func testOutboxPurge(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	enqueue(t, s,
		newDelivery("dlv_old", targetA, "", at(0)),
		newDelivery("dlv_new", targetA, "", at(0)),
		newDelivery("dlv_held", targetA, "key.expired/key_A", at(0)),
		newDelivery("dlv_pending", targetA, "", at(0)),
	)
	claimIDs(t, s, []string{targetA}, at(time.Second), 10)
	for id, when := range map[string]time.Duration{"dlv_old": time.Minute, "dlv_held": time.Minute, "dlv_new": time.Hour} {
		if err := s.MarkDelivered(t.Context(), id, at(when)); err != nil {
			t.Fatalf("MarkDelivered(%s): %v", id, err)
		}
	}
	n, err := s.PurgeDeliveries(t.Context(), at(30*time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("PurgeDeliveries: got %d %v, want 1 (only dlv_old: dlv_new is newer, dlv_held holds a dedupe value, dlv_pending is not delivered)", n, err)
	}
	if err := s.MarkDelivered(t.Context(), "dlv_old", at(0)); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("MarkDelivered of a purged delivery: got %v, want ErrNotFound", err)
	}
	for _, id := range []string{"dlv_new", "dlv_held", "dlv_pending"} {
		if err := s.MarkDelivered(t.Context(), id, at(2*time.Hour)); err != nil {
			t.Fatalf("MarkDelivered(%s) after the purge: %v, want it kept", id, err)
		}
	}
	if n := enqueue(t, s, newDelivery("dlv_again", targetA, "key.expired/key_A", at(time.Hour))); n != 0 {
		t.Fatalf("a delivery with the dedupe value of a kept one: stored %d, want 0", n)
	}
	// The id of a purged delivery is free again.
	if n := enqueue(t, s, newDelivery("dlv_old", targetB, "", at(time.Hour))); n != 1 {
		t.Fatalf("enqueueing a purged id again: stored %d, want 1", n)
	}
}
