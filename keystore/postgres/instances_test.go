package postgres_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/postgres"
)

// TestLicenseAcrossInstances checks that the licence holds when separate
// pools (instances) create keys at once.
func TestLicenseAcrossInstances(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	const instances, perInstance, limit = 3, 6, 5
	stores := make([]*postgres.Store, instances)
	for i := range stores {
		stores[i] = openStore(t, schema, postgres.Options{MaxConns: 3})
	}
	if err := stores[0].Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	var (
		wg                 sync.WaitGroup
		mu                 sync.Mutex
		created, exhausted int
		unexpected         []error
	)
	now := time.Now()
	for _, s := range stores {
		for range perInstance {
			wg.Go(func() {
				err := s.CreateKey(t.Context(), testKey(t, "u"), keystore.CreateLimits{MaxActive: limit}, now)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					created++
				case errors.Is(err, keystore.ErrLicenseExhausted):
					exhausted++
				default:
					unexpected = append(unexpected, err)
				}
			})
		}
	}
	wg.Wait()
	if len(unexpected) > 0 {
		t.Fatalf("CreateKey: unexpected errors %v", unexpected)
	}
	if created != limit || exhausted != instances*perInstance-limit {
		t.Errorf("got %d created and %d refused, want %d and %d", created, exhausted, limit, instances*perInstance-limit)
	}
	if n, err := stores[1].CountActive(t.Context(), now); err != nil || n != limit {
		t.Errorf("CountActive: got %d, %v, want %d, nil", n, err, limit)
	}
}

// TestUsageAcrossInstances flushes overlapping batches from two instances
// at once, in opposite key orders: no deadlock, no lost count.
func TestUsageAcrossInstances(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	a := openStore(t, schema, postgres.Options{})
	if err := a.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	b := openStore(t, schema, postgres.Options{LastUsedStep: -1})
	keys := make([]*keystore.Key, 8)
	for i := range keys {
		keys[i] = testKey(t, "u")
		if err := a.CreateKey(t.Context(), keys[i], keystore.CreateLimits{}, time.Now()); err != nil {
			t.Fatalf("CreateKey: %v", err)
		}
	}
	day := time.Now().UTC().Truncate(24 * time.Hour)
	const rounds = 20
	var wg sync.WaitGroup
	for i, s := range []*postgres.Store{a, b} {
		wg.Go(func() {
			for r := range rounds {
				var deltas []keystore.UsageDelta
				for j := range keys {
					k := keys[j]
					if i == 1 {
						k = keys[len(keys)-1-j]
					}
					deltas = append(deltas, keystore.UsageDelta{KeyID: k.ID, Day: day, Requests: 1, LastUsed: time.Now()})
				}
				if err := s.AddUsage(t.Context(), fmt.Sprintf("batch-%d-%d", i, r), deltas); err != nil {
					t.Errorf("AddUsage: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, k := range keys {
		u, err := a.Usage(t.Context(), k.ID, day, day)
		if err != nil {
			t.Fatalf("Usage: %v", err)
		}
		if len(u) != 1 || u[0].Requests != 2*rounds {
			t.Errorf("Usage(%s): got %+v, want one day with %d requests", k.ID, u, 2*rounds)
		}
	}
}
