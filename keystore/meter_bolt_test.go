package keystore_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/bolt"
)

// ackLostStore commits to the real store and then reports a failure once,
// as when the connection drops after COMMIT.
type ackLostStore struct {
	keystore.Store
	lose bool
}

func (s *ackLostStore) AddUsage(ctx context.Context, batchID string, deltas []keystore.UsageDelta) error {
	if err := s.Store.AddUsage(ctx, batchID, deltas); err != nil {
		return err
	}
	if s.lose {
		s.lose = false
		return errors.Join(errors.New("connection reset after commit"), keystore.ErrUnavailable)
	}
	return nil
}

func TestMeterAndLimiterOnBolt(t *testing.T) {
	t.Parallel()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "keys.db"), bolt.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer db.Close()
	ctx := context.Background()
	store := &ackLostStore{Store: db, lose: true}
	m := keystore.NewMeter(store, keystore.MeterOptions{})
	l := keystore.NewLimiter(keystore.LimiterOptions{Store: store, Meter: m})
	k := &keystore.Key{ID: "key_bolt", Quota: &keystore.Quota{Limit: 5, Period: keystore.PeriodMonth}}
	now := time.Date(2026, 11, 23, 23, 59, 0, 0, time.UTC)

	admitted := 0
	for i := range 8 {
		at := now.Add(time.Duration(i) * 30 * time.Second) // straddles midnight
		if d := l.Admit(k, at); d.Allowed {
			m.Count(k.ID, at)
			admitted++
		}
		if i == 2 {
			if err := m.Flush(ctx); err == nil {
				t.Fatal("Flush: got nil, want the lost acknowledgement")
			}
		}
	}
	if admitted != 5 {
		t.Fatalf("admitted: got %d, want 5", admitted)
	}
	if err := m.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	days, err := db.Usage(ctx, k.ID, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	var got []int64
	for _, d := range days {
		got = append(got, d.Requests)
	}
	// 23:59:00 and 23:59:30 on Nov 23; 3 on Nov 24, none twice.
	if len(got) != 2 || got[0] != 2 || got[1] != 3 {
		t.Fatalf("stored per day: got %v, want [2 3]", got)
	}
	if d := l.Admit(k, now.Add(time.Hour)); d.Code != keystore.CodeQuotaExceeded {
		t.Fatalf("after flush: got %+v, want quota_exceeded", d)
	}
	l.Wait()
}
