package postgres_test

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keygate/keygate/internal/poll"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/postgres"
)

// seen collects the digests a listener hands over.
type seen struct {
	mu sync.Mutex
	m  map[keystore.Digest]int
}

func newSeen() *seen { return &seen{m: map[keystore.Digest]int{}} }

func (s *seen) add(ds []keystore.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range ds {
		s.m[d]++
	}
}

func (s *seen) count(d keystore.Digest) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[d]
}

// waitFor polls cond until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := poll.Until(within, what, cond); err != nil {
		t.Fatal(err)
	}
}

func revoke(t *testing.T, s *postgres.Store, id string) {
	t.Helper()
	if _, err := s.UpdateKey(t.Context(), id, func(k *keystore.Key) error {
		now := time.Now()
		k.RevokedAt = &now
		return nil
	}); err != nil {
		t.Fatalf("UpdateKey(revoke): %v", err)
	}
}

func TestListenerSeesOtherInstance(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	// The poll is far off: delivery must come from NOTIFY.
	a := openStore(t, schema, postgres.Options{ListenPoll: time.Minute})
	if err := a.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	b := openStore(t, schema, postgres.Options{})
	got := newSeen()
	l := a.Listen(t.Context(), 0, got.add)
	waitFor(t, 10*time.Second, "listener connected", func() bool { return l.Stats().Connected })

	k := testKey(t, "MXINTADM")
	if err := b.CreateKey(t.Context(), k.Clone(), keystore.CreateLimits{}, time.Now()); err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	waitFor(t, 5*time.Second, "create delivered", func() bool { return got.count(k.Digest) >= 1 })

	revoke(t, b, k.ID)
	waitFor(t, 5*time.Second, "revoke delivered", func() bool { return got.count(k.Digest) >= 2 })

	// Rotation hands over both the old and the new digest.
	newD := testKey(t, "x").Digest
	if _, err := b.UpdateKey(t.Context(), k.ID, func(c *keystore.Key) error {
		c.PrevDigest, c.Digest = c.Digest, newD
		return nil
	}); err != nil {
		t.Fatalf("UpdateKey(rotate): %v", err)
	}
	waitFor(t, 5*time.Second, "rotation delivered", func() bool {
		return got.count(k.Digest) >= 3 && got.count(newD) >= 1
	})

	// RevokeUser, and changes made by the listening store itself.
	k2 := testKey(t, "MXINTADM")
	if err := a.CreateKey(t.Context(), k2.Clone(), keystore.CreateLimits{}, time.Now()); err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	if _, err := a.RevokeUser(t.Context(), "MXINTADM", time.Now()); err != nil {
		t.Fatalf("RevokeUser: %v", err)
	}
	waitFor(t, 5*time.Second, "RevokeUser delivered", func() bool { return got.count(k2.Digest) >= 2 })

	st := l.Stats()
	if st.Notifications == 0 || st.LastSeq == 0 || st.Resyncs != 0 || st.Lag <= 0 || st.Lag > 5*time.Second {
		t.Errorf("Stats: got %+v, want notifications, a sequence, no resync and a lag in (0, 5s]", st)
	}
	if l.LastSeq() != st.LastSeq {
		t.Errorf("LastSeq: got %d, want %d", l.LastSeq(), st.LastSeq)
	}
}

func TestListenerReplaysAfterReconnect(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	core, logs := observer.New(zapcore.InfoLevel)
	name := "keygate-listener-" + schema
	a := openStore(t, schema, postgres.Options{ListenPoll: time.Minute, ListenerName: name, Logger: zap.New(core)})
	if err := a.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	b := openStore(t, schema, postgres.Options{})
	k := testKey(t, "u")
	if err := b.CreateKey(t.Context(), k.Clone(), keystore.CreateLimits{}, time.Now()); err != nil {
		t.Fatalf("CreateKey: %v", err)
	}

	got := newSeen()
	l := a.Listen(t.Context(), 0, got.add)
	waitFor(t, 10*time.Second, "listener connected", func() bool { return l.Stats().Connected })
	if n := got.count(k.Digest); n != 1 {
		t.Fatalf("initial replay: got digest %d times, want 1", n)
	}

	// Kill the listener's backend and wait until it is gone.
	var killed bool
	if err := b.Pool().QueryRow(t.Context(), `SELECT coalesce(bool_and(pg_terminate_backend(pid, 5000)), false)
		FROM pg_stat_activity WHERE application_name = $1`, name).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminating the listener backend: got %v, %v, want true, nil", killed, err)
	}
	revoke(t, b, k.ID)
	// If the listener was still away when the revoke committed, its
	// NOTIFY went nowhere and only the replay can deliver it.
	var backends int
	if err := b.Pool().QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`,
		name).Scan(&backends); err != nil {
		t.Fatal(err)
	}

	waitFor(t, 15*time.Second, "revoke delivered after reconnect", func() bool { return got.count(k.Digest) >= 2 })
	waitFor(t, 5*time.Second, "resync counted", func() bool { return l.Stats().Resyncs >= 1 })
	resyncs := logs.FilterMessage("resync").All()
	if len(resyncs) == 0 {
		t.Fatalf("no \"resync\" log entry; logs: %v", logs.All())
	}
	if backends == 0 {
		if n := resyncs[0].ContextMap()["changes"]; n != int64(1) {
			t.Errorf("resync log: got changes=%v, want 1 (the revoke made while disconnected)", n)
		}
	} else {
		t.Logf("listener was back before the revoke committed (%d backends); delivered by NOTIFY instead of replay; logs %v", backends, logs.All())
	}
	if st := l.Stats(); st.Reconnects < 1 || !st.Connected {
		t.Errorf("Stats: got %+v, want a reconnect and connected", st)
	}
}

func TestListenerLogPrunedPastLastSeq(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	a := openStore(t, schema, postgres.Options{ListenPoll: time.Minute})
	if err := a.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	b := openStore(t, schema, postgres.Options{ChangeRetention: time.Microsecond})
	k1, k2 := testKey(t, "u"), testKey(t, "u")
	for _, k := range []*keystore.Key{k1, k2} {
		if err := b.CreateKey(t.Context(), k.Clone(), keystore.CreateLimits{}, time.Now()); err != nil {
			t.Fatalf("CreateKey: %v", err)
		}
	}
	first := newSeen()
	l1 := a.Listen(t.Context(), 0, first.add)
	waitFor(t, 10*time.Second, "first listener caught up", func() bool { return first.count(k2.Digest) == 1 })
	l1.Close()
	last := l1.LastSeq()

	// Two changes while nobody listens; pruning drops the first.
	revoke(t, b, k1.ID)
	revoke(t, b, k2.ID)
	time.Sleep(2 * time.Millisecond)
	if err := b.Prune(t.Context()); err != nil {
		t.Fatalf("Prune: %v", err)
	}

	second := newSeen()
	l2 := a.Listen(t.Context(), last, second.add)
	defer l2.Close()
	waitFor(t, 10*time.Second, "every key evicted", func() bool {
		return second.count(k1.Digest) >= 1 && second.count(k2.Digest) >= 1
	})
	waitFor(t, 5*time.Second, "caught up", func() bool { return l2.LastSeq() > last+1 })
}

func TestListenerStopsOnClose(t *testing.T) {
	t.Parallel()
	s := newStore(t, postgres.Options{})
	l1 := s.Listen(t.Context(), 0, func([]keystore.Digest) {})
	l2 := s.Listen(t.Context(), 0, func([]keystore.Digest) {})
	l1.Close()
	s.Close()
	for i, l := range []*postgres.Listener{l1, l2} {
		select {
		case <-l.Done():
		case <-time.After(5 * time.Second):
			t.Errorf("listener %d still running after Close", i+1)
		}
	}
	// Listening on a closed store returns a stopped listener.
	l3 := s.Listen(t.Context(), 0, func([]keystore.Digest) {})
	select {
	case <-l3.Done():
	case <-time.After(time.Second):
		t.Error("listener on a closed store is running")
	}
}
