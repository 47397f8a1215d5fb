package storetest

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// keyState describes a fixture key by its timestamps relative to base.
type keyState struct {
	expires, revoked *time.Time
}

var (
	active         = keyState{}
	expiresLater   = keyState{expires: ptr(at(2 * time.Hour))}
	expired        = keyState{expires: ptr(at(-time.Hour))}
	revoked        = keyState{revoked: ptr(at(-time.Hour))}
	revokedLater   = keyState{revoked: ptr(at(time.Hour))}
	expiredRevoked = keyState{expires: ptr(at(-2 * time.Hour)), revoked: ptr(at(-time.Hour))}
)

func createStates(t *testing.T, s keystore.Store, user string, states ...keyState) []*keystore.Key {
	t.Helper()
	keys := make([]*keystore.Key, len(states))
	for i, st := range states {
		k := newKey(t, user, "k", at(time.Duration(i)*time.Second))
		k.ExpiresAt, k.RevokedAt = st.expires, st.revoked
		mustCreate(t, s, k)
		keys[i] = k
	}
	return keys
}

func testCountActive(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	if n, err := s.CountActive(t.Context(), base); err != nil || n != 0 {
		t.Fatalf("CountActive on an empty store: got %d, %v, want 0, nil", n, err)
	}
	createStates(t, s, "u", active, expiresLater, expired, revoked, revokedLater, expiredRevoked)
	tests := []struct {
		name string
		now  time.Time
		want int
	}{
		{"now", base, 3},
		{"before anything happened", at(-3 * time.Hour), 6},
		{"between expiry and revocation", at(-90 * time.Minute), 5},
		{"when a revocation takes effect", at(time.Hour), 2},
		{"when an expiry takes effect", at(2 * time.Hour), 1},
		{"far future", at(1000 * time.Hour), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n, err := s.CountActive(t.Context(), tt.now)
			if err != nil {
				t.Fatalf("CountActive: %v", err)
			}
			if n != tt.want {
				t.Errorf("CountActive: got %d, want %d", n, tt.want)
			}
		})
	}
}

func testCreateKeyLicense(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	tests := []struct {
		name      string
		existing  []keyState
		maxActive int
		wantErr   error
	}{
		{"empty store", nil, 1, nil},
		{"below the limit", []keyState{active, active}, 3, nil},
		{"at the limit", []keyState{active, active, active}, 3, keystore.ErrLicenseExhausted},
		{"above the limit", []keyState{active, active, active}, 2, keystore.ErrLicenseExhausted},
		{"revoked keys do not count", []keyState{active, active, revoked, expiredRevoked}, 3, nil},
		{"expired keys do not count", []keyState{active, expired, active}, 3, nil},
		{"keys expiring later count", []keyState{active, active, expiresLater}, 3, keystore.ErrLicenseExhausted},
		{"keys revoked later count", []keyState{active, revokedLater}, 2, keystore.ErrLicenseExhausted},
		{"zero means no limit", []keyState{active, active, active}, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			createStates(t, s, "u", tt.existing...)
			before, err := s.CountActive(t.Context(), base)
			if err != nil {
				t.Fatalf("CountActive: %v", err)
			}
			k := newKey(t, "u", "new", at(time.Minute))
			err = s.CreateKey(t.Context(), k.Clone(), keystore.CreateLimits{MaxActive: tt.maxActive}, base)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("CreateKey(maxActive %d): got error %v, want %v", tt.maxActive, err, tt.wantErr)
			}
			after, err := s.CountActive(t.Context(), base)
			if err != nil {
				t.Fatalf("CountActive: %v", err)
			}
			if tt.wantErr != nil {
				if _, err := s.GetKey(t.Context(), k.ID); !errors.Is(err, keystore.ErrNotFound) {
					t.Errorf("GetKey(refused key): got error %v, want ErrNotFound", err)
				}
				if _, err := s.LookupDigest(t.Context(), k.Digest); !errors.Is(err, keystore.ErrNotFound) {
					t.Errorf("LookupDigest(refused key): got error %v, want ErrNotFound", err)
				}
				if after != before {
					t.Errorf("CountActive after a refusal: got %d, want %d", after, before)
				}
				return
			}
			wantKey(t, "GetKey", mustGet(t, s, k.ID), k)
			if after != before+1 {
				t.Errorf("CountActive after creating: got %d, want %d", after, before+1)
			}
		})
	}

	t.Run("count is evaluated at now", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		createStates(t, s, "u", active, expiresLater)
		k := newKey(t, "u", "new", at(3*time.Hour))
		if err := s.CreateKey(t.Context(), k.Clone(), keystore.CreateLimits{MaxActive: 2}, base); !errors.Is(err, keystore.ErrLicenseExhausted) {
			t.Fatalf("CreateKey at base: got error %v, want ErrLicenseExhausted", err)
		}
		if err := s.CreateKey(t.Context(), k.Clone(), keystore.CreateLimits{MaxActive: 2}, at(3*time.Hour)); err != nil {
			t.Fatalf("CreateKey after the other key expired: %v", err)
		}
	})
}

// testCreateKeyLicenseConcurrent checks that the licence count and the
// insert are atomic.
func testCreateKeyLicenseConcurrent(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	const n, maxActive = 20, 5
	keys := make([]*keystore.Key, n)
	for i := range keys {
		keys[i] = newKey(t, "u", "racer", at(time.Duration(i)*time.Millisecond))
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		created  []string
		refusals int
	)
	start := make(chan struct{})
	for _, k := range keys {
		wg.Go(func() {
			<-start
			err := s.CreateKey(t.Context(), k, keystore.CreateLimits{MaxActive: maxActive}, base)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				created = append(created, k.ID)
			case errors.Is(err, keystore.ErrLicenseExhausted):
				refusals++
			default:
				t.Errorf("CreateKey: got error %v, want nil or ErrLicenseExhausted", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if len(created) != maxActive || refusals != n-maxActive {
		t.Fatalf("concurrent CreateKey: got %d created and %d refused, want %d and %d", len(created), refusals, maxActive, n-maxActive)
	}
	if got, err := s.CountActive(t.Context(), base); err != nil || got != maxActive {
		t.Errorf("CountActive: got %d, %v, want %d, nil", got, err, maxActive)
	}
	listed, _ := listAll(t, s, keystore.ListFilter{})
	got := ids(listed)
	slices.Sort(got)
	slices.Sort(created)
	if !slices.Equal(got, created) {
		t.Errorf("ListKeys: got %v, want the created keys %v", got, created)
	}
}

func testRevokeUser(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	alice := createStates(t, s, "ALICE", active, expired, revoked, active)
	bob := createStates(t, s, "BOB", active)
	lower := createStates(t, s, "alice", active)
	revokeAt := at(time.Hour)

	got, err := s.RevokeUser(t.Context(), "ALICE", revokeAt)
	if err != nil {
		t.Fatalf("RevokeUser: %v", err)
	}
	// The expired key is not revoked yet, so it is revoked too.
	want := []*keystore.Key{alice[0], alice[1], alice[3]}
	slices.SortFunc(got, func(a, b *keystore.Key) int { return a.CreatedAt.Compare(b.CreatedAt) })
	if !slices.Equal(ids(got), ids(want)) {
		t.Fatalf("RevokeUser: got keys %v, want %v", ids(got), ids(want))
	}
	for i, k := range want {
		w := k.Clone()
		w.RevokedAt = ptr(revokeAt)
		wantKey(t, "RevokeUser result", got[i], w)
		wantKey(t, "GetKey after RevokeUser", mustGet(t, s, k.ID), w)
	}
	wantKey(t, "already revoked key", mustGet(t, s, alice[2].ID), alice[2])
	wantKey(t, "other user's key", mustGet(t, s, bob[0].ID), bob[0])
	wantKey(t, "key of a user differing in case", mustGet(t, s, lower[0].ID), lower[0])

	again, err := s.RevokeUser(t.Context(), "ALICE", at(2*time.Hour))
	if err != nil || len(again) != 0 {
		t.Errorf("RevokeUser again: got %v, %v, want no keys, nil", ids(again), err)
	}
	wantKey(t, "after a second RevokeUser", mustGet(t, s, alice[0].ID), got[0])

	none, err := s.RevokeUser(t.Context(), "NOBODY", revokeAt)
	if err != nil || len(none) != 0 {
		t.Errorf("RevokeUser(unknown user): got %v, %v, want no keys, nil", ids(none), err)
	}
	if n, err := s.CountActive(t.Context(), revokeAt); err != nil || n != 2 {
		t.Errorf("CountActive after RevokeUser: got %d, %v, want 2, nil", n, err)
	}
}

// testCreateKeyPerUserCap checks CreateLimits.MaxActivePerUser: only the
// new key's user's active keys count, and the licence is checked as well.
func testCreateKeyPerUserCap(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	tests := []struct {
		name    string
		alice   []keyState
		bob     int
		lim     keystore.CreateLimits
		wantErr error
	}{
		{"below the cap", []keyState{active}, 3, keystore.CreateLimits{MaxActivePerUser: 2}, nil},
		{"at the cap", []keyState{active, active}, 0, keystore.CreateLimits{MaxActivePerUser: 2}, keystore.ErrUserKeysExhausted},
		{"other users do not count", []keyState{active}, 5, keystore.CreateLimits{MaxActivePerUser: 2}, nil},
		{"revoked and expired keys do not count", []keyState{active, revoked, expired, expiredRevoked}, 0, keystore.CreateLimits{MaxActivePerUser: 2}, nil},
		{"keys expiring later count", []keyState{active, expiresLater}, 0, keystore.CreateLimits{MaxActivePerUser: 2}, keystore.ErrUserKeysExhausted},
		{"licence still applies", []keyState{active}, 2, keystore.CreateLimits{MaxActive: 3, MaxActivePerUser: 5}, keystore.ErrLicenseExhausted},
		{"zero means no cap", []keyState{active, active, active}, 0, keystore.CreateLimits{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			createStates(t, s, "ALICE", tt.alice...)
			for range tt.bob {
				createStates(t, s, "BOB", active)
			}
			k := newKey(t, "ALICE", "new", at(time.Minute))
			err := s.CreateKey(t.Context(), k.Clone(), tt.lim, base)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("CreateKey(%+v): got error %v, want %v", tt.lim, err, tt.wantErr)
			}
			_, getErr := s.GetKey(t.Context(), k.ID)
			if tt.wantErr != nil && !errors.Is(getErr, keystore.ErrNotFound) {
				t.Errorf("GetKey(refused key): got error %v, want ErrNotFound", getErr)
			}
			if tt.wantErr == nil && getErr != nil {
				t.Errorf("GetKey(created key): %v", getErr)
			}
		})
	}
}

// testCreateKeyPerUserCapConcurrent checks that the per-user count and the
// insert are atomic.
func testCreateKeyPerUserCapConcurrent(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	s := newStore(t)
	const n, perUser = 16, 3
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created = map[string]int{}
	)
	start := make(chan struct{})
	for i := range n {
		user := []string{"ALICE", "BOB"}[i%2]
		k := newKey(t, user, "racer", at(time.Duration(i)*time.Millisecond))
		wg.Go(func() {
			<-start
			err := s.CreateKey(t.Context(), k, keystore.CreateLimits{MaxActivePerUser: perUser}, base)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				created[user]++
			case errors.Is(err, keystore.ErrUserKeysExhausted):
			default:
				t.Errorf("CreateKey: got error %v, want nil or ErrUserKeysExhausted", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if created["ALICE"] != perUser || created["BOB"] != perUser {
		t.Fatalf("concurrent CreateKey with a cap of %d per user: created %v", perUser, created)
	}
}
